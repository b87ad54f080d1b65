"""Benchmark: instances per second received by ``mricurate listen`` and by dcmtk's storescp.

What is measured, in one run, on one corpus, the same disk:

* ``floor``: what a durable receive of the same bytes costs with no network
  and no DICOM at all, in plain Python: write each file, fsync it, rename
  it into a folder, fsync the folder (and, second row, one SQLite commit
  per file as well, WAL and synchronous=FULL like the catalog).
* ``listen``: ``mricurate listen`` (a subprocess, as it runs in production)
  receiving ``--slices`` generated 256 x 256 16-bit MR slices from one
  ``storescu`` association, then the same number from ``--senders``
  associations at once (several scanners, a PACS: the group commit shares
  one folder fsync and one catalog commit among the instances waiting);
  each instance is hashed, checked whole, fsynced, renamed into
  ``incoming/`` and recorded in the catalog before success is answered.
  The target (issue 12) is 300 instances/s on this 2-core machine.
* ``storescp``: dcmtk's ``TCP_NODELAY=1 storescp +xa -pdu 131072 -od DIR PORT``
  receiving the same files from the same ``storescu`` commands (no fsync, no
  catalog: the peer for scale; without ``TCP_NODELAY`` it stalls ~45 ms per
  instance and a ratio to it means nothing).

Every row prints the receiver's CPU seconds per instance (user + system,
from ``/proc``), the senders' and the load average: the machine is shared,
so wall time alone says little; compare rows of one run.
* ``100 MB``: one ~100 MB instance, uncompressed (OW) and encapsulated
  (fragments labelled JPEG 2000, never decoded), received by ``listen``;
  the listener's peak RSS (``VmHWM``) before and after, which receiving
  straight to disk and seeking over pixel data keep bounded.

Run: ``.venv/bin/python bench/net.py [--slices 1000] [--senders 4] [--big-mb 100]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, generate_uid  # noqa: E402

SENDER = "BENCH"
# dcmtk reads TCP_NODELAY: without it, storescu and storescp stall ~45 ms an instance.
_NODELAY = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def slices(folder: Path, count: int, parts: int = 1) -> list[list[Path]]:
    """``count`` 256 x 256 16-bit MR slices of one series (random pixels), explicit VR LE.

    In ``parts`` subfolders (one per sender), as many in each.
    """
    for part in range(parts):
        (folder / f"part{part}").mkdir(parents=True)
    template = dcmread(get_testdata_file("MR_small.dcm"))
    template.Rows = template.Columns = 256
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(count):
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number + 1
        ds.PixelData = rng.integers(0, 4096, (256, 256), dtype=np.uint16).tobytes()
        path = folder / f"part{number % parts}" / f"{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return [paths[part::parts] for part in range(parts)]


def big_object(path: Path, megabytes: int, *, encapsulated: bool) -> Path:
    """One instance of about ``megabytes`` MB of pixel data (frames of 1 MB)."""
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 1024, megabytes
    frame = np.random.default_rng(1).integers(0, 4096, 512 * 1024, dtype=np.uint16).tobytes()
    if encapsulated:
        ds.file_meta.TransferSyntaxUID = JPEG2000
        ds.PixelData = encapsulate([frame] * megabytes)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = frame * megabytes
    ds.save_as(path, enforce_file_format=True)
    return path


def _storescu_args(port: int, called: str, files: list[Path], options: list[str]) -> list[str]:
    syntaxes = options or ["-xe"]  # explicit VR little endian: the files' own
    args = ["storescu", "-aet", SENDER, "-aec", called, *syntaxes, "127.0.0.1", str(port)]
    if len(files) > 50:  # a directory scan (of their folder): no command line of 1,000 paths
        return [*args, "+sd", "+r", os.path.commonpath([p.parent for p in files])]
    return [*args, *map(str, files)]


def storescu(port: int, files: list[Path], called: str, *options: str) -> float:
    """Seconds for one storescu association sending ``files`` (one folder's) as they are."""
    return senders(port, [files], called, *options)


def senders(port: int, parts: list[list[Path]], called: str, *options: str) -> float:
    """Seconds for one storescu association per part, all at once, to send all."""
    started = time.perf_counter()
    running = [
        subprocess.Popen(_storescu_args(port, called, part, list(options)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_NODELAY)
        for part in parts
    ]  # fmt: skip
    errors = [process.communicate()[1] for process in running]
    seconds = time.perf_counter() - started
    for process, error in zip(running, errors, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {error.decode()[-500:]}")
    return seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (the senders)."""
    times = os.times()
    return times.children_user + times.children_system


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def durable_floor(folder: Path, files: list[Path], *, commit: bool) -> tuple[float, float]:
    """(seconds, CPU seconds) to make the files' bytes durable in ``folder``, plainly.

    Write to a temp name, fsync, rename, fsync the folder: what the listener
    must do at least, with no network and no DICOM; ``commit`` adds one
    SQLite commit per file (WAL, synchronous=FULL: the catalog's durability).
    """
    temp, final = folder / "temp", folder / "final"
    temp.mkdir(parents=True)
    final.mkdir()
    contents = [path.read_bytes() for path in files]
    database = sqlite3.connect(folder / "floor.sqlite", isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("CREATE TABLE received (uid TEXT PRIMARY KEY, sha256 TEXT)")
    cpu, started = time.process_time(), time.perf_counter()
    for number, data in enumerate(contents):
        path = temp / f"{number}.dcm"
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(path, final / f"{number}.dcm")
        fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if commit:
            database.execute("BEGIN IMMEDIATE")
            database.execute("INSERT INTO received VALUES (?, ?)", (str(number), "x" * 64))
            database.execute("COMMIT")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    database.close()
    return seconds, cpu


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# pynetdicom alone, as the listener configures it, with a handler that only answers
# success: what one pynetdicom process costs before any work of ours.
_BARE_SCP = """
import sys
from pynetdicom import AE, _config, evt
from pipeline.net.contexts import listener_contexts
_config.STORE_RECV_CHUNKED_DATASET = True
ae = AE("MRICURATE")
ae.supported_contexts = listener_contexts()
ae.maximum_pdu_size = 256 * 1024
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
"""


class Listen:
    """``mricurate listen`` over a fresh workspace on a free port.

    ``repo``: that checkout's listener (its own ``.venv``), to compare before
    and after in one run; ``bare``: pynetdicom alone (:data:`_BARE_SCP`).
    """

    def __init__(self, root: Path, repo: Path = REPO, *, bare: bool = False) -> None:
        from pipeline.workspace import init_workspace

        self.workspace = init_workspace(root)
        self.port = free_port()
        (root / "mricurate.toml").write_text(
            f"[listen]\nport = {self.port}\naddress = '127.0.0.1'\n"
            f"allowed_ae_titles = ['{SENDER}']\n"
        )
        python = sys.executable if repo == REPO else str(repo / ".venv" / "bin" / "python")
        command = ["-c", _BARE_SCP, str(self.port)] if bare else [
            "-m", "mricurate", "listen", "--workspace", str(root)]  # fmt: skip
        self.process = subprocess.Popen(
            [python, *command], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def _row(label: str, count: int, seconds: float, cpu: float, senders_cpu: float | None,
         note: str) -> float:  # fmt: skip
    rate = count / seconds
    theirs = "" if senders_cpu is None else f", senders {1000 * senders_cpu / count:.2f}"
    print(f"  {label:34s} {rate:6.0f} instances/s  ({seconds:5.2f} s; CPU ms/instance: "
          f"receiver {1000 * cpu / count:.2f}{theirs}; {note})")  # fmt: skip
    return rate


def _listen(root: Path, parts: list[list[Path]], repo: Path = REPO, *,
            bare: bool = False) -> tuple[float, float, float]:  # fmt: skip
    """(seconds, listener CPU s, senders' CPU s) for ``mricurate listen`` receiving ``parts``."""
    listen = Listen(root, repo, bare=bare)
    try:
        cpu, theirs = cpu_seconds(listen.process.pid), children_cpu()
        seconds = senders(listen.port, parts, "MRICURATE")
        cpu, theirs = cpu_seconds(listen.process.pid) - cpu, children_cpu() - theirs
        stored = len(list(listen.workspace.incoming.glob("*.dcm")))
    finally:
        listen.stop()
    count = sum(map(len, parts))
    assert bare or stored == count, (stored, count)
    return seconds, cpu, theirs


def _storescp(out: Path, parts: list[list[Path]]) -> tuple[float, float, float]:
    out.mkdir()
    port = free_port()
    peer = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "+xa", "-pdu", "131072", "-od", str(out), str(port)],
        env=_NODELAY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        cpu, theirs = cpu_seconds(peer.pid), children_cpu()
        seconds = senders(port, parts, "STORESCP")
        cpu, theirs = cpu_seconds(peer.pid) - cpu, children_cpu() - theirs
    finally:
        peer.terminate()
        peer.wait(timeout=20)
    return seconds, cpu, theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4, help="associations at once")
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT",
                        help="also run this checkout's listener (its .venv): before and after")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("needs dcmtk (Debian dcmtk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        root = Path(tmp)
        parts = slices(root / "corpus", args.slices, args.senders)
        files = [path for part in parts for path in part]
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        n, k = len(files), len(parts)
        print(f"{n} instances ({megabytes:.0f} MB), same disk; {load()}")

        seconds, cpu = durable_floor(root / "floor1", files, commit=False)
        _row("floor: write+fsync, rename+fsync", n, seconds, cpu, None, "plain Python, no network")
        seconds, cpu = durable_floor(root / "floor2", files, commit=True)
        _row("floor: same + SQLite commit", n, seconds, cpu, None, "one commit per file")

        seconds, cpu, theirs = _listen(root / "w1", [files])
        ours = _row("mricurate listen, 1 association", n, seconds, cpu, theirs,
                    "hashed, checked, fsynced, renamed, recorded")  # fmt: skip
        seconds, cpu, theirs = _listen(root / "w2", parts)
        ours_k = _row(f"mricurate listen, {k} associations", n, seconds, cpu, theirs,
                      "the same, group commit")  # fmt: skip
        if args.compare is not None:
            for label, many in (("1 association", [files]), (f"{k} associations", parts)):
                seconds, cpu, theirs = _listen(root / f"before-{len(many)}", many, args.compare)
                _row(f"before ({args.compare.name}), {label}", n, seconds, cpu, theirs,
                     "the listener of that checkout")  # fmt: skip
        for label, many in (("1 association", [files]), (f"{k} associations", parts)):
            seconds, cpu, theirs = _listen(root / f"bare-{len(many)}", many, bare=True)
            _row(f"pynetdicom alone, {label}", n, seconds, cpu, theirs,
                 "handler answers success, stores nothing")  # fmt: skip
        seconds, cpu, theirs = _storescp(root / "storescp1", [files])
        theirs_1 = _row("dcmtk storescp, 1 association", n, seconds, cpu, theirs, "no fsync")
        seconds, cpu, theirs = _storescp(root / "storescp2", parts)
        theirs_k = _row(f"dcmtk storescp, {k} associations", n, seconds, cpu, theirs, "no fsync")
        print(f"  ratio listen / storescp: {ours / theirs_1:.2f} (1 association), "
              f"{ours_k / theirs_k:.2f} ({k}); target 300/s: "
              f"{'met' if max(ours, ours_k) >= 300 else 'not met'}; {load()}")  # fmt: skip

        for encapsulated in (False, True):
            kind = "encapsulated (JPEG 2000 fragments)" if encapsulated else "uncompressed (OW)"
            big = big_object(root / f"big-{encapsulated}.dcm", args.big_mb,
                             encapsulated=encapsulated)  # fmt: skip
            listen = Listen(root / f"w-big-{encapsulated}")
            try:
                before = rss_peak_mb(listen.process.pid)
                options = ["-xw"] if encapsulated else []  # JPEG 2000: the file's own
                seconds = storescu(listen.port, [big], "MRICURATE", *options)
                after = rss_peak_mb(listen.process.pid)
                stored = len(list(listen.workspace.incoming.glob("*.dcm")))
            finally:
                listen.stop()
            assert stored == 1, stored
            print(f"one {big.stat().st_size / 1e6:.0f} MB instance, {kind}: {seconds:.2f} s; "
                  f"listener peak RSS {before:.0f} MB at rest, {after:.0f} MB after")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
