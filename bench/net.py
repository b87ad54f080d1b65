"""Benchmark: instances per second received by ``mricurate listen`` and by dcmtk's storescp.

What is measured, in one run, on one corpus, the same disk:

* ``listen``: ``mricurate listen`` (a subprocess, as it runs in production)
  receiving ``--slices`` generated 256 x 256 16-bit MR slices from one
  ``storescu`` association; each instance is hashed, checked whole, fsynced,
  renamed into ``incoming/`` and recorded in the catalog before success is
  answered.  The target (issue 12) is 300 instances/s on this 2-core machine.
* ``storescp``: dcmtk's ``TCP_NODELAY=1 storescp +xa -pdu 131072 -od DIR PORT``
  receiving the same files from the same ``storescu`` command (no fsync, no
  catalog: the peer for scale; without ``TCP_NODELAY`` it stalls ~45 ms per
  instance and a ratio to it means nothing).
* ``100 MB``: one ~100 MB instance, uncompressed (OW) and encapsulated
  (fragments labelled JPEG 2000, never decoded), received by ``listen``;
  the listener's peak RSS (``VmHWM``) before and after, which receiving
  straight to disk and seeking over pixel data keep bounded.

Run: ``.venv/bin/python bench/net.py [--slices 1000] [--big-mb 100]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
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


def slices(folder: Path, count: int) -> list[Path]:
    """``count`` 256 x 256 16-bit MR slices of one series (random pixels), explicit VR LE."""
    folder.mkdir(parents=True)
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
        path = folder / f"{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


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


def storescu(port: int, files: list[Path], called: str, *options: str) -> float:
    """Seconds for one storescu association sending ``files`` as they are."""
    started = time.perf_counter()
    syntaxes = list(options) or ["-xe"]  # explicit VR little endian: the files' own
    args = ["storescu", "-aet", SENDER, "-aec", called, *syntaxes, "127.0.0.1", str(port)]
    if len(files) > 50:  # a directory scan: no command line of 1,000 paths
        done = subprocess.run(
            [*args, "+sd", str(files[0].parent)], capture_output=True, env=_NODELAY
        )
    else:
        done = subprocess.run([*args, *map(str, files)], capture_output=True, env=_NODELAY)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr.decode()[-500:]}")
    return seconds


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Listen:
    """``mricurate listen`` over a fresh workspace on a free port."""

    def __init__(self, root: Path) -> None:
        from pipeline.workspace import init_workspace

        self.workspace = init_workspace(root)
        self.port = free_port()
        (root / "mricurate.toml").write_text(
            f"[listen]\nport = {self.port}\naddress = '127.0.0.1'\n"
            f"allowed_ae_titles = ['{SENDER}']\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mricurate", "listen", "--workspace", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--big-mb", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("needs dcmtk (Debian dcmtk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        root = Path(tmp)
        files = slices(root / "corpus", args.slices)
        megabytes = sum(p.stat().st_size for p in files) / 1e6

        listen = Listen(root / "w1")
        try:
            seconds = storescu(listen.port, files, "MRICURATE")
            stored = len(list(listen.workspace.incoming.glob("*.dcm")))
        finally:
            listen.stop()
        assert stored == len(files), (stored, len(files))
        ours = len(files) / seconds

        out = root / "storescp"
        out.mkdir()
        port = free_port()
        peer = subprocess.Popen(
            ["storescp", "-aet", "STORESCP", "+xa", "-pdu", "131072", "-od", str(out), str(port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port)
            peer_seconds = storescu(port, files, "STORESCP")
        finally:
            peer.terminate()
            peer.wait(timeout=20)
        theirs = len(files) / peer_seconds

        print(f"{len(files)} instances ({megabytes:.0f} MB), one storescu association each:")
        print(f"  mricurate listen  {ours:7.0f} instances/s  ({seconds:.2f} s; hashed, checked, "
              "fsynced, renamed, recorded)")  # fmt: skip
        print(f"  dcmtk storescp    {theirs:7.0f} instances/s  ({peer_seconds:.2f} s; no fsync)")
        print(f"  ratio listen / storescp: {ours / theirs:.2f}; target 300/s: "
              f"{'met' if ours >= 300 else 'not met'}")  # fmt: skip

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
