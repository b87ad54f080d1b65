"""Benchmark: Siemens twix → ISMRMRD/HDF5 conversion speed and memory, against floors and peers.

One synthetic VD/VE twix file shaped like a fastMRI knee scan (15 coils, 640
samples per readout with oversampling, 368 lines per slice; as many slices as
``--size`` asks, 18 for the default 500 MB) is written by
:func:`pipeline.samples.twix.write_vd_twix`, streaming, into a temporary folder
outside the repository, which is deleted at the end.  Then, on that file:

* ``cp``: coreutils ``cp`` (it may copy inside the kernel with
  ``copy_file_range``, never touching user space): the floor for moving the bytes.
* ``cp + fsync``: the same, then the copy made durable, as ``write_ismrmrd`` makes its
  output (fsync before the rename) so that a crash never leaves a file that looks whole.
* ``dd bs=8M``: a copy through user space with large reads and writes, what any
  converter at least has to do.
* ``floor: cp + fsync + sha256 in, out``: what any durable, hashed conversion must at
  least do, one step after the other: the copy, its fsync, the SHA-256 of the input
  (the runner names inputs by it) and of the output (the manifests record it), each
  hash a pass of its own (:func:`~pipeline.read.content.file_sha256`).
* ``floor: the same, hashes on two threads``: the same work overlapped as far as two
  cores allow: the input hashed on a thread while ``cp`` copies, then the output hashed
  on a thread while another fsyncs it (the copy must exist before it is hashed).  A
  converter at this row's time would lose nothing to its format.
* ``twixtools.read_twix``: the reference reader alone; it parses every MDH into
  Python objects but reads samples only when asked, so ``+ every mdb.data`` reads
  them too (no output written).
* ``open_twix``: our layout check (every MDH read, no samples).
* ``measurement_blocks``: our streaming reader alone (samples read and mapped, nothing written).
* ``mricurate convert``: ``open_twix`` + ``measurement_blocks`` + ``write_ismrmrd``,
  the conversion of the samples, in this process (a minimal header); the writer
  hashes its output (SHA-256, what the runner records) while the fsync waits.
* ``file_sha256``: the input's SHA-256 in a pass of its own, what it would cost if the
  runner did not take it from the reader's bytes (``pipeline.raw.input_hash``).
* ``convert_tree``: what ``mricurate convert`` runs on a folder holding the file:
  the input hashed, the full header built from the generator's protocol, the
  subject found, the header anonymized by the allowlist and checked against the
  ISMRMRD schema, the file written to a temp name, fsynced, renamed and
  recorded in the private store.
* ``convert_tree --fastmri``: the same, and the fastMRI-layout training file
  written from the new ISMRMRD file (``export_fastmri``).
* ``append_acquisition``: the same acquisitions written one by one with
  ``ismrmrd.Dataset.append_acquisition`` (an ``ismrmrd.Acquisition`` built per
  readout, as a one-by-one converter does), timed on the first ``--prefix``
  acquisitions and extrapolated to the file by bytes (marked ``*``).

MB/s are of the input file's size, 10^6 bytes; ``cpu s`` is this process's and its
reaped children's user + system time (the runner's worker included), ``load`` the
1-minute load average when the row started: on a shared machine read wall time
next to both.  The page cache cannot be
dropped here, so every figure is *warm*: the input is read once before any
timing, and before each measurement pending writes are flushed (``os.sync``)
and outputs of the previous one deleted.  Each measurement is repeated
``--repeat`` times and the best is kept.  Finally the conversion runs in a
subprocess, and so does ``convert_tree`` (``--jobs 1``) without and with
``--fastmri``; their peak RSS is the largest ``ru_maxrss`` of the launcher's
descendants (the runner's worker included), which bounds the memory a
conversion needs whatever the size.

Run: ``.venv/bin/python bench/convert.py [--size 500M|2G] [--repeat 3] [--prefix 1000]
[--skip twixtools,append,fastmri] [--rss-only]``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dicom.profile import load_profile  # noqa: E402
from pipeline.keys import SecretKey  # noqa: E402
from pipeline.private_store import PrivateStore  # noqa: E402
from pipeline.raw.blocks import AcquisitionBlock  # noqa: E402
from pipeline.raw.header_rules import load_header_rules  # noqa: E402
from pipeline.raw.ismrmrd_out import write_ismrmrd  # noqa: E402
from pipeline.raw.twix import measurement_blocks, open_twix  # noqa: E402
from pipeline.read.content import file_sha256  # noqa: E402
from pipeline.reasons import Outcome  # noqa: E402
from pipeline.steps.raw_file import convert_tree  # noqa: E402

COILS, SAMPLES, LINES = 15, 640, 368
XML = '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"></ismrmrdHeader>'


def parse_size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper()
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def readout_bytes() -> int:
    return 192 + COILS * (32 + 8 * SAMPLES)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def read_through(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 * 2**20):
            pass


def convert(source: Path, target: Path) -> int:
    twix = open_twix(source)
    meas = twix.measurements[0]
    return write_ismrmrd(target, XML, measurement_blocks(twix, meas)).acquisitions


def whole_pipeline(source: Path, work: Path, fastmri: bool = False) -> int:
    """``convert_tree`` on the folder of ``source``: outputs and private store under ``work``."""
    summary = convert_tree(
        source.parent,
        work / "release",
        SecretKey(bytes(range(32))),
        PrivateStore(work / "private"),
        load_header_rules(),
        date_shift_days=load_profile("research").date_shift_days,
        fastmri=work / "fastmri" if fastmri else None,
        jobs=1,
    )
    if summary.outcomes != {Outcome.WRITTEN: 1}:
        raise SystemExit(f"convert_tree did not write the file: {summary.reasons}")
    if fastmri and summary.facts["fastMRI files"] != 1:
        raise SystemExit(f"convert_tree wrote no fastMRI file: {summary.facts}")
    return summary.facts["acquisitions"]


def floor_sequential(source: Path, target: Path) -> tuple[str, str]:
    """cp, fsync of the copy, SHA-256 of the input, then of the output: one after the other."""
    subprocess.run(["cp", str(source), str(target)], check=True)
    with open(target, "rb") as copied:
        os.fsync(copied.fileno())
    return file_sha256(source), file_sha256(target)


def floor_threads(source: Path, target: Path) -> tuple[str, str]:
    """The floor's work on two threads: input hash || cp, then output hash || fsync."""
    hashes: dict[str, str] = {}

    def hash_of(name: str, path: Path) -> threading.Thread:
        thread = threading.Thread(target=lambda: hashes.__setitem__(name, file_sha256(path)))
        thread.start()
        return thread

    hashing_input = hash_of("input", source)
    subprocess.run(["cp", str(source), str(target)], check=True)
    hashing_output = hash_of("output", target)
    with open(target, "rb") as copied:
        os.fsync(copied.fileno())
    hashing_input.join()
    hashing_output.join()
    return hashes["input"], hashes["output"]


def stream_only(source: Path) -> int:
    twix = open_twix(source)
    return sum(len(b) for b in measurement_blocks(twix, twix.measurements[0]))


def twixtools_read(source: Path, data: bool) -> int:
    import twixtools

    (scan,) = twixtools.read_twix(str(source), verbose=False, parse_pmu=False, parse_geometry=False)
    if data:
        for mdb in scan["mdb"]:
            mdb.data  # noqa: B018 - reading is what is timed
    return len(scan["mdb"])


def append_one_by_one(source: Path, target: Path, prefix: int) -> tuple[float, int, int]:
    """Seconds to append the first ``prefix`` acquisitions one by one, their count and bytes."""
    import ismrmrd

    twix = open_twix(source)
    rows = []
    for block in measurement_blocks(twix, twix.measurements[0]):
        if isinstance(block, AcquisitionBlock):
            rows.append(block.rows[: prefix - sum(len(r) for r in rows)])
        if sum(len(r) for r in rows) >= prefix:
            break
    prefix_rows = np.concatenate(rows)
    done_bytes = sum(int(r["data"].nbytes) for r in prefix_rows) + 192 * len(prefix_rows)
    start = time.perf_counter()
    dataset = ismrmrd.Dataset(str(target), "dataset", create_if_needed=True)
    dataset.write_xml_header(XML)
    for row in prefix_rows:
        acq = ismrmrd.Acquisition(row["head"])
        acq.data[:] = (
            row["data"].view(np.complex64).reshape(acq.active_channels, acq.number_of_samples)
        )
        dataset.append_acquisition(acq)
    dataset.close()
    return time.perf_counter() - start, len(prefix_rows), done_bytes


# Runs in a small launcher process: a child's ru_maxrss starts from the high-water mark
# of the process that forked it (Linux carries it across exec), so the conversion must not
# be started from this benchmark process, which grows large reading with twixtools.
_LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
seconds = time.perf_counter() - start
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

# Only what a conversion imports (not this script's twixtools, which loads matplotlib).
_CONVERT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from pipeline.raw.ismrmrd_out import write_ismrmrd
from pipeline.raw.twix import measurement_blocks, open_twix
twix = open_twix(Path(sys.argv[1]))
write_ismrmrd(Path(sys.argv[2]), "<x/>", measurement_blocks(twix, twix.measurements[0]))
"""


# ``convert_tree`` as ``mricurate convert [--fastmri]`` runs it (one worker process).
_PIPELINE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from bench.convert import whole_pipeline
whole_pipeline(Path(sys.argv[1]), Path(sys.argv[2]), fastmri=sys.argv[4] == "fastmri")
"""


def child_peak_rss(*args: str, script: str = _CONVERT) -> tuple[float, float]:
    """Run ``script`` in a subprocess: (wall seconds, the peak RSS of its processes in MiB)."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-P", "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) / 1024


def best_of(
    repeat: int, run: Callable[[], object], clean: Callable[[], None]
) -> tuple[float, float]:
    """Best wall seconds over ``repeat`` runs and the CPU seconds of that run."""
    best = (math.inf, 0.0)
    for _ in range(repeat):
        clean()
        os.sync()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        if wall < best[0]:
            best = (wall, cpu)
    clean()
    return best


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the temp folder is removed


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="500M", help="input size, e.g. 500M (default) or 2G")
    parser.add_argument("--repeat", type=int, default=1, help="best of N for each row")
    parser.add_argument("--prefix", type=int, default=1000, help="acquisitions appended one by one")
    parser.add_argument(
        "--skip", default="", help="comma-separated rows to skip: twixtools,append,fastmri"
    )
    parser.add_argument(
        "--rss-only", action="store_true", help="only the peak-RSS subprocesses (no timing rows)"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    per_slice = LINES * readout_bytes()
    slices = max(1, math.ceil(parse_size(args.size) / per_slice))
    work = Path(tempfile.mkdtemp(prefix="mricurate-bench-convert-"))
    try:
        incoming = work / "incoming"  # convert_tree converts a folder: the file alone in it
        incoming.mkdir()
        source = incoming / "meas_knee.dat"
        # Imported here: the generator imports twixtools (scipy, matplotlib), which the
        # subprocesses that import this module for ``whole_pipeline`` must not pay for.
        from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix

        t0 = time.perf_counter()
        write_vd_twix(
            source,
            [SyntheticMeasurement(channels=COILS, samples=SAMPLES, lines=LINES, slices=slices)],
        )
        size = source.stat().st_size
        mb = size / 1e6
        print(
            f"input: {mb:,.0f} MB, {slices} slices x {LINES} lines, {COILS} coils x {SAMPLES} samples"
            f" ({slices * LINES:,} readouts); generated in {time.perf_counter() - t0:.1f} s"
        )
        print(f"folder: {work} (deleted at the end); page cache warm; best of {args.repeat}")
        read_through(source)

        target = work / "out"

        def clean() -> None:
            for path in work.iterdir():
                if path == incoming:
                    continue
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

        rows: list[tuple[str, float, float, float, str]] = []
        load_start = os.getloadavg()

        def measure(name: str, run: Callable[[], object], note: str = "") -> tuple[float, float]:
            load = os.getloadavg()[0]
            print(f"  {name} ... load {load:.2f}", flush=True)
            wall, cpu = best_of(args.repeat, run, clean)
            rows.append((name, wall, cpu, load, note))
            return wall, cpu

        if args.rss_only:
            peaks = rss_rows(source, work, target, skip, clean)
            report_rss(peaks)
            return

        cp, cp_cpu = measure(
            "cp", lambda: subprocess.run(["cp", str(source), str(target)], check=True)
        )

        def cp_fsync() -> None:
            subprocess.run(["cp", str(source), str(target)], check=True)
            with open(target, "rb") as copied:
                os.fsync(copied.fileno())

        durable, _ = measure("cp + fsync", cp_fsync, "durable, as the conversion's output")
        measure(
            "dd bs=8M",
            lambda: subprocess.run(
                ["dd", f"if={source}", f"of={target}", "bs=8M", "status=none"], check=True
            ),
        )
        floor, floor_cpu = measure(
            "floor: cp + fsync + sha256 in, out",
            lambda: floor_sequential(source, target),
            "one after the other",
        )
        floor2, floor2_cpu = measure(
            "floor: the same, hashes on two threads",
            lambda: floor_threads(source, target),
            "in hash || cp, then out hash || fsync",
        )
        if "twixtools" not in skip:
            measure(
                "twixtools.read_twix", lambda: twixtools_read(source, data=False), "no samples read"
            )
            measure(
                "twixtools.read_twix + every mdb.data", lambda: twixtools_read(source, data=True)
            )
        measure("open_twix", lambda: open_twix(source), "every MDH, no samples")
        measure("measurement_blocks (no output)", lambda: stream_only(source))
        ours, ours_cpu = measure(
            "mricurate convert (open+blocks+write)",
            lambda: convert(source, target.with_suffix(".h5")),
            "output hashed during its fsync",
        )
        measure("file_sha256", lambda: file_sha256(source), "the input hash as a pass of its own")
        tree, tree_cpu = measure(
            "convert_tree (whole pipeline: hash, header, allowlist, XSD, write)",
            lambda: whole_pipeline(source, work),
            "what mricurate convert runs",
        )
        if "fastmri" not in skip:
            measure(
                "convert_tree --fastmri",
                lambda: whole_pipeline(source, work, fastmri=True),
                "+ the fastMRI file",
            )

        append = math.nan
        if "append" not in skip:
            best = math.inf
            for _ in range(args.repeat):
                clean()
                os.sync()
                seconds, count, done = append_one_by_one(
                    source, target.with_suffix(".h5"), args.prefix
                )
                best = min(best, seconds * size / done)
            clean()
            append = best
            rows.append(
                (
                    "ismrmrd append_acquisition one by one",
                    append,
                    math.nan,
                    os.getloadavg()[0],
                    f"* first {count:,} acquisitions, extrapolated",
                )
            )

        peaks = rss_rows(source, work, target, skip, clean)
        for name, (child_seconds, rss, load) in peaks.items():
            rows.append(
                (f"{name}, subprocess", child_seconds, math.nan, load, f"peak RSS {rss:.0f} MiB")
            )

        print()
        width = max(len(name) for name, *_ in rows)
        print(
            f"| {'what':<{width}} | {'s':>7} | {'MB/s':>7} | {'x cp':>6} | {'cpu s':>6} "
            f"| {'load':>5} | note"
        )
        print(f"| {'-' * width} | {'-' * 7} | {'-' * 7} | {'-' * 6} | {'-' * 6} | {'-' * 5} | ---")
        for name, wall, cpu, load, note in rows:
            cpu_text = "" if math.isnan(cpu) else f"{cpu:.2f}"
            print(
                f"| {name:<{width}} | {wall:7.2f} | {mb / wall:7.0f} | {wall / cp:6.2f} "
                f"| {cpu_text:>6} | {load:5.2f} | {note}"
            )
        print()
        loads = ", ".join(f"{x:.2f}" for x in load_start)
        print(f"load average at the start (1, 5, 15 min): {loads}; at the end: ", end="")
        print(", ".join(f"{x:.2f}" for x in os.getloadavg()), f"({os.cpu_count()} cores)")
        print(
            f"convert vs cp: {ours / cp:.2f}x the time (target <= 3), "
            f"{ours / durable:.2f}x cp + fsync; cpu {ours_cpu:.2f} s vs cp's {cp_cpu:.2f} s"
        )
        print(
            f"convert_tree vs cp: {tree / cp:.2f}x the time (target <= 3), "
            f"{tree / durable:.2f}x cp + fsync; cpu {tree_cpu:.2f} s (the runner's overhead included)"
        )
        for name, wall, cpu in (
            ("sequential", floor, floor_cpu),
            ("two threads", floor2, floor2_cpu),
        ):
            print(
                f"vs the floor ({name}: {wall:.2f} s, cpu {cpu:.2f} s): convert {ours / wall:.2f}x, "
                f"convert_tree {tree / wall:.2f}x"
            )
        if not math.isnan(append):
            print(f"one-by-one appends vs convert: {append / ours:.1f}x slower (target >= 5)")
        report_rss(peaks)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rss_rows(
    source: Path, work: Path, target: Path, skip: set[str], clean: Callable[[], None]
) -> dict[str, tuple[float, float, float]]:
    """Wall seconds, peak RSS (MiB) and load before, of each conversion in a fresh subprocess."""
    peaks: dict[str, tuple[float, float, float]] = {}
    runs = [
        ("mricurate convert", _CONVERT, [str(source), str(target.with_suffix(".h5")), str(ROOT)]),
        ("convert_tree", _PIPELINE, [str(source), str(work), str(ROOT), "-"]),
    ]
    if "fastmri" not in skip:
        runs.append(
            ("convert_tree --fastmri", _PIPELINE, [str(source), str(work), str(ROOT), "fastmri"])
        )
    for name, script, args in runs:
        clean()
        os.sync()
        load = os.getloadavg()[0]
        print(f"  {name}, peak RSS ... load {load:.2f}", flush=True)
        peaks[name] = (*child_peak_rss(*args, script=script), load)
    clean()
    return peaks


def report_rss(peaks: dict[str, tuple[float, float, float]]) -> None:
    for name, (seconds, rss, _load) in peaks.items():
        target = " (target < 250)" if "fastmri" in name else " (target < 200)"
        print(f"peak RSS of {name} in a subprocess: {rss:.0f} MiB{target}, {seconds:.2f} s")


if __name__ == "__main__":
    main()
