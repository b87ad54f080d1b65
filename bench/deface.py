"""Seconds to deface one head volume and the process's peak RSS (``python bench/deface.py [FOLDER]``).

FOLDER is a series of DICOM files (default: the real head in
../shared/reference/heads/t1_fl2d_sag_hfs); it is copied to a temp folder
first, so the source is never changed.
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipeline.deface.rules import load_deface_rules
from pipeline.deface.series import deface_series

DEFAULT = Path(__file__).resolve().parents[2] / "shared/reference/heads/t1_fl2d_sag_hfs"


def main(folder: Path) -> None:
    rules = load_deface_rules()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "series"
        shutil.copytree(folder, copy)
        start = time.perf_counter()
        result = deface_series(sorted(copy.glob("*.dcm")), rules)
        seconds = time.perf_counter() - start
    shape = result.volume.voxels.shape if result.volume is not None else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{result.outcome.value} {shape}: {seconds:.1f} s, peak RSS {peak:.0f} MiB; {result.detail}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
