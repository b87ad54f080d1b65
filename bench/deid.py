"""Benchmark: how fast mricurate de-identifies a folder of MR slices, against a floor and a peer.

What is measured, on one synthetic corpus (default 2,000 Siemens-style MR
slices, 256×256, 16-bit, ~136 kB each, made by :mod:`pipeline.samples`):

* ``pydicom floor``: plain ``dcmread`` + ``save_as`` of every file, one process.
  No de-identification tool can be faster than reading and writing the files
  with the library it is built on, so every other figure is given as a ratio
  to this one.
* ``pydicom + fsync``: the floor plus an ``fsync`` of each output.  mricurate
  makes every output durable before renaming it into place (crash safety: an
  fsync per file, or one sync per commit batch), so this row bounds how much
  of the gap to the floor is the disk rather than the rules.
* ``gdcmanon``: GDCM's C++ anonymizer (Debian ``libgdcm-tools``) in its PS3.15
  basic-profile mode (``-e``, which encrypts the replaced attributes for a
  certificate: a self-signed one is made with ``openssl`` outside the timed
  region), one process over the whole tree: what a compiled tool that reads
  and writes whole files costs.
* ``dicognito``: the peer tool through its Python API (``Anonymizer.anonymize``
  on each dataset, then ``save_as``), one process.
* ``mricurate jobs=N``: :func:`pipeline.steps.dicom_file.deidentify_tree` in this
  process, with the ``research`` profile, a fresh output and private store
  each time (link table, run record and checksums included: that is the real
  cost of a run).
* ``mricurate CLI``: ``mricurate deid`` end to end in a subprocess, so the
  interpreter and import start-up is visible next to the in-process figure.

All timings use :func:`time.perf_counter`.  The OS page cache cannot be
dropped without root, so instead every source file is read once before any
timing, and before each measurement pending writes are flushed (``os.sync``)
and the sources are read again: every tool starts in the same warm state.
Outputs are deleted between measurements, outside the timed region.  The
pydicom validation settings that mricurate's workers switch off are switched
off for the whole benchmark, so all tools run with the same pydicom config.
Each measurement is repeated ``--repeat`` times (interleaved) and the best is
reported, and so is every tool's time over the same round's floor (the
median of those ratios pairs runs made minutes apart, where best against
best may pair a quiet round with a busy one).  Wall time is the figure of
merit; the ``cpu s`` column (user + system time of this process and its
reaped children: pool workers, the CLI) and the load average printed before
each measurement help tell a slow tool from a busy machine; ``sys s`` is the
kernel's share of that cpu (creating, writing and syncing files), which no
tool's code controls and which has varied most from round to round here.
Corpus generation is timed separately; it is not what we measure.

Run: ``.venv/bin/python bench/deid.py [--slices 2000] [--repeat 3] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from pydicom import dcmread

from pipeline.atomic import TEMP_PREFIX
from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import Profile, load_profile
from pipeline.keys import SecretKey, generate_key
from pipeline.private_store import PrivateStore
from pipeline.read.dicom import quiet_pydicom
from pipeline.reasons import Outcome
from pipeline.steps.dicom_file import deidentify_tree

ROWS = COLS = 256
TOOLS = ("floor", "fsync", "gdcmanon", "dicognito", "mricurate", "cli")


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


def _split(total: int, parts: int) -> list[int]:
    """``total`` slices over ``parts`` series, as evenly as possible (no empty series)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]


def generate_corpus(
    source: Path, *, slices: int, subjects: int, series: int, seed: int
) -> tuple[list[Path], float, bool]:
    """Write the corpus under ``source``; reuse it if a previous run left the same one.

    Returns the files (sorted), the generation time and whether it was reused.
    Each series is generated once by :func:`mr_series` (the phantom is computed
    once per series) and its datasets are written straight out.
    """
    from pipeline.samples import make_subjects, mr_series

    params = {"slices": slices, "subjects": subjects, "series": series, "seed": seed,
              "rows": ROWS, "cols": COLS}  # fmt: skip
    marker = source.parent / "corpus.json"  # beside, not inside: every file under SOURCE is input
    if marker.exists() and json.loads(marker.read_text()) == params:
        existing = sorted(source.rglob("*.dcm"))
        if len(existing) == slices:
            return existing, 0.0, True
    marker.unlink(missing_ok=True)
    if source.exists():
        shutil.rmtree(source)
    start = time.perf_counter()
    people = make_subjects(subjects, seed=seed)
    counts = _split(slices, subjects * series)
    files: list[Path] = []
    for index, n_slices in enumerate(counts):
        s, k = divmod(index, series)
        folder = source / f"sub-{s + 1:03d}" / f"ser-{k + 1:02d}"
        folder.mkdir(parents=True)
        datasets = mr_series(
            people[s], n_slices=n_slices, rows=ROWS, cols=COLS, seed=seed + s,
            series_number=k + 1,
        )  # fmt: skip
        for i, ds in enumerate(datasets):
            path = folder / f"IM{i + 1:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    elapsed = time.perf_counter() - start
    marker.write_text(json.dumps(params))
    return sorted(files), elapsed, False


def warm(files: list[Path]) -> int:
    """Flush pending writes, then read every source file so it is in the page cache."""
    os.sync()
    gc.collect()
    return sum(len(p.read_bytes()) for p in files)


def cpu_seconds() -> tuple[float, float, float]:
    """User + system CPU time of this process, and of its reaped children (workers, the CLI);
    and the system time of both (the kernel's share: file creation, writes, fsync)."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system, t.system + t.children_system


def count_outputs(root: Path) -> int:
    """Output files, less temps and mricurate's own ``.mricurate/`` (lock, key fingerprint)."""
    total = 0
    for _folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".mricurate"]
        total += sum(1 for n in names if not n.startswith(TEMP_PREFIX))
    return total


# ---------------------------------------------------------------------------
# The measured tools
# ---------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    files: int
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    # Of each run's cpu: this process (the runner, committing; or the whole
    # tool) and the worker processes it reaped.
    own: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)  # of each run's cpu: the kernel's
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)


def _copy_loop(
    files: list[Path], source: Path, output: Path, transform: Callable[..., None] | None,
    *, fsync: bool = False,
) -> int:  # fmt: skip
    made: set[Path] = set()
    for path in files:
        target = output / path.relative_to(source)
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        ds = dcmread(path)
        if transform is not None:
            transform(ds)
        ds.save_as(target, enforce_file_format=True)
        if fsync:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return len(files)


def run_floor(files: list[Path], source: Path, output: Path, *, fsync: bool) -> str:
    _copy_loop(files, source, output, None, fsync=fsync)
    return ""


def run_dicognito(files: list[Path], source: Path, output: Path) -> str:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()
    _copy_loop(files, source, output, anonymizer.anonymize)
    return ""


def gdcmanon_certificate(scratch: Path) -> Path | None:
    """A self-signed certificate for gdcmanon's basic-profile mode, or None without the tools."""
    if shutil.which("gdcmanon") is None or shutil.which("openssl") is None:
        return None
    cert, key = scratch / "gdcmanon-cert.pem", scratch / "gdcmanon-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=mricurate-bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def run_gdcmanon(source: Path, output: Path, certificate: Path) -> str:
    output.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["gdcmanon", "-e", "-c", str(certificate), "-r", "-i", str(source), "-o", str(output)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"gdcmanon failed ({proc.returncode}): {proc.stderr.strip()[:400]}")
    return ""


def run_mricurate(
    source: Path, output: Path, private: Path, key: SecretKey, profile: Profile, jobs: int
) -> RunSummary:
    store = PrivateStore(private)
    return deidentify_tree(source, output, key, profile, store, jobs=jobs)


def cli_path() -> Path:
    beside = Path(sys.executable).parent / "mricurate"
    if beside.exists():
        return beside
    found = shutil.which("mricurate")
    if found is None:
        raise SystemExit("the mricurate command is not installed (pip install -e .)")
    return Path(found)


def run_cli(
    source: Path, output: Path, private: Path, key_file: Path, jobs: int
) -> tuple[dict[str, int], str]:
    """``mricurate deid`` in a subprocess; the outcome counts it printed, and its output."""
    proc = subprocess.run(
        [str(cli_path()), "deid", str(source), str(output), "--key-file", str(key_file),
         "--private-dir", str(private), "--jobs", str(jobs)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"mricurate deid failed ({proc.returncode}): {proc.stderr.strip()}")
    outcomes = dict(
        (m.group(1).strip(), int(m.group(2)))
        for m in re.finditer(r"^  (\w[\w ]*?)\s+(\d+)$", proc.stdout, re.MULTILINE)
    )
    return outcomes, proc.stdout


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"machine: {platform.system()} {platform.release()}, {cpu}, nproc {usable} "
        f"(cpu_count {os.cpu_count()})\n"
        f"python {platform.python_version()} ({sys.executable}), pydicom {version('pydicom')}, "
        f"numpy {version('numpy')}, mricurate {version('mricurate')}, "
        f"dicognito {version('dicognito')}, gdcmanon {_gdcm_version()}"
    )


def _gdcm_version() -> str:
    if shutil.which("gdcmanon") is None:
        return "not installed"
    proc = subprocess.run(["gdcmanon", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"gdcm ([0-9.]+)", proc.stdout + proc.stderr)
    return found.group(1) if found else "unknown version"


def table(results: list[Result], floor: Result | None) -> str:
    lines = [
        f"{'tool':<28} {'files':>6} {'seconds':>9} {'files/s':>9} {'× floor':>8} "
        f"{'cpu s':>7} {'(own + workers)':>16} {'sys s':>6}  runs (wall s)",
        "-" * 117,
    ]
    for r in results:
        ratio = f"{r.best / floor.best:8.2f}" if floor and floor.times else f"{'-':>8}"
        runs = ", ".join(f"{t:.2f}" for t in r.times)
        lines.append(
            f"{r.label:<28} {r.files:>6} {r.best:>9.2f} {r.files / r.best:>9.1f} {ratio} "
            f"{min(r.cpu):>7.2f} {_split_text(r):>16} {_least_cpu_system(r):>6.2f}  [{runs}]"
        )
    return "\n".join(lines)


def _least_cpu_system(r: Result) -> float:
    """The system time of the run with the least cpu (the one ``_split_text`` splits)."""
    return r.system[min(range(len(r.cpu)), key=r.cpu.__getitem__)]


def per_round(tool: Result, floor: Result) -> str:
    """``tool``'s wall time over the same round's floor, round by round, and their median.

    Each round runs every tool one after the other, so a round's ratio
    compares runs minutes apart at most; best-of-N against best-of-N may pair
    a quiet round's floor with a busy round's tool (on this shared machine the
    floor's own time has varied 1.8x within one run, most of it system time:
    see the ``sys s`` column).
    """
    ratios = [t / f for t, f in zip(tool.times, floor.times, strict=True)]
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    return (
        f"{tool.label} / the same round's floor: [{shown}], median {statistics.median(ratios):.2f}"
    )


def _split_text(r: Result) -> str:
    """The cpu of the run with the least cpu, as this process + its workers."""
    best = min(range(len(r.cpu)), key=r.cpu.__getitem__)
    own = r.own[best]
    return f"({own:.2f} + {r.cpu[best] - own:.2f})"


def print_profile(prof: cProfile.Profile, top: int, what: str) -> None:
    for order, title in (("cumulative", "cumulative time"), ("tottime", "total (own) time")):
        stream = io.StringIO()
        stats = pstats.Stats(prof, stream=stream)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        print(f"\n=== cProfile, {what}, top {top} by {title} ===")
        text = stream.getvalue()
        # Drop pstats' preamble up to the column header line.
        start = text.find("   ncalls")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def profile_step(
    files: list[Path], scratch: Path, key: SecretKey, profile: Profile
) -> tuple[cProfile.Profile, float]:
    """cProfile :class:`DicomStep` over every file in this process: what each worker runs.

    The runner's workers are other processes, which the jobs=1 profile only
    sees waiting; this pass shows the per-file work itself.
    """
    from pipeline.batch.step import Area, Item, WorkerEnv
    from pipeline.steps.dicom_file import DicomStep

    temp = scratch / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    step = DicomStep(key, profile, scratch)
    step.setup(WorkerEnv({Area.RELEASE: temp}, lambda: None, 512 << 20))
    items = [Item(path, index) for index, path in enumerate(files)]
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for item in items:
        step.run(item)
    prof.disable()
    elapsed = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    return prof, elapsed


def only_pass(what: str, files: list[Path], count: int, scratch: Path) -> None:
    """The per-file work alone, for callgrind: one warm-up file, then ``count`` files.

    The fixed cost (interpreter, imports, the warm-up) is the same for every
    ``count``: the difference of two counts' instructions is the work of the
    files between them.
    """
    from pipeline.batch.step import Area, Item, WorkerEnv
    from pipeline.steps.dicom_file import DicomStep

    out = scratch / "only"
    temp = out / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    if what == "floor":
        dcmread(files[-1]).save_as(temp / "warm.dcm", enforce_file_format=True)
        for index, path in enumerate(files[:count]):
            dcmread(path).save_as(temp / f"{index}.dcm", enforce_file_format=True)
    else:
        # A fixed key: the same derivations, so the same work, in every pass.
        step = DicomStep(SecretKey(bytes(32)), load_profile("research"), out)
        step.setup(WorkerEnv({Area.RELEASE: temp}, lambda: None, 512 << 20))
        step.run(Item(files[-1], 0))
        for index, path in enumerate(files[:count]):
            result = step.run(Item(path, index))
            if result.outcome is not Outcome.WRITTEN:
                raise SystemExit(f"file {index}: {result.outcome}")
    shutil.rmtree(out, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--slices", type=int, default=2000, help="total files (default 2000)")
    p.add_argument("--subjects", type=int, default=10, help="subjects (default 10)")
    p.add_argument("--series", type=int, default=4, help="series per subject (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep corpus and scratch here (default: temp)")
    p.add_argument("--repeat", type=int, default=1, help="repeat each measurement, keep the best")
    p.add_argument("--jobs", type=int, default=2, help="worker count for the parallel runs")
    p.add_argument(
        "--tools", default=",".join(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)} (default all)",
    )  # fmt: skip
    p.add_argument("--profile", action="store_true", help="cProfile the jobs=1 mricurate pass")
    p.add_argument("--top", type=int, default=25, help="rows of each cProfile listing")
    p.add_argument(
        "--profile-out", type=Path, help="also dump the cProfile stats here (for snakeviz, pstats)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp workdir")
    p.add_argument(
        "--only", choices=("step", "floor"),
        help="no timing: run the deid step in this process (or dcmread + save_as) over the "
        "first --files files and exit; run under valgrind --tool=callgrind with two --files "
        "values and subtract, for instruction counts a busy machine cannot skew",
    )  # fmt: skip
    p.add_argument("--files", type=int, default=30, help="files for --only (default 30)")
    args = p.parse_args(argv)
    unknown = set(args.tools.split(",")) - set(TOOLS)
    if unknown:
        p.error(f"unknown tool(s) {sorted(unknown)}; choose from {TOOLS}")
    if args.profile_out:
        args.profile = True
    if args.slices < 1 or args.repeat < 1 or args.jobs < 1:
        p.error("--slices, --repeat and --jobs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = set(args.tools.split(","))
    quiet_pydicom()  # the same pydicom settings for every tool (see docstring)
    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="mricurate-bench-")) if temp else args.workdir
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    source, scratch = workdir / "src", workdir / "runs"
    print(machine())
    print(f"workdir: {workdir}; load average {os.getloadavg()[0]:.2f} at start")
    try:
        return _bench(args, tools, source, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if temp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _bench(args: argparse.Namespace, tools: set[str], source: Path, scratch: Path) -> int:
    files, gen_s, reused = generate_corpus(
        source, slices=args.slices, subjects=args.subjects, series=args.series, seed=args.seed
    )
    if args.only:
        only_pass(args.only, files, args.files, scratch)
        return 0
    n = len(files)
    size = warm(files)  # the warm-up pass: every file read once before anything is timed
    how = "reused from a previous run" if reused else f"generated in {gen_s:.1f} s"
    print(
        f"corpus: {n} MR slices {ROWS}×{COLS} 16-bit, {args.subjects} subjects × {args.series} "
        f"series, {size / 1e6:.0f} MB ({size / n / 1e3:.0f} kB/file), {how}"
    )

    if "dicognito" in tools:
        try:
            import dicognito.anonymizer  # noqa: F401
        except ImportError:
            print("dicognito is not installed (pip install -e '.[bench]'): skipped")
            tools.discard("dicognito")

    key = generate_key()
    profile = load_profile("research")
    scratch.mkdir(parents=True, exist_ok=True)
    certificate = gdcmanon_certificate(scratch) if "gdcmanon" in tools else None
    if "gdcmanon" in tools and certificate is None:
        print("gdcmanon or openssl is not installed (make bench installs libgdcm-tools): skipped")
        tools.discard("gdcmanon")
    key_file = scratch / "bench.key"
    keygen_s = 0.0
    if "cli" in tools:
        start = time.perf_counter()
        subprocess.run([str(cli_path()), "keygen", str(key_file)], check=True, capture_output=True)
        keygen_s = time.perf_counter() - start
    jobs = sorted({1, args.jobs})

    results: dict[str, Result] = {}
    plan: list[tuple[str, Callable[[Path, Path], str]]] = []
    if "floor" in tools:
        plan.append(("pydicom floor", lambda o, p: run_floor(files, source, o, fsync=False)))
    if "fsync" in tools:
        plan.append(("pydicom + fsync", lambda o, p: run_floor(files, source, o, fsync=True)))
    if "gdcmanon" in tools and certificate is not None:
        cert = certificate
        plan.append(("gdcmanon -e (C++, 1 proc)", lambda o, p: run_gdcmanon(source, o, cert)))
    if "dicognito" in tools:
        plan.append(("dicognito (API, 1 proc)", lambda o, p: run_dicognito(files, source, o)))
    problems: list[str] = []
    if "mricurate" in tools:
        for j in jobs:

            def mricurate(o: Path, p: Path, j: int = j) -> str:
                summary = run_mricurate(source, o, p, key, profile, j)
                if summary.seen != n or summary.outcomes != {Outcome.WRITTEN: n}:
                    problems.append(
                        f"mricurate jobs={j}: {summary.outcomes}, reasons "
                        f"{ {r: len(k) for r, k in summary.reasons.items()} }"
                    )
                paths = {k: v for k, v in summary.facts.items() if k.startswith("header path")}
                return f"outcomes {summary.outcomes}; {paths}"

            plan.append((f"mricurate jobs={j}", mricurate))
    if "cli" in tools:

        def cli(o: Path, p: Path) -> str:
            outcomes, stdout = run_cli(source, o, p, key_file, args.jobs)
            if outcomes != {"written": n}:
                problems.append(f"mricurate CLI: {outcomes}; it printed:\n{stdout}")
            return f"outcomes {outcomes}"

        plan.append((f"mricurate CLI jobs={args.jobs}", cli))

    for round_ in range(args.repeat):
        for label, fn in plan:
            slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            out, priv = (
                scratch / "out" / f"{slug}-{round_}",
                scratch / "private" / f"{slug}-{round_}",
            )
            warm(files)
            load = os.getloadavg()[0]
            own0, children0, system0 = cpu_seconds()
            start = time.perf_counter()
            note = fn(out, priv)
            elapsed = time.perf_counter() - start
            own1, children1, system1 = cpu_seconds()
            own = own1 - own0
            cpu = own + children1 - children0
            written = count_outputs(out)
            result = results.setdefault(label, Result(label, n))
            result.times.append(elapsed)
            result.cpu.append(cpu)
            result.own.append(own)
            result.system.append(system1 - system0)
            if note and note not in result.notes:
                result.notes.append(note)
            if written != n:
                problems.append(f"{label}: {written} output files for {n} inputs")
            print(
                f"  [{round_ + 1}/{args.repeat}] {label:<28} {elapsed:7.2f} s  cpu {cpu:6.2f} s "
                f"(own {own:5.2f}, sys {system1 - system0:5.2f})  "
                f"load before {load:4.2f}  {note}",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(priv, ignore_errors=True)

    ordered = list(results.values())
    floor = results.get("pydicom floor")
    print()
    print(table(ordered, floor))
    one, many = results.get("mricurate jobs=1"), results.get(f"mricurate jobs={args.jobs}")
    if floor is not None and floor.times:
        print()
        for r in ordered:
            if r is not floor and len(r.times) == len(floor.times):
                print(per_round(r, floor))
    if one and many and one is not many:
        print(
            f"\nspeed-up mricurate jobs={args.jobs} vs jobs=1: {one.best / many.best:.2f}× "
            f"(nproc {len(os.sched_getaffinity(0))})"
        )
    via_cli = results.get(f"mricurate CLI jobs={args.jobs}")
    if via_cli and many:
        print(
            f"CLI end to end vs in-process jobs={args.jobs}: {via_cli.best - many.best:+.2f} s "
            f"(start-up: interpreter, imports, key and profile load; and noise); `mricurate keygen` alone: {keygen_s:.2f} s"
        )
    for r in ordered:
        for note in r.notes:
            print(f"{r.label}: {note}")
    print(f"corpus generation (not measured above): {how}")

    if args.profile:
        out, priv = scratch / "out" / "profile", scratch / "private" / "profile"
        warm(files)
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        summary = run_mricurate(source, out, priv, key, profile, 1)
        prof.disable()
        elapsed = time.perf_counter() - start
        print(
            f"\ncProfile pass, mricurate jobs=1: {elapsed:.2f} s under the profiler, "
            f"outcomes {summary.outcomes}"
        )
        print_profile(prof, args.top, "mricurate jobs=1, this process (runner and commit)")
        step_prof, step_s = profile_step(files, scratch / "step", key, profile)
        print(f"\ncProfile pass, the deid step in this process: {step_s:.2f} s under the profiler")
        print_profile(step_prof, args.top, "the deid step as a worker runs it")
        if args.profile_out:
            prof.dump_stats(args.profile_out)
            step_prof.dump_stats(args.profile_out.with_suffix(".step.prof"))
            print(
                f"\ncProfile stats written to {args.profile_out} and "
                f"{args.profile_out.with_suffix('.step.prof')}"
            )

    if problems:
        print("\nPROBLEMS:")
        for line in problems:
            print(f"  {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
