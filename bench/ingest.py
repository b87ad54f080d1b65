"""Benchmark: the ingest flow against the bare library calls and the plain commands, same corpus.

What is measured, in one run, on one corpus (2,010 generated MR slices from
:func:`bench.deid.generate_corpus` plus generated twix files), each row in a
fresh workspace and a subprocess of its own:

* ``library``: :func:`pipeline.ingest.once.ingest_once`, every stage of the
  ingest (discover, de-identify, convert, leak check, route, publish)
  called directly, no orchestrator: the baseline.
* ``flow``: the Prefect flow :func:`flows.ingest.ingest` doing the same,
  against a local Prefect server started once beforehand (as ``mricurate
  serve`` runs it).  The target is an overhead under 10% of ``library``.
* ``deid + convert``: the two plain commands a team would script around
  the library (no leak check, no catalog, no release): a peer for scale.
* ``flow on dask``, with ``--dask N``: the flow again, its DICOM and raw
  inputs computed on a local Dask cluster of N worker processes (one thread
  each) started once beforehand (``--dask-address``); ``jobs`` does not
  apply to it (each worker thread runs one worker process).  The machine's
  load average is printed beside every row: on a shared machine it says
  more about a figure than the figure does.

``--flow-from DIR`` adds a row ``flow@NAME``: the flow of another checkout
(``git worktree add --detach DIR COMMIT``), timed by this file, so that a
change to the flow is measured before and after in the same run, on the
same corpus, under the same load.

Each row gives wall seconds and CPU seconds: of the run's own process
(``time.process_time``: every thread, Prefect's included, from the call on;
imports before it are not counted), of its worker processes
(``RUSAGE_CHILDREN``) and of the Prefect server meanwhile (its process tree,
from ``/proc``: the server shares the machine's cores with the workers, and
in a library row it only idles).  On a shared machine the CPU seconds are
the figure to compare; wall time moves with the load.

Also printed: how long Prefect's ephemeral server takes to start here (what
a one-off ``mricurate ingest`` pays once per run, whatever the data).
Pixel cleaning is off (``clean_pixels = false``) so that OCR does not hide
the orchestration's cost; every other setting is the template's.

Run: ``.venv/bin/python bench/ingest.py [--slices 2010] [--raw 4] [--jobs 1 2] [--repeat 1]
[--dask 2] [--modes library flow deid+convert dask] [--flow-from DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

CONFIG = """
[deid]
clean_pixels = false
[ingest]
quiet_seconds = 0
jobs = {jobs}
[deface]
enabled = {deface}
"""
DEFACE = ["true"]  # --no-deface: the stages a cluster computes, without the deface stage's noise


def workspace(root: Path, corpus: Path, jobs: int) -> Path:
    """A fresh workspace with the corpus hard-linked into ``incoming/``."""
    from pipeline.workspace import init_workspace

    ws = init_workspace(root)
    (ws.root / "mricurate.toml").write_text(CONFIG.format(jobs=jobs, deface=DEFACE[0]))
    ws.incoming.rmdir()
    subprocess.run(["cp", "-al", str(corpus), str(ws.incoming)], check=True)
    return ws.root


def child(mode: str, root: Path, jobs: int, api_url: str, dask_address: str = "") -> None:
    """Run one ingest in this process and print its wall and CPU seconds as JSON."""
    from pipeline.workspace import open_workspace

    ws = open_workspace(root)
    if mode == "library":
        from pipeline.ingest.once import ingest_once

        def run() -> dict[str, object]:
            return ingest_once(ws, jobs=jobs)
    else:
        from flows.environment import configure

        configure(ws.prefect_home, api_url=api_url)
        from flows.ingest import ingest

        def run() -> dict[str, object]:
            state = ingest(str(ws.root), jobs=jobs, dask_address=dask_address, return_state=True)
            flow_run.append(state.state_details.flow_run_id)
            return state.result()  # type: ignore[no-any-return]

    flow_run: list[object] = []

    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    start = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = after.ru_utime + after.ru_stime - workers.ru_utime - workers.ru_stime
    release = summary["release"]
    assert isinstance(release, dict) and release["files"] > 0, summary
    try:
        tasks = _task_run_seconds(flow_run[0]) if flow_run else {}
    except Exception as exc:  # a figure less, not a failed benchmark
        tasks = {f"unavailable ({type(exc).__name__})": 0.0}
    print(json.dumps({"seconds": seconds, "files": release["files"], "stages": summary["seconds"],
                      "cpu": cpu, "worker_cpu": worker_cpu, "tasks": tasks}))  # fmt: skip


def _task_run_seconds(flow_run_id: object) -> dict[str, float]:
    """Prefect's own timing of the flow run's task runs (RUNNING to final), as its server has it.

    The stage clock times the task call; the difference is what Prefect spends
    on a task outside its body (resolving and recording its arguments, states).
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()  # task runs are recorded from the events this process sends
    only = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))  # type: ignore[list-item]
    with get_client(sync_client=True) as client:
        for _ in range(50):
            runs = client.read_task_runs(flow_run_filter=only)
            if len(runs) >= 8 and all(r.end_time for r in runs):
                break
            time.sleep(0.2)
    return {
        r.name: round((r.end_time - r.start_time).total_seconds(), 3)
        for r in runs
        if r.start_time and r.end_time
    }


def timed_child(
    mode: str, root: Path, jobs: int, api_url: str = "", dask_address: str = "", repo: Path = REPO
) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), str(jobs), api_url, dask_address,
         str(repo)],
        check=True, capture_output=True, text=True, cwd=repo,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def plain_commands(corpus: Path, dicom: Path, raw: Path, scratch: Path, jobs: int) -> float:
    key = scratch / "key"
    private = scratch / "private"
    mricurate = str(Path(sys.executable).parent / "mricurate")
    if not key.exists():
        subprocess.run([mricurate, "keygen", str(key)], check=True, capture_output=True)
    start = time.perf_counter()
    for command in (
        [mricurate, "deid", str(dicom), str(scratch / "out-dicom"), "--key-file", str(key),
         "--private-dir", str(private), "--jobs", str(jobs)],
        [mricurate, "convert", str(raw), str(scratch / "out-raw"), "--key-file", str(key),
         "--private-dir", str(private), "--jobs", str(jobs), "--fastmri", str(scratch / "fm")],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def ephemeral_start_seconds(scratch: Path) -> float:
    code = (
        "import sys, time; from pathlib import Path; sys.path.insert(0, {!r})\n"
        "from flows.environment import configure; configure(Path({!r}))\n"
        "from prefect import flow\n"
        "@flow\n"
        "def nothing() -> None: pass\n"
        "start = time.perf_counter(); nothing(); print(time.perf_counter() - start)\n"
    ).format(str(REPO), str(scratch / "ephemeral"))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of process ``pid`` and its live descendants (0 for none).

    Prefect's server is a process of its own on this machine: what it spends
    on a run (the API calls, the events it stores) competes with the workers
    for the same two cores, and no other column counts it.
    """
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    seen: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    tree, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for child, (parent, _) in seen.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    for member in tree:
        total += seen.get(member, (0, 0.0))[1]
    return total


@contextlib.contextmanager
def _cluster(workers: int) -> Iterator[str]:
    """A local Dask cluster of ``workers`` processes (one thread each), or '' for none."""
    if not workers:
        yield ""
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        yield str(cluster.scheduler_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=2010)
    parser.add_argument("--raw", type=int, default=4)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--dask",
        type=int,
        default=0,
        metavar="N",
        help="also the flow on a local Dask cluster of N worker processes",
    )
    parser.add_argument("--no-deface", action="store_true", help="[deface] enabled = false")
    parser.add_argument("--modes", nargs="+", default=["library", "flow", "deid+convert", "dask"])
    parser.add_argument(
        "--flow-from", type=Path, metavar="DIR",
        help="also the flow of the checkout DIR (e.g. the commit before a change)",
    )  # fmt: skip
    parser.add_argument("--child", nargs=6, metavar=("MODE", "ROOT", "JOBS", "API", "DASK", "REPO"))
    args = parser.parse_args(argv)
    if args.child:
        mode, root, jobs, api, address, repo = args.child
        if Path(repo).resolve() != REPO:
            sys.path.insert(0, str(Path(repo).resolve()))  # that checkout's flows and pipeline
        child(mode, Path(root), int(jobs), api, address)
        return 0
    if args.no_deface:
        DEFACE[0] = "false"
    from deid import generate_corpus, machine
    from runner import raw_corpus

    from flows.environment import configure

    scratch = Path(tempfile.mkdtemp(prefix="mricurate-bench-ingest-"))
    try:
        os.chmod(scratch, 0o700)
        corpus = scratch / "corpus"
        dicom_files, _, _ = generate_corpus(
            corpus / "dicom", slices=args.slices, subjects=20, series=5, seed=0
        )
        raw_corpus(corpus / "raw", args.raw)
        print(f"machine: {machine()}")
        print(f"corpus: {len(dicom_files)} DICOM slices + {args.raw} twix files")
        configure(scratch / "server-home")
        from flows.server import LocalServer

        with LocalServer(scratch / "server-home") as server, _cluster(args.dask) as address:
            rows: list[tuple[int, str, float, str, str, str]] = []
            other = f"flow@{args.flow_from.resolve().name}" if args.flow_from else ""
            runs = [(jobs, mode) for jobs in args.jobs for mode in ("library", "flow", other)
                    if mode in args.modes or (mode and mode == other)]  # fmt: skip
            if address and "dask" in args.modes:
                runs.append((0, "dask"))
            best: dict[tuple[int, str], tuple[float, object, str, str]] = {}
            for round_ in range(args.repeat):
                for jobs, mode in runs:
                    root = workspace(scratch / f"w-{mode}-{jobs}-{round_}", corpus, jobs)
                    before = _load()
                    repo = args.flow_from.resolve() if mode == other else REPO
                    served = _tree_cpu(server.pid)
                    result = timed_child("flow" if mode == other else mode, root, jobs,
                                         server.api_url, address if mode == "dask" else "",
                                         repo)  # fmt: skip
                    served = _tree_cpu(server.pid) - served
                    seconds = float(result["seconds"])  # type: ignore[arg-type]
                    if result.get("tasks"):
                        stages = result["stages"]
                        tasks = result["tasks"]
                        assert isinstance(stages, dict) and isinstance(tasks, dict)
                        print(f"{mode} jobs {jobs}: Prefect's task-run seconds {json.dumps(tasks)}; "
                              f"stage clock - task runs = "
                              f"{sum(stages.values()) - sum(v for k, v in tasks.items() if not k.startswith('report')):.2f} s")  # fmt: skip
                    if seconds < best.get((jobs, mode), (float("inf"),))[0]:
                        cpu = f"{result['cpu']:.1f} + {result['worker_cpu']:.1f} + {served:.1f}"
                        best[jobs, mode] = (seconds, result["stages"], f"{before} -> {_load()}",
                                            cpu)  # fmt: skip
                    shutil.rmtree(root)
                for jobs in args.jobs if "deid+convert" in args.modes else ():
                    plain = scratch / f"plain-{jobs}-{round_}"
                    plain.mkdir(mode=0o700)
                    before = _load()
                    seconds = plain_commands(corpus, corpus / "dicom", corpus / "raw", plain, jobs)
                    if seconds < best.get((jobs, "deid + convert"), (float("inf"),))[0]:
                        best[jobs, "deid + convert"] = (seconds, "", f"{before} -> {_load()}", "")
                    shutil.rmtree(plain)
            for (jobs, mode), (seconds, stages, load, cpu) in best.items():
                rows.append((jobs, mode, seconds, json.dumps(stages), load, cpu))
        ephemeral = ephemeral_start_seconds(scratch)
        print(f"\n{'jobs':>4}  {'run':<16} {'seconds':>8} {'files/s':>8}  vs library  "
              f"{'CPU s: run + workers + server':<29}  load (1 min) before -> after  stages")  # fmt: skip
        library = {jobs: s for jobs, mode, s, _, _, _ in rows if mode == "library"}
        baseline = max(library, default=0)
        total = len(dicom_files) + args.raw
        for jobs, mode, seconds, detail, load, cpu in rows:
            shown = f"dask x{args.dask}" if mode == "dask" else mode
            ratio = seconds / library.get(jobs, library.get(baseline, seconds))
            print(f"{jobs or '-':>4}  {shown:<16} {seconds:8.2f} {total / seconds:8.1f}  "
                  f"{ratio:9.3f}  {cpu:<29}  {load:<28}  {detail}")  # fmt: skip
        print(f"\nPrefect's ephemeral server: a flow of nothing took {ephemeral:.1f} s (start-up)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
