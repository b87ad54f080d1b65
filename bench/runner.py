"""Benchmark: the batch runner against the runners it replaced, a peer, and a rerun.

What is measured, in one run, on one corpus (default 2,010 MR slices from
:func:`bench.deid.generate_corpus`, the corpus of ``bench/deid.py``), each
row a real command in a subprocess so that start-up counts for everyone:

* ``cp -r``: copying the folder (a floor no de-identifier reaches).
* ``gdcmanon``: GDCM's C++ de-identifier (Debian ``libgdcm-tools``),
  ``--dumb --remove`` of the patient's name and ID, a peer for scale.
* ``before (7046bb3)``: ``mricurate deid`` as it was before the runner issue
  (three pools; no locks, journal, incremental reruns, memory ceiling),
  extracted with ``git archive`` into a temp folder and run from there.
* ``now``: ``mricurate deid`` of this checkout.
* ``rerun``: ``mricurate deid`` again over the complete OUTPUT (``now``:
  every input unchanged, nothing rewritten; ``before``: everything rewritten).
  The library's own share of the rerun (no interpreter start, no imports) is
  printed too.

``convert`` is measured the same way (before, now, rerun) on a few generated
twix files, when ``--convert N`` asks for N of them.

Best of ``--repeat`` interleaved rounds; sources read before each timing
(warm page cache), outputs removed between rounds.

Run: ``.venv/bin/python bench/runner.py [--slices 2010] [--repeat 3] [--jobs 2] [--convert 6]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from deid import generate_corpus, machine, warm  # noqa: E402

BEFORE = "7046bb3"  # the last commit before the runner issue


def extract(commit: str, into: Path) -> Path:
    """The tree of ``commit`` (code and rules), to run the old CLI from."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def mricurate(tree: Path, *args: str) -> list[str]:
    """The CLI of ``tree`` (its PYTHONPATH): ``-P`` keeps the current folder off sys.path."""
    return [sys.executable, "-P", "-c", "from mricurate.cli import main; raise SystemExit(main())",
            *args]  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd="/")
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
    return elapsed


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def library_rerun(source: Path, out: Path, private: Path, key_file: Path, jobs: int) -> float:
    """The rerun inside this process: what the runner costs without start-up."""
    from pipeline.dicom.profile import load_profile
    from pipeline.keys import load_key
    from pipeline.private_store import PrivateStore
    from pipeline.reasons import Outcome
    from pipeline.steps.dicom_file import deidentify_tree

    key, profile = load_key(key_file), load_profile("research")
    start = time.perf_counter()
    summary = deidentify_tree(source, out, key, profile, PrivateStore(private), jobs=jobs)
    elapsed = time.perf_counter() - start
    if set(summary.outcomes) != {Outcome.UNCHANGED}:
        raise SystemExit(f"the library rerun rewrote files: {summary.outcomes}")
    return elapsed


def raw_corpus(folder: Path, count: int) -> Path:
    from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix

    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        meas = SyntheticMeasurement(
            patient_name="Bench^Berta", patient_id=f"MRN-BENCH-{number}", channels=16,
            samples=512, lines=128, slices=8, meas_id=400 + number, seed=number,
        )  # fmt: skip
        write_vd_twix(folder / f"meas_{number:03d}.dat", [meas])
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--slices", type=int, default=2010)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--convert", type=int, default=0, help="also bench convert on N twix files")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="mricurate-bench-runner-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(machine())
    source = work / "src"
    files, _, _ = generate_corpus(source, slices=args.slices, subjects=10, series=4, seed=0)
    size = warm(files)
    print(f"corpus: {len(files)} MR slices, {size / 1e6:.0f} MB; jobs {args.jobs}")
    before = extract(BEFORE, work / "before")
    now_env, before_env = env_for(REPO), env_for(before)
    key = work / "keys" / "site.key"
    if not key.exists():
        key.parent.mkdir(mode=0o700)
        subprocess.run(mricurate(REPO, "keygen", str(key)), env=now_env, check=True,
                       capture_output=True)  # fmt: skip
    gdcmanon = shutil.which("gdcmanon")
    times: dict[str, list[float]] = {}

    def record(label: str, seconds: float) -> None:
        times.setdefault(label, []).append(seconds)
        print(f"  {label:<44} {seconds:7.2f} s", flush=True)

    def deid(tree: Path, env: dict[str, str], out: Path, private: Path, jobs: int) -> float:
        return timed(
            mricurate(tree, "deid", str(source), str(out), "--key-file", str(key),
                      "--private-dir", str(private), "--jobs", str(jobs)),
            env,
        )  # fmt: skip

    def deid_rows(scratch: Path) -> list[tuple[str, Callable[[], float]]]:
        """One round's rows; every command writes under ``scratch``."""
        j = args.jobs

        def now(tag: str, jobs: int) -> Callable[[], float]:
            return lambda: deid(REPO, now_env, scratch / f"n{tag}", scratch / f"pn{tag}", jobs)

        def old(tag: str, jobs: int) -> Callable[[], float]:
            return lambda: deid(before, before_env, scratch / f"b{tag}", scratch / f"pb{tag}", jobs)

        rows: list[tuple[str, Callable[[], float]]] = [
            ("cp -r", lambda: timed(["cp", "-r", str(source), str(scratch / "cp")], now_env)),
        ]
        if gdcmanon:
            command = [gdcmanon, "--dumb", "--remove", "0010,0010", "--remove", "0010,0020",
                       "--recursive", "-i", str(source), "-o", str(scratch / "gdcm")]  # fmt: skip
            rows.append(("gdcmanon --dumb (C++ peer)", lambda: timed(command, now_env)))
        for jobs in sorted({1, j}):
            rows.append((f"before ({BEFORE}) deid jobs={jobs}", old(str(jobs), jobs)))
            rows.append((f"now deid jobs={jobs}", now(str(jobs), jobs)))
        rows.append((f"before rerun over complete OUT jobs={j}", old(str(j), j)))
        rows.append((f"now rerun over complete OUT jobs={j}", now(str(j), j)))
        rows.append((
            f"now rerun, library only (no start-up) jobs={j}",
            lambda: library_rerun(source, scratch / f"n{j}", scratch / f"pn{j}", key, j),
        ))  # fmt: skip
        return rows

    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat}")
        scratch = work / "runs"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        for label, run in deid_rows(scratch):
            warm(files)
            record(label, run())

    if args.convert:
        raw = raw_corpus(work / "raw", args.convert)
        raw_size = sum(p.stat().st_size for p in raw.iterdir())
        print(f"convert corpus: {args.convert} twix files, {raw_size / 1e6:.0f} MB")

        def convert(tree: Path, env: dict[str, str], out: Path, private: Path) -> float:
            return timed(
                mricurate(tree, "convert", str(raw), str(out), "--key-file", str(key),
                          "--private-dir", str(private), "--jobs", str(args.jobs)),
                env,
            )  # fmt: skip

        def convert_rows(scratch: Path) -> list[tuple[str, Callable[[], float]]]:
            def old() -> float:
                return convert(before, before_env, scratch / "b", scratch / "pb")

            def now() -> float:
                return convert(REPO, now_env, scratch / "n", scratch / "pn")

            return [("before convert", old), ("now convert", now),
                    ("before convert rerun", old), ("now convert rerun", now)]  # fmt: skip

        for _ in range(args.repeat):
            scratch = work / "raw-runs"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            for label, run in convert_rows(scratch):
                warm(list(raw.iterdir()))
                record(label, run())

    print()
    floor = min(times["cp -r"])
    width = max(len(label) for label in times)
    print(f"{'':<{width}}  {'best s':>7}  {'x cp':>6}")
    for label, values in times.items():
        print(f"{label:<{width}}  {min(values):7.2f}  {min(values) / floor:6.1f}")
    j = args.jobs
    first, again = (
        min(times[f"now deid jobs={j}"]),
        min(times[f"now rerun over complete OUT jobs={j}"]),
    )
    library = min(times[f"now rerun, library only (no start-up) jobs={j}"])
    old = min(times[f"before ({BEFORE}) deid jobs={j}"])
    print(f"\nrunner now vs before, deid jobs={j}: {first / old:.2f}x the time")
    print(f"rerun over complete OUT: {again / first:.0%} of the first run "
          f"({library / first:.0%} without interpreter start-up and imports)")  # fmt: skip
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
