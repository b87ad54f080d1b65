"""One ingest run: its lock, its catalog record and what its stages share.

The workspace lock (a ``flock`` in ``private/``) is the one guard against a
second run: the kernel drops it however the holder ends, so a run killed
with ``kill -9`` never blocks the next (Prefect's concurrency limits are not
used for this: a killed holder keeps its slot).  Opening a run also marks
the catalog runs that a kill left ``running`` as crashed.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field, replace
from types import TracebackType

from pipeline.batch.locks import RunLock
from pipeline.batch.runner import Dispatch, RunOptions, default_jobs
from pipeline.catalog import Catalog
from pipeline.catalog.states import RunStatus
from pipeline.deface.rules import DefaceRules
from pipeline.dicom.profile import load_profile
from pipeline.ingest.process import Processing
from pipeline.keys import load_key
from pipeline.pixels.blank import PixelCleaning
from pipeline.pixels.engines import make_engine
from pipeline.pixels.regions import load_region_rules
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.workspace import Workspace
from pipeline.workspace.ruleset import deface_rules_of, rule_file_hashes, ruleset_version

COMMAND = "ingest"


@dataclass
class IngestRun:
    """An open ingest run (use as a context manager; it holds the workspace lock)."""

    workspace: Workspace
    catalog: Catalog
    store: PrivateStore
    processing: Processing
    run_id: int
    crashed_before: tuple[int, ...]
    _lock: RunLock = field(repr=False)
    status: RunStatus = RunStatus.COMPLETED
    summary: dict[str, object] = field(default_factory=dict)
    deface_rules: DefaceRules | None = None  # None: [deface] enabled = false

    @classmethod
    def open(cls, workspace: Workspace, *, jobs: int | None = None) -> IngestRun:
        """Take the lock, load rules and key, record the run; raise before anything is written."""
        lock = RunLock(workspace.lock_dir, f"the workspace {workspace.root}", COMMAND)
        try:
            config = workspace.config
            key = load_key(workspace.key_file)
            profile = load_profile(config.profile)
            header = load_header_rules()
            regions = load_region_rules()
            deface = deface_rules_of(workspace)
            cleaning = (
                PixelCleaning(make_engine(config.ocr_engine), regions)
                if config.clean_pixels
                else None
            )
            options = RunOptions(
                jobs=jobs or config.jobs or default_jobs(),
                key_file=workspace.key_file,
                staged=True,
                # Prefect runs threads beside the flow (its API client, the log
                # shipper): a fork would copy their locks mid-use.  Not forkserver:
                # a worker must be our child to die with us (PR_SET_PDEATHSIG).
                start_method="spawn",
                handle_signals=threading.current_thread() is threading.main_thread(),
            )
            processing = Processing(
                key=key, profile=profile, header_rules=header, cleaning=cleaning,
                fastmri=config.fastmri, staging=workspace.staging, incoming=workspace.incoming,
                options=options,
                ruleset_version=ruleset_version(profile, header, regions.digest, deface),
                rule_files=rule_file_hashes(profile, header, regions, deface),
            )  # fmt: skip
            catalog = Catalog.open(workspace.catalog_url)
            crashed = catalog.mark_unfinished_runs_crashed()
            run_id = catalog.start_run(
                COMMAND, ruleset_version=processing.ruleset_version,
                key_fingerprint=key.fingerprint,
            )  # fmt: skip
            store = PrivateStore(workspace.private)
        except BaseException:
            lock.release()
            raise
        # What exists now (imports: Prefect's alone are a few hundred thousand
        # objects; the rules, the key) lives as long as the run: kept out of
        # the collector's full passes, which walked it all again (on 600
        # files, one full pass took 0.13 s in the library's process and 0.25 s
        # in the flow's; 0.004 s frozen).  Unfrozen when the run ends, so that
        # a served flow's next run does not pin this one's leftovers.
        gc.freeze()
        return cls(
            workspace, catalog, store, processing, run_id, tuple(crashed), lock,
            deface_rules=deface,
        )  # fmt: skip

    def dispatch_to(self, dispatch: Dispatch) -> None:
        """Compute the DICOM and raw stages' results with ``dispatch`` (a cluster); commit here."""
        options = replace(self.processing.options, dispatch=dispatch)
        self.processing = replace(self.processing, options=options)

    def __enter__(self) -> IngestRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        status = self.status if kind is None else RunStatus.FAILED
        try:
            try:
                # The runner's link rows (the catalog's withdrawals look subjects up there).
                self.catalog.import_links(self.workspace.private / "links.sqlite")
            finally:
                self.catalog.finish_run(self.run_id, status, self.summary)
        finally:
            self.store.close()
            self.catalog.close()
            self._lock.release()
            gc.unfreeze()
