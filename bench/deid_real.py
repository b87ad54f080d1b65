"""Benchmark: de-identification of *real* DICOM files against pydicom's read + write of each.

``bench/deid.py`` times 2,000 generated slices, whose headers repeat from
slice to slice far more than a scanner's do (a real Siemens CSA header
differs in every slice; real files carry private groups, sequences and
encodings no generator has).  This one times every real file installed:
pydicom's bundled test files, pydicom-data's (``data_store``), the three
vendor files and the 35-slice Siemens Prisma head series of
``/work/shared/reference`` (when present), each file once per pass, in the
order a run meets them (a series' slices one after the other).

Per file, in a fresh child process per pass (so the step's memos start cold
each pass, as in a run over new files, and warm only within a pass, as
slices of one series warm them):

* ``floor``: ``dcmread`` + ``save_as`` to a temp file, what any pydicom-based
  tool must at least do;
* ``step``: :class:`~pipeline.steps.dicom_file.DicomStep` with the
  ``research`` profile, what each worker of ``mricurate deid`` runs on a
  file (read, rules, both hashes, write under a temp name).

Passes alternate floor, step, floor, step…; each file's best of ``--repeat``
is kept, in CPU seconds of the child (``time.process_time``: a busy second
core does not count) and wall seconds.  Only files both write are summed:
a file pydicom cannot write, or that the step quarantines (a DICOMDIR, a
file without pixel data, a cut-off file), is counted apart.  Each child
first warms up on one generated slice (imports, rule files), not on a real
file, which would warm the memos.

Rows: per source, files, floor and step totals and their ratio, and how
many files took the byte-stream path; then the MR images alone (the
project's domain); then the ``--worst`` files by ratio.

Run: ``.venv/bin/python bench/deid_real.py [--repeat 3] [--worst 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
MAX_BYTES = 64 << 20  # larger files (none installed today) would dominate the sums


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[Path, ...]


def sources() -> list[Source]:
    """The real files installed here, by source, in a stable order."""
    import pydicom

    found = [Source("pydicom", _files(Path(pydicom.__file__).parent / "data" / "test_files"))]
    try:
        import data_store  # pydicom-data, a dev dependency

        found.append(Source("pydicom-data", _files(Path(data_store.__file__).parent / "data")))
    except ImportError:
        print("pydicom-data is not installed: its files are left out", file=sys.stderr)
    if REFERENCE.is_dir():
        found.append(Source("reference", _files(REFERENCE / "dicom")))
        found.append(Source("reference head", _files(REFERENCE / "heads")))
    else:
        print(f"{REFERENCE} is absent: the reference files are left out", file=sys.stderr)
    return [source for source in found if source.files]


def _files(folder: Path) -> tuple[Path, ...]:
    return tuple(
        sorted(
            p for p in folder.rglob("*")
            if p.is_file() and p.suffix not in (".txt", ".md", ".py", ".json", ".gz", ".zip", ".bz2")
            and 0 < p.stat().st_size <= MAX_BYTES
        )
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Child: one pass over every file
# ---------------------------------------------------------------------------


def child(what: str, listing: Path, scratch: Path) -> None:
    """Time ``what`` on every file of ``listing``; one JSON line per file on stdout."""
    sys.path.insert(0, str(ROOT))
    from pydicom import dcmread

    from pipeline.batch.step import Area, Item, WorkerEnv
    from pipeline.dicom.profile import load_profile
    from pipeline.keys import SecretKey
    from pipeline.read.dicom import quiet_pydicom
    from pipeline.reasons import Outcome
    from pipeline.samples import write_sample_tree
    from pipeline.steps.dicom_file import STREAM_FACT, DicomStep

    quiet_pydicom()
    paths = [Path(line) for line in listing.read_text().splitlines()]
    temp = scratch / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    warm = scratch / "warm"
    write_sample_tree(warm, n_subjects=1, slices=1)
    warm_file = next(p for p in sorted(warm.rglob("*.dcm")))
    step = DicomStep(SecretKey(bytes(32)), load_profile("research"), scratch / "out")
    step.setup(WorkerEnv({Area.RELEASE: temp}, lambda: None, 512 << 20))
    if what == "floor":
        dcmread(warm_file).save_as(temp / "warm.dcm", enforce_file_format=True)
    else:
        step.run(Item(warm_file, 0))
    for index, path in enumerate(paths):
        ok, stream, why = True, False, ""
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            if what == "floor":
                dcmread(path).save_as(temp / f"{index}.dcm", enforce_file_format=True)
            else:
                result = step.run(Item(path, index))
                ok = result.outcome is Outcome.WRITTEN
                why = (
                    ""
                    if ok
                    else f"{result.outcome.value}: {result.reason.value if result.reason else ''}"
                )
                stream = any(name == STREAM_FACT for name, _ in result.facts)
        except Exception as exc:  # the floor refuses what pydicom cannot write; counted apart
            ok, why = False, type(exc).__name__
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for leftover in temp.iterdir():
            leftover.unlink()
        print(
            json.dumps(
                {"i": index, "ok": ok, "cpu": cpu, "wall": wall, "stream": stream, "why": why}
            )
        )


# ---------------------------------------------------------------------------
# Parent: alternate passes, keep each file's best
# ---------------------------------------------------------------------------


@dataclass
class Timing:
    ok: bool = True
    cpu: float = float("inf")
    wall: float = float("inf")
    stream: bool = False
    why: str = ""


def run_pass(what: str, listing: Path, scratch: Path) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, __file__, "--child", what, "--listing", str(listing),
         "--scratch", str(scratch)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{what} pass failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeat", type=int, default=3, help="passes of each, best kept (default 3)")
    p.add_argument("--worst", type=int, default=8, help="files listed by ratio (default 8)")
    p.add_argument("--child", choices=("floor", "step"), help=argparse.SUPPRESS)
    p.add_argument("--listing", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.listing, args.scratch)
        return
    found = sources()
    paths = [path for source in found for path in source.files]
    origin = [source.name for source in found for _ in source.files]
    with tempfile.TemporaryDirectory(prefix="mricurate-deid-real-") as tmp:
        listing = Path(tmp) / "files.txt"
        listing.write_text("".join(f"{path}\n" for path in paths))
        best = {what: [Timing() for _ in paths] for what in ("floor", "step")}
        for round_ in range(args.repeat):
            for what in ("floor", "step"):
                load = os.getloadavg()[0]
                start = time.perf_counter()
                rows = run_pass(what, listing, Path(tmp) / f"{what}-{round_}")
                print(f"pass {round_ + 1} {what}: {time.perf_counter() - start:.1f} s "
                      f"(load {load:.1f})", file=sys.stderr)  # fmt: skip
                for row in rows:
                    timing = best[what][int(row["i"])]  # type: ignore[call-overload]
                    timing.ok = timing.ok and bool(row["ok"])
                    timing.cpu = min(timing.cpu, float(row["cpu"]))  # type: ignore[arg-type]
                    timing.wall = min(timing.wall, float(row["wall"]))  # type: ignore[arg-type]
                    timing.stream = bool(row["stream"])
                    timing.why = str(row["why"])
        report(paths, origin, best, args.worst)


def report(paths: list[Path], origin: list[str], best: dict[str, list[Timing]], worst: int) -> None:
    floor, step = best["floor"], best["step"]
    both = [i for i in range(len(paths)) if floor[i].ok and step[i].ok]
    mr = set(_mr_images([paths[i] for i in both], both))
    print(f"\n{len(paths)} real files; both wrote {len(both)}; "
          f"floor only {sum(f.ok and not s.ok for f, s in zip(floor, step, strict=True))}, "
          f"step only {sum(s.ok and not f.ok for f, s in zip(floor, step, strict=True))}, "
          f"neither {sum(not f.ok and not s.ok for f, s in zip(floor, step, strict=True))}\n")  # fmt: skip
    unwritten: dict[str, int] = {}
    for timing in step:
        if not timing.ok:
            unwritten[timing.why] = unwritten.get(timing.why, 0) + 1
    for why, count in sorted(unwritten.items(), key=lambda kv: -kv[1]):
        print(f"  not written by the step: {count} ({why})")
    print()
    header = "| files | n | stream path | floor cpu s | step cpu s | × floor | floor wall s | step wall s | × floor |"
    print(header)
    print("| --- |" + " ---: |" * 8)
    groups = [(name, [i for i in both if origin[i] == name]) for name in dict.fromkeys(origin)]
    groups += [("all", both), ("MR images", sorted(mr))]
    for name, members in groups:
        if not members:
            continue
        f_cpu, s_cpu = sum(floor[i].cpu for i in members), sum(step[i].cpu for i in members)
        f_wall, s_wall = sum(floor[i].wall for i in members), sum(step[i].wall for i in members)
        streamed = sum(step[i].stream for i in members)
        print(f"| {name} | {len(members)} | {streamed} | {f_cpu:.3f} | {s_cpu:.3f} | "
              f"{s_cpu / f_cpu:.2f} | {f_wall:.3f} | {s_wall:.3f} | {s_wall / f_wall:.2f} |")  # fmt: skip
    ranked = sorted(both, key=lambda i: step[i].cpu / max(floor[i].cpu, 1e-6), reverse=True)
    print(f"\nworst {worst} by CPU ratio:")
    for i in ranked[:worst]:
        print(f"  {origin[i]} {paths[i].name}: floor {floor[i].cpu * 1e3:.2f} ms, "
              f"step {step[i].cpu * 1e3:.2f} ms ({step[i].cpu / max(floor[i].cpu, 1e-6):.1f}×), "
              f"{'stream' if step[i].stream else 'pydicom'} path")  # fmt: skip


def _mr_images(paths: list[Path], indices: list[int]) -> list[int]:
    """Of ``indices``, the files that are MR images (Modality MR with pixel data)."""
    from pydicom import dcmread

    chosen = []
    for index, path in zip(indices, paths, strict=True):
        try:
            ds = dcmread(path, specific_tags=["Modality", "PixelData"])
        except Exception:
            continue
        if ds.get("Modality") == "MR" and "PixelData" in ds:
            chosen.append(index)
    return chosen


if __name__ == "__main__":
    main()
