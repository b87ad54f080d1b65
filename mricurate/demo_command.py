"""``mricurate demo``: the product on a generated sample, as a newcomer would run it.

A new workspace, the sample dropped into ``incoming/`` (a PACS export and
the scanner's raw data of the same subjects, PHI planted everywhere, a head
series with a face), one ingest run (the Prefect flow ``mricurate ingest``
runs, on Prefect's ephemeral server), then a check of the release against
every planted value that does not share the flow's code, and where to look
next: the release version, its manifests and dataset card, the review queue,
the audit report.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipeline.demo import leaked_values, write_workspace_sample
from pipeline.workspace import init_workspace, open_workspace

DEMO_SETTINGS = {
    # The sample is complete when written: no need to wait for it to settle.
    "quiet_seconds = 60": "quiet_seconds = 0",
}


def cmd_demo(args: argparse.Namespace) -> int:
    if args.stages:
        from pipeline.demo import run_demo

        root = Path(args.folder or tempfile.mkdtemp(prefix="mricurate-demo-"))
        return 1 if run_demo(root, subjects=args.subjects, jobs=args.jobs) else 0
    root = Path(args.folder or tempfile.mkdtemp(prefix="mricurate-demo-")) / "workspace"
    workspace = init_workspace(root)
    config = workspace.root / "mricurate.toml"
    text = config.read_text()
    for old, new in DEMO_SETTINGS.items():
        if old not in text:
            raise AssertionError(f"the config template no longer has {old!r}: update the demo")
        text = text.replace(old, new)
    config.write_text(text)
    print(f"1. a new workspace {workspace.root} (mricurate init; quiet time 0 for the demo)")
    planted = write_workspace_sample(workspace.incoming, subjects=args.subjects)
    count = sum(1 for p in workspace.incoming.rglob("*") if p.is_file())
    print(f"2. {count} files of {args.subjects} subjects with planted PHI in {workspace.incoming}")
    print(
        "3. mricurate ingest: the Prefect flow (discover, classify, de-identify and clean pixels,"
    )
    print("   convert raw, deface, leak check, route, publish), on Prefect's ephemeral server")
    from mricurate.workspace_commands import cmd_ingest

    cmd_ingest(argparse.Namespace(workspace=str(workspace.root), jobs=args.jobs, dask_address=""))
    return _look(workspace.root, planted)


def _look(root: Path, planted: list[str]) -> int:
    """Check the release independently and say where to look; 1 if a planted value leaked."""
    from pipeline.catalog import Catalog, ItemState
    from pipeline.release.versions import latest_version

    workspace = open_workspace(root)
    leaks = leaked_values(workspace.release, planted)
    print(f"4. independent check: {len(planted)} planted values, {len(leaks)} found in release/")
    with Catalog.open(workspace.catalog_url) as catalog:
        waiting = len(catalog.items([ItemState.NEEDS_REVIEW]))
        quarantined = len(catalog.items([ItemState.QUARANTINED]))
    version = latest_version(workspace.release)
    print()
    if version:
        folder = workspace.release / version
        print(f"The release:      {folder}")
        print(f"  dataset card    {folder / 'README.md'}")
        print(f"  manifests       {folder / 'manifests'} (Parquet and CSV, {folder.name}'s files)")
        print(f"  data package    {folder / 'datapackage.json'}; checksums {folder / 'SHA256SUMS'}")
    print(f"Waiting for a person: {waiting} input(s); review them in the browser:")
    print(f"  mricurate review --workspace {root}")
    print(f"  then mricurate ingest --workspace {root} publishes what was approved")
    print(f"Quarantined with a reason: {quarantined} input(s); the account (no PHI) in")
    print(f"  {workspace.quarantine}, the copies in private/")
    print(f"The audit report for the IRB: mricurate report --workspace {root}")
    print(f"Private (key, catalog, link table; never share): {workspace.private}")
    return 1 if leaks else 0
