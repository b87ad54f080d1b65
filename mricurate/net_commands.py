"""``mricurate listen | echo | push | pull``: the DICOM network of a workspace (:mod:`pipeline.net`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.workspace import Workspace, open_workspace


def _logging() -> None:
    """Our own messages at INFO (PHI-free by construction), pynetdicom's warnings only."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _timeouts(workspace: Workspace) -> Any:
    from pipeline.net.echo import Timeouts

    listen = workspace.config.listen
    return Timeouts(listen.network_timeout, listen.acse_timeout, listen.dimse_timeout)


def cmd_listen(args: argparse.Namespace) -> int:
    """Run the Storage SCP until SIGTERM or Ctrl-C."""
    from pipeline.catalog import Catalog
    from pipeline.net.listener import Listener, ListenOptions

    workspace = open_workspace(Path(args.workspace))
    _logging()
    options = ListenOptions.of(workspace, port=args.port, ae_title=args.ae_title,
                               address=args.address, allow_ae=args.allow_ae or ())  # fmt: skip
    stop = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with Catalog.open(workspace.catalog_url) as catalog:
        listener = Listener(workspace, catalog, options)
        port = listener.start()
        print(f"listening as {options.ae_title} on {options.address}:{port} for "
              f"{workspace.root}; Ctrl-C or SIGTERM stops", flush=True)  # fmt: skip
        try:
            stop.wait()
        finally:
            listener.stop()
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from pipeline.net.echo import echo

    workspace = open_workspace(Path(args.workspace))
    node = workspace.config.node(args.node)
    seconds = echo(node, ae_title=workspace.config.listen.ae_title, timeouts=_timeouts(workspace))
    print(f"{node.name} ({node.ae_title} at {node.host}:{node.port}) answered the C-ECHO "
          f"in {seconds * 1000:.0f} ms")  # fmt: skip
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from pipeline.catalog import Catalog
    from pipeline.net.push import push_release

    workspace = open_workspace(Path(args.workspace))
    _logging()
    node = workspace.config.node(args.to)
    with Catalog.open(workspace.catalog_url) as catalog:
        report = push_release(workspace, catalog, node, ae_title=workspace.config.listen.ae_title,
                              version=args.release, timeouts=_timeouts(workspace))  # fmt: skip
    print(f"release {report.version} to {report.node}: {report.sent} sent, "
          f"{report.already_sent} sent before, {report.failed} failed "
          f"(of {report.files} DICOM files)")  # fmt: skip
    if report.failed:
        print("run the same command again to send the failed files again", file=sys.stderr)
        return 1
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Retrieve a cohort's studies into incoming/; rows are named by their line number only."""
    from pipeline.catalog import Catalog
    from pipeline.net.cohort import read_cohort
    from pipeline.net.pull import PullMethod, PullStopped, Retry, RowStatus, pull_cohort

    workspace = open_workspace(Path(args.workspace))
    _logging()
    node = workspace.config.node(args.source)
    cohort = Path(args.cohort)
    rows = read_cohort(cohort)
    method = PullMethod(args.by) if args.by else None
    with Catalog.open(workspace.catalog_url) as catalog:
        try:
            report = pull_cohort(
                workspace, catalog, node, rows, cohort_name=cohort.stem, method=method,
                timeouts=_timeouts(workspace), retry=Retry(attempts=args.attempts),
                use_running_listener=args.use_running_listener,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )  # fmt: skip
        except PullStopped as stopped:
            report = stopped.report
            print(str(stopped), file=sys.stderr)
    print(f"pulled {len(rows)} cohort rows from {report.node} by C-{report.method.value.upper()}: "
          f"{report.count(RowStatus.RETRIEVED)} retrieved, "
          f"{report.count(RowStatus.RETRIEVED_BEFORE)} retrieved before, "
          f"{report.count(RowStatus.MISSING)} missing, {report.count(RowStatus.FAILED)} failed, "
          f"{report.count(RowStatus.NOT_ASKED)} not asked; the table (it names patients): "
          f"{report.table}")  # fmt: skip
    if report.count(RowStatus.FAILED, RowStatus.NOT_ASKED):
        print("run the same command again to retrieve what is still missing", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    """Add the network commands to the CLI's subparsers."""
    p = sub.add_parser(
        "listen", help="receive DICOM from scanners and PACS into incoming/ (a Storage SCP)"
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("--port", type=int, help="TCP port (default: [listen] port, 11112)")
    p.add_argument("--ae-title", help="our AE title (default: [listen] ae_title, MRICURATE)")
    p.add_argument("--address", help="the interface to listen on (default: [listen] address)")
    p.add_argument("--allow-ae", action="append", metavar="TITLE",
                   help="also accept this calling AE title (repeatable)")  # fmt: skip
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("echo", help="C-ECHO a PACS node named in mricurate.toml")
    p.add_argument("--workspace", required=True)
    p.add_argument("node", help="the NAME of a [pacs.NAME] table")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("push", help="send a release's DICOM files to a PACS node (C-STORE)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--to", required=True, metavar="NODE", help="the NAME of a [pacs.NAME] table")
    p.add_argument("--release", metavar="VERSION", help="e.g. v0002 (default: the latest)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "pull", help="retrieve a cohort's studies from a PACS node (C-FIND, C-MOVE or C-GET)"
    )
    p.add_argument("--workspace", required=True)
    p.add_argument("--from", dest="source", required=True, metavar="NODE",
                   help="the NAME of a [pacs.NAME] table with the role query")  # fmt: skip
    p.add_argument("--cohort", required=True, metavar="FILE",
                   help="a CSV of accession_number, or patient_id with study_date_from and "
                        "study_date_to (data_contracts/cohort.schema.json)")  # fmt: skip
    p.add_argument("--by", choices=["move", "get"],
                   help="C-MOVE to our listener or C-GET (default: get where the node has "
                        "the role get)")  # fmt: skip
    p.add_argument(
        "--use-running-listener",
        action="store_true",
        help="C-MOVE to the `mricurate listen` already running for this workspace",
    )
    p.add_argument("--attempts", type=int, default=4,
                   help="tries of a transient failure, 1, 2, 4 s apart (default 4)")  # fmt: skip
    p.set_defaults(func=cmd_pull)
