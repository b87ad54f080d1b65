"""Measure the pixel scan on generated images (not a test; about a minute on one core).

    .venv/bin/python bench/pixel_recall.py [--subjects N] [--engine tesseract|rapidocr|both]

Prints, for MR phantom slices with a name (top left) and an MRN (bottom
left) burned in at 8-24 px and at faint to saturated intensities, in three
fonts: how many are flagged and how many have the name and MRN matched to
the header; the pre-filter's pass rate (both text maps) on plain slices;
and seconds per image.  Real pydicom sample images without text show how
often OCR reads anatomy as words (kept for blanking) and whether those
words flag the file (:func:`pipeline.pixels.scan.is_evidence`).  The
samples are found by listing the installed folders (pydicom's test files
and pydicom-data's ``data_store``): nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections import defaultdict
from pathlib import Path

import pydicom

from pipeline.pixels.engines import DEFAULT_ENGINE, make_engine
from pipeline.pixels.frames import iter_images
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.prefilter import needs_ocr
from pipeline.pixels.prepare import dark_text_map, text_map
from pipeline.pixels.scan import scan_dataset
from pipeline.read.dicom import quiet_pydicom
from pipeline.samples import make_subjects, mr_series
from pipeline.samples.burned_text import burn, printed_name, with_pixels

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# Pillow's own font, and two Debian fonts where installed (fonts-dejavu-core).
_FONTS = (
    None,
    *(f for f in (_DEJAVU / "DejaVuSansMono.ttf", _DEJAVU / "DejaVuSans-Bold.ttf") if f.exists()),
)


def _sample(name: str) -> Path | None:
    """A bundled pydicom sample by name, from the installed folders only."""
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    spec = importlib.util.find_spec("data_store")
    if spec is not None and spec.submodule_search_locations:
        folders.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return next((f / name for f in folders if (f / name).is_file()), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--engine", default=DEFAULT_ENGINE.value)
    args = parser.parse_args()
    quiet_pydicom()
    engine = make_engine(args.engine)
    print(engine.name)

    rows = []
    started = time.perf_counter()
    for k, subject in enumerate(make_subjects(args.subjects, seed=5)):
        size = (256, 512)[k % 2]
        ds = mr_series(subject, n_slices=1, rows=size, cols=size, seed=k)[0]
        name = printed_name(subject.phi.patient_name)
        font = _FONTS[k % len(_FONTS)]
        for height in (8, 10, 12, 16, 20, 24):
            if height * 0.75 * len(name) > size - 8:
                continue  # would run off the image
            for value in (900, 2300, 4095):  # window is -100..2300: faint, at the top, saturated
                pixels = burn(ds.pixel_array, name, x=4, y=3, height=height, value=value, font=font)
                pixels = burn(pixels, subject.phi.patient_id, x=4, y=size - round(height * 1.6) - 4,
                              height=height, value=value, font=font)  # fmt: skip
                finding = scan_dataset(with_pixels(ds, pixels), "input measure", engine)
                kinds = {m.kind for m in finding.phi_matches}
                rows.append((height, value, finding.flagged,
                             PhiKind.PATIENT_NAME_PART in kinds, PhiKind.PATIENT_ID in kinds))  # fmt: skip
    elapsed = time.perf_counter() - started
    n = len(rows)
    print(f"\nburned-in text: {n} images, {elapsed / n:.2f} s/image")
    print(f"  flagged {sum(r[2] for r in rows)}/{n}, name matched {sum(r[3] for r in rows)}/{n}, "
          f"MRN matched {sum(r[4] for r in rows)}/{n}")  # fmt: skip
    by: defaultdict[str, list[tuple[int, int, bool, bool, bool]]] = defaultdict(list)
    for row in sorted(rows):
        by[f"{row[0]:>2} px"].append(row)
    for row in sorted(rows, key=lambda r: r[1]):
        by[f"value {row[1]}"].append(row)
    for key, group in by.items():
        print(f"  {key:>10}: flagged {sum(r[2] for r in group)}/{len(group)}, "
              f"name {sum(r[3] for r in group)}, MRN {sum(r[4] for r in group)}")  # fmt: skip

    plain = skipped = 0
    started = time.perf_counter()
    for k, subject in enumerate(make_subjects(12, seed=1)):
        for size in (64, 128, 256, 512):
            for ds in mr_series(subject, n_slices=3, rows=size, cols=size, seed=k,
                                series_number=1 + k % 3):  # fmt: skip
                plain += 1
                image = next(iter(iter_images(ds, "m")))
                skipped += not (
                    needs_ocr(text_map(image)).ocr or needs_ocr(dark_text_map(image)).ocr
                )
    elapsed = time.perf_counter() - started
    print(f"\nplain phantom slices skipped by the pre-filter: {skipped}/{plain} "
          f"({1000 * elapsed / plain:.0f} ms/slice incl. generation)")  # fmt: skip

    print("\nreal sample images without burned-in text (pydicom test data):")
    for name in ("MR_small.dcm", "emri_small.dcm", "CT_small.dcm", "693_UNCI.dcm", "MR2_UNCI.dcm",
                 "RG3_UNCI.dcm"):  # fmt: skip
        path = _sample(name)
        if path is None:
            print(f"  {name:16} not installed")
            continue
        ds = pydicom.dcmread(path)
        started = time.perf_counter()
        finding = scan_dataset(ds, "input measure", engine)
        elapsed = time.perf_counter() - started
        print(f"  {name:16} {elapsed:5.2f} s  images {finding.images_scanned + finding.ocr_skipped_by_prefilter:2}"
              f"  OCR'd {finding.images_scanned:2}  words {len(finding.words):3}"
              f"  (confidence > 60: {sum(w.confidence > 60 for w in finding.words)})"
              f"  flagged {finding.flagged}")  # fmt: skip


if __name__ == "__main__":
    main()
