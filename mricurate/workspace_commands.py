"""``mricurate init | ingest | serve | withdraw | report | review``: the commands that work on a workspace.

They go through the Prefect flows (``flows/``), which are imported only
after :func:`flows.environment.configure` has set every ``PREFECT_*``
variable: Prefect reads its settings once, at import.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.workspace import Workspace, init_workspace, open_workspace


def _prefect_for(workspace: Workspace) -> None:
    from flows.environment import configure

    configure(workspace.prefect_home, api_url=workspace.config.prefect_api_url or None)


def is_stage_failure(exc: BaseException) -> bool:
    """A failed stage of a flow (already reported PHI-free), without importing Prefect."""
    flows = sys.modules.get("flows.ingest")
    return flows is not None and isinstance(exc, flows.StageFailed)


def cmd_init(args: argparse.Namespace) -> int:
    workspace = init_workspace(Path(args.workspace))
    root = workspace.root
    print(f"created the workspace {root}")
    print(f"  {root / 'mricurate.toml'}   settings (commented; checked at every run)")
    print(f"  {workspace.incoming}/   drop DICOM and raw files here (any names, any folders)")
    print(f"  {workspace.release}/    versions for researchers appear here")
    print(f"  {workspace.private}/    0700: the key, the catalog, the link table: never share it")
    print("Back up private/site.key now, offline: without it pseudonyms cannot be repeated.")
    print(f"Then: mricurate ingest --workspace {root}")
    return 0


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=Console(file=sys.stderr), transient=True,
    )  # fmt: skip
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def _dask_address(args: argparse.Namespace, workspace: Workspace, *, served: bool) -> str:
    """The cluster of this run (the option, else the config); refused without a shared server."""
    address: str = args.dask_address or workspace.config.dask_address
    if address and not served and not workspace.config.prefect_api_url:
        from pipeline.errors import CurationError

        raise CurationError(
            f"--dask-address {address} needs a shared Prefect server, and `ingest` without "
            "[prefect] api_url runs on Prefect's ephemeral server, which lives in this process "
            "(the workers cannot report to it): use `mricurate serve --dask-address ...` (it "
            "starts a local server), or set [prefect] api_url in mricurate.toml"
        )
    return address


def cmd_ingest(args: argparse.Namespace) -> int:
    workspace = open_workspace(Path(args.workspace))
    address = _dask_address(args, workspace, served=False)
    _prefect_for(workspace)
    from prefect import tags

    from flows import ingest as flow_module
    from flows.server import stop_orphans

    stop_orphans(workspace.prefect_home)  # a server a killed run left behind
    with _progress() as hook, tags(flow_module.workspace_tag(workspace.root)):
        flow_module.progress_hook = hook
        try:
            summary = flow_module.ingest(
                str(workspace.root), jobs=args.jobs or 0, dask_address=address
            )
        finally:
            flow_module.progress_hook = None
    print_ingest_summary(summary)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the ingest flow on its schedule until SIGTERM or Ctrl-C.

    Schedules never fire on Prefect's ephemeral server: unless the config
    names a Prefect server, a local one is started under ``private/prefect``.
    """
    workspace = open_workspace(Path(args.workspace))
    interval: float | None = args.interval
    cron = None if interval else args.cron or workspace.config.cron
    address = _dask_address(args, workspace, served=True)
    api_url = workspace.config.prefect_api_url or None
    from flows.environment import configure
    from flows.server import LocalServer, stop_orphans

    server = None
    if api_url is None:
        stop_orphans(workspace.prefect_home)
        server = LocalServer(workspace.prefect_home)
        api_url = server.api_url
    configure(workspace.prefect_home, api_url=api_url)
    listener = None
    try:
        if server is not None:
            # The server boots (seconds of imports and migrations) while this
            # process imports Prefect for the flow: neither waits for the other.
            server.start(wait=False)
        from flows.ingest import FLOW_NAME, ingest, workspace_tag
        from flows.serve import serve_flow

        if server is not None:
            server.wait_until_ready()
        if workspace.config.listen.with_serve:
            listener = start_listener(workspace)
        when = f"every {interval:g} s" if interval else f"on '{cron}'"
        print(f"serving {FLOW_NAME} for {workspace.root} {when} (Prefect API {api_url}); "
              "Ctrl-C or SIGTERM stops")  # fmt: skip
        serve_flow(
            ingest, name=f"ingest-{workspace_tag(workspace.root)}",
            parameters={"workspace": str(workspace.root), "dask_address": address}, cron=cron,
            interval=interval, tags=[workspace_tag(workspace.root)],
        )  # fmt: skip
    finally:
        if listener is not None:
            stop_listener(listener)
        if server is not None:
            server.stop()
    return 0


def start_listener(workspace: Workspace) -> subprocess.Popen[bytes]:
    """``mricurate listen`` for the workspace, as a child process beside the schedule.

    Its own process: the listener sets ``tempfile.tempdir`` to ``private/receiving``
    for pynetdicom's temp files, which must not change where Prefect's go.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "mricurate", "listen", "--workspace", str(workspace.root)]
    )
    print(f"DICOM listener started (process {child.pid}, [listen] of mricurate.toml)")
    return child


def stop_listener(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: associations under way end, their senders retry."""
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def print_ingest_summary(summary: dict[str, object]) -> None:
    """One table a person reads: what each stage did, in PHI-free counts and reason codes.

    The per-rule edit counts are added up per action here (hundreds of them);
    the audit report (``mricurate report``) lists them one by one.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest run {summary.get('run')}", show_lines=False)
    table.add_column("stage")
    table.add_column("result")
    from pipeline.ingest.stages import summary_lines

    for stage, line in summary_lines(summary):
        table.add_row(stage, line)
    Console().print(table)
    release = summary.get("release")
    if isinstance(release, dict) and release.get("latest"):
        print(f"latest release: {release['latest']}")


def cmd_withdraw(args: argparse.Namespace) -> int:
    """Consent revoked: every later release omits the subject (never printed)."""
    from pipeline.catalog import Catalog
    from pipeline.ingest.run import IngestRun

    workspace = open_workspace(Path(args.workspace))
    with IngestRun.open(workspace) as run:
        catalog: Catalog = run.catalog
        catalog.import_links(workspace.private / "links.sqlite")
        subjects = catalog.subjects_of_patient(args.patient_id, args.issuer)
        if not subjects:
            print(
                "no subject of this workspace has that patient ID"
                + (" and issuer" if args.issuer else "")
                + "; nothing withdrawn (check the ID, or give --issuer)",
                file=sys.stderr,
            )
            return 1
        items: set[str] = set()
        for subject in sorted(subjects):
            items |= catalog.withdraw_subject(subject, run.run_id)
        from pipeline.ingest.publishing import publish_verified

        report = publish_verified(workspace, catalog, run.run_id, run.processing)
        run.summary = {"withdrawn_subjects": len(subjects), "items": len(items)}
    print(
        f"withdrawn: {len(subjects)} subject(s), {len(items)} input(s); "
        + (f"new release {report.version} without them" if report.version else "no release yet")
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The audit report: one self-contained HTML page, refused if it would name anyone."""
    from pipeline.catalog import Catalog
    from pipeline.errors import CurationError
    from pipeline.report import default_report_path, write_report

    workspace = open_workspace(Path(args.workspace))
    out = Path(args.out) if args.out else default_report_path(workspace, args.run)
    with Catalog.open(workspace.catalog_url) as catalog:
        try:
            path = write_report(catalog, workspace, out, run_id=args.run)
        except LookupError as exc:
            raise CurationError(str(exc)) from None
    print(f"wrote the audit report {path} (checked: no identifier of the inputs in it)")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """The review app on the workspace's queue, until Ctrl-C or SIGTERM."""
    import getpass

    from mricurate.review import serve

    workspace = open_workspace(Path(args.workspace))
    reviewer = (args.reviewer or getpass.getuser()).strip()
    serve(workspace, reviewer=reviewer, port=args.port)
    return 0


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds, 1 or more")
    return seconds


def _dask_option(parser: argparse.ArgumentParser) -> None:
    from pipeline.workspace.config import dask_address

    def checked(value: str) -> str:
        try:
            return dask_address(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument(
        "--dask-address", type=checked, default="", metavar="tcp://HOST:PORT",
        help="compute the DICOM and raw inputs on this Dask cluster (default: [ingest] "
        "dask_address; needs a shared Prefect server and the workspace on every worker)",
    )  # fmt: skip


def register(sub: Any) -> None:
    """Add the workspace commands to the CLI's subparsers."""
    p = sub.add_parser("init", help="create a workspace (folders, key, config, catalog)")
    p.add_argument("workspace")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "ingest", help="run the ingest flow once: incoming/ -> a verified, versioned release"
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: the config)")
    _dask_option(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "serve",
        help="run the ingest flow on a schedule (a local Prefect server unless one is configured)",
    )
    p.add_argument("--workspace", required=True)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", help='a cron schedule (default: the config\'s, "0 2 * * *")')
    when.add_argument(
        "--interval", type=_interval, metavar="SECONDS",
        help="run every SECONDS instead of on a cron schedule (a drop folder polled often)",
    )  # fmt: skip
    _dask_option(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "withdraw",
        help="consent revoked: omit a patient from every later release",
        description="The patient is found through the private link table; nothing names them "
        "in the release or its changelog.",
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("patient_id", help="the patient's original ID (as in the DICOM header)")
    p.add_argument("--issuer", help="its issuer (IssuerOfPatientID), where IDs are not unique")
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser(
        "report",
        help="write the audit report (HTML, no PHI) for the IRB or data-protection officer",
        description="Counts, reason codes, rule-set versions and hashes, review decisions and "
        "plots, from the catalog and the releases; checked by the release's leak check "
        "against the inputs' identifiers before it is written.",
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("--run", type=int, help="report on this run only (default: every run)")
    p.add_argument("--out", help="the HTML file (default: W/reports/audit[-run-N].html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "review",
        help="the review queue in a browser: approve, reject or redact what the pipeline doubted",
        description="Serves on 127.0.0.1 only (reach it from elsewhere through an SSH tunnel) "
        "and prints a one-time link that opens a session; decisions are recorded in the "
        "catalog, and the next ingest run acts on them.",
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("--port", type=int, default=0, help="the port (default 0: any free one)")
    p.add_argument("--reviewer", help="the name decisions are recorded under (default: your login)")
    p.set_defaults(func=cmd_review)
