"""Seconds to deface one head volume and the peak RSS (``python bench/deface.py``).

Cases, each in a fresh subprocess (so its peak RSS is its own):

- ``phantom``: the generated head (pipeline/samples/head_volume.py) at 1 mm,
  256 × 256 × 176 (a sagittal MPRAGE's matrix), a classic series of 176
  files written by this process: the issue's target is under 30 s on this
  2-core machine;
- ``reference``: the real head in ../shared/reference/heads/t1_fl2d_sag_hfs
  (35 classic files), or FOLDER given with ``--folder``.

Each is copied to a temporary folder first (the source never changes) and
timed through :func:`pipeline.deface.series.deface_series`, as the ingest
stage calls it: read, assemble, register, check, write back.

``--positions`` instead sweeps the phantom (2 mm) over poses and patient
positions and prints the quality measures and how much of the true face
each left: the figures behind ``quality`` in ``rules/deface/head.yaml``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.deface.face import deface_volume
from pipeline.deface.rules import load_deface_rules
from pipeline.deface.series import deface_series
from pipeline.deface.volume import FrameRef, Volume
from pipeline.samples.head_volume import (
    HeadGrid,
    HeadPose,
    PatientPosition,
    SlicePlane,
    brain_subject,
    head_datasets,
    make_head,
    write_head_series,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/heads/t1_fl2d_sag_hfs"
MPRAGE = HeadGrid(SlicePlane.SAGITTAL, rows=256, cols=256, slices=176, pixel_mm=1.0, slice_mm=1.0)


def one(case: str, folder: Path) -> dict[str, object]:
    """Deface a copy of ``folder`` in this process; what happened, seconds and peak RSS."""
    rules = load_deface_rules()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "series"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.txt", "*.md"))
        start = time.perf_counter()
        result = deface_series(sorted(copy.glob("*.dcm")), rules)
        seconds = time.perf_counter() - start
    shape = list(result.volume.voxels.shape) if result.volume is not None else None
    return {
        "case": case,
        "outcome": result.outcome.value,
        "shape": shape,
        "seconds": round(seconds, 2),
        "peak_rss_mib": _peak_rss_mib(),
        "quality": result.detail,
    }


def _peak_rss_mib() -> int:
    """This process's peak RSS since its exec (VmHWM: ru_maxrss would count the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


POSES = {
    "supine": (HeadGrid(), HeadPose()),
    "supine, tilted 8/4/-6 deg": (HeadGrid(), HeadPose((8.0, 4.0, -6.0), (5.0, -3.0, 8.0))),
    "chin up 30 deg": (HeadGrid(), HeadPose((-30.0, 0.0, 0.0))),
    "chin down 30 deg": (HeadGrid(), HeadPose((30.0, 0.0, 0.0))),
    "turned 45 deg": (HeadGrid(), HeadPose((0.0, 0.0, 45.0))),
    "prone": (HeadGrid(position=PatientPosition.HFP), HeadPose()),
    "left side, axial": (
        HeadGrid(SlicePlane.AXIAL, slices=50, slice_mm=3.5, position=PatientPosition.HFDL),
        HeadPose(),
    ),
    "right side, coronal": (
        HeadGrid(SlicePlane.CORONAL, slices=60, slice_mm=3.5, position=PatientPosition.HFDR),
        HeadPose(),
    ),
    "prone entered as supine": (HeadGrid(), HeadPose((0.0, 0.0, 180.0))),
    "left side entered as supine": (HeadGrid(), HeadPose((0.0, 0.0, 90.0))),
    "feet first entered as head first": (HeadGrid(), HeadPose((0.0, 180.0, 0.0))),
    "chin to chest 45 deg": (HeadGrid(), HeadPose((45.0, 0.0, 0.0))),
    "on its ear 60 deg": (HeadGrid(), HeadPose((0.0, 60.0, 0.0))),
    "on its ear 90 deg": (HeadGrid(), HeadPose((0.0, 90.0, 0.0))),
    "on its ear 90 deg, 5 mm slices": (
        HeadGrid(slices=28, slice_mm=5.0),
        HeadPose((0.0, 90.0, 0.0)),
    ),
}


def positions() -> None:
    """The quality measures and the true face left, per pose (2 mm phantoms)."""
    rules = load_deface_rules()
    print("| pose | check | seconds | true face left | measures |")
    print("|---|---|---|---|---|")
    for name, (grid, pose) in POSES.items():
        phantom = make_head(grid, pose)
        frames = tuple(FrameRef(k, 0) for k in range(grid.slices))
        start = time.perf_counter()
        defaced = deface_volume(Volume(phantom.voxels, phantom.affine, frames), rules)
        seconds = time.perf_counter() - start
        tissue = phantom.face & (phantom.voxels > 5 * phantom.noise)
        left = np.count_nonzero(defaced.voxels[tissue] > 5 * phantom.noise) / tissue.sum()
        verdict = "passed" if defaced.quality.passed else "to review"
        print(f"| {name} | {verdict} | {seconds:.1f} | {left:.1%} | {defaced.quality.describe()} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=REFERENCE, help="a real head series")
    parser.add_argument("--positions", action="store_true", help="sweep poses instead")
    parser.add_argument("--one", choices=("phantom", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.positions:
        positions()
        return
    if args.one:
        print(json.dumps(one(args.one, args.folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        generated = Path(tmp) / "phantom"  # written here, defaced (a copy) in the subprocess
        phantom = make_head(MPRAGE, HeadPose((6.0, 3.0, -4.0), (2.0, -3.0, 5.0)))
        write_head_series(generated, head_datasets(brain_subject(), phantom))
        cases = [("phantom", generated)]
        if args.folder.is_dir():
            cases.append(("reference", args.folder))
        for case, folder in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--one", case, "--folder", str(folder)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            r = json.loads(out.stdout)
            print(f"{r['case']}: {r['outcome']} {r['shape']}: {r['seconds']} s, "
                  f"peak RSS {r['peak_rss_mib']} MiB; {r['quality']}")  # fmt: skip


if __name__ == "__main__":
    main()
