"""Benchmark: how much burned-in text the pixel scan finds, how often it cries wolf, how fast.

What is measured, on a labelled set generated from a fixed seed (default 240
images) with a fixed mix of difficulty:

* MR-like 16-bit phantom slices (:func:`pipeline.samples.mr_series`,
  256×256 and 512×512) and 8-bit MONOCHROME2 Secondary Capture "screen
  grabs" (a windowed MR slice on a dark screen, built on
  :func:`pipeline.samples.other_objects`' secondary capture);
* text drawn with PIL in Pillow's default font and, where installed,
  DejaVu Sans Mono and DejaVu Sans Bold, capitals 8-24 px high, at faint to
  saturated intensities, in corners, on edges or over the anatomy;
* the text is the subject's own name, MRN and birth date from the header,
  so that :attr:`ScanFinding.phi_matches` can say which burned words were
  recognised; about a quarter of the images carry no text at all.

For each engine (``tesseract``, ``rapidocr`` and ``both``, see
:func:`pipeline.pixels.engines.make_engine`), with and without the
pre-filter, one process:

* recall: images with text in which any word was read;
* recall for text >= 10 px separately (the target: >= 99 %), and again
  leaving out text that hardly differs from what is under it as displayed
  (median difference < 15 % of the display range: white letters on
  saturated anatomy), which the generator makes and nobody could read;
* false-positive rate: images without text in which any word was read
  (target <= 2 %);
* words recovered: burned words (name parts of 2+ letters, MRN, birth date)
  matched to the header PHI they are (``phi_matches``);
* images per second.

Recall and false positives count images where *the pixels* gave words
(``finding.words``: what cleaning blanks), not ``finding.flagged``: a
Secondary Capture is flagged by its header alone (SOP class,
BurnedInAnnotation), which would hide what OCR does.  The "flag" columns
count images whose words are evidence enough to flag a plain file
(:func:`pipeline.pixels.scan.is_evidence`: a PHI match, or a word of 3+
letters and digits read with confidence >= 70).

Plain MR slices (no text, 256×256, the bulk of a real MR export) are
scanned with the pre-filter by ``--jobs`` worker processes (one engine
each, one thread each: ``OMP_THREAD_LIMIT=1``, onnxruntime intra-op 1); the
target is >= 10 slices/s on 2 cores, since the scan must keep up with
de-identification.  Finally the real files in
``/work/shared/reference/dicom`` (all carry burned-in or overlay text) and
pydicom-data's 1024 x 1024 MR shoulder (no text, textured anatomy) are
scanned by each engine with and without the pre-filter and their flags,
words and times shown.

Files go to the scan as bytes read with :func:`read_dicom`, as ``scan_file``
does; generation is not timed.  Run:
``.venv/bin/python bench/ocr.py [--images 240] [--seed 0] [--jobs 2]
[--engines tesseract,rapidocr,both] [--quick]`` (``--quick``: 60 images,
50 plain slices).  ``--real [--against /work/main]``: only the real-MR
development set and the multi-frame cine (:mod:`ocr_real`), per file and
with ``--jobs`` processes, for this checkout and each other one given, in
one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset

from pipeline.pixels.engines import make_engine
from pipeline.pixels.ocr import OcrEngine
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.rapid import load_seconds
from pipeline.pixels.regions import RegionRules, load_region_rules
from pipeline.pixels.scan import ScanFinding, is_evidence, scan_dataset
from pipeline.read.dicom import quiet_pydicom, read_dicom
from pipeline.samples import Subject, make_subjects, mr_series, other_objects
from pipeline.samples.burned_text import blend, printed_name, text_mask, text_size, with_pixels

REFERENCE = Path("/work/shared/reference/dicom")
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# Pillow's own font, and two Debian fonts where installed (fonts-dejavu-core).
FONTS: tuple[Path | None, ...] = (
    None,
    *(f for f in (_DEJAVU / "DejaVuSansMono.ttf", _DEJAVU / "DejaVuSans-Bold.ttf") if f.exists()),
)
HEIGHTS = (8, 9, 10, 12, 14, 16, 20, 24)
# Stored values: MR window is about -100..2300 (faint, mid, top of window, saturated).
MR_VALUES = {"faint": 900, "mid": 1600, "bright": 2300, "saturated": 4095}
SC_VALUES = {"faint": 90, "mid": 150, "bright": 210, "saturated": 255}
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "top-edge", "left-edge",
             "anatomy")  # fmt: skip
NO_TEXT_SHARE = 0.25
MR_SHARE = 0.7  # of all images; the rest are screen captures
PLAIN_SLICES = 200
# Text whose letters differ from what is under them by less than this share of
# the displayed range (white on white anatomy, grey on grey) is hard to read
# even for a person; recall is also given without it.
LEGIBLE_CONTRAST = 0.15


# ---------------------------------------------------------------------------
# Drawing (pipeline.samples.burned_text)
# ---------------------------------------------------------------------------


def _burn(
    pixels: npt.NDArray[np.generic],
    text: str,
    *,
    x: int,
    y: int,
    height: int,
    value: float,
    font: Path | None,
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """``pixels`` with ``text`` burned in at stored value ``value``, and its coverage."""
    alpha = text_mask(pixels.shape[:2], text, x=x, y=y, height=height, font=font)
    return blend(pixels, alpha, value), alpha


def _display(values: npt.NDArray[np.floating] | float, kind: str) -> npt.NDArray[np.float64]:
    """Stored values as shown (0-1): MR through the window -100..2300, screens as they are."""
    if kind == "mr":
        return np.clip((np.asarray(values, dtype=np.float64) + 100) / 2400, 0, 1)
    return np.asarray(values, dtype=np.float64) / 255


def _with_pixels(ds: Dataset, pixels: npt.NDArray[np.generic]) -> Dataset:
    """:func:`with_pixels` for a 2D image of any size (a screen is larger than its slice)."""
    out = with_pixels(ds, pixels)
    out.Rows, out.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    return out


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# The labelled set
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnedWord:
    """One word burned in, and the header PHI it should be matched as."""

    text: str
    kind: PhiKind


@dataclass
class Case:
    """One generated image and what was drawn into it."""

    kind: str  # "mr" or "sc"
    size: tuple[int, int]
    font: str
    height: int  # 0: no text
    level: str
    position: str
    contrast: float = 0.0  # median |text - background| under the letters, as displayed (0-1)
    words: list[BurnedWord] = field(default_factory=list)
    data: bytes = b""


def _lines(subject: Subject, rng: random.Random) -> list[tuple[str, list[BurnedWord]]]:
    """One to three lines of the subject's header PHI, as a scanner or a grabber prints them."""
    phi = subject.phi
    name = printed_name(phi.patient_name)
    name_words = [BurnedWord(p, PhiKind.PATIENT_NAME_PART) for p in name.split() if len(p) >= 2]
    b = phi.birth_date
    dob = rng.choice((f"{b[:4]}-{b[4:6]}-{b[6:]}", f"{b[6:]}.{b[4:6]}.{b[:4]}",
                      f"{b[4:6]}/{b[6:]}/{b[:4]}", b))  # fmt: skip
    lines = [
        (name, name_words),
        (phi.patient_id, [BurnedWord(phi.patient_id, PhiKind.PATIENT_ID)]),
        (f"DOB {dob}", [BurnedWord(dob, PhiKind.BIRTH_DATE)]),
    ]
    count = rng.choice((1, 2, 3))
    start = rng.randrange(3)
    return [lines[(start + i) % 3] for i in range(count)]


def _place(
    position: str, block: tuple[int, int], image: tuple[int, int], margin: int
) -> tuple[int, int]:
    """Top-left corner (x, y) of a text block of ``block`` (w, h) in ``image`` (rows, cols)."""
    width, height = block
    rows, cols = image
    right, bottom = max(0, cols - width - margin), max(0, rows - height - margin)
    return {
        "top-left": (margin, margin),
        "top-right": (right, margin),
        "bottom-left": (margin, bottom),
        "bottom-right": (right, bottom),
        "top-edge": ((cols - width) // 2, 1),
        "left-edge": (1, (rows - height) // 2),
        "anatomy": ((cols - width) // 2, (rows - height) // 2),
    }[position]


def _screen(
    slice_pixels: npt.NDArray[np.generic], rows: int, cols: int, rng: random.Random
) -> npt.NDArray[np.uint8]:
    """A dark viewer screen with the slice, windowed to 8 bits, in the middle."""
    noise = np.random.default_rng(rng.randrange(2**32))
    screen = noise.normal(18, 4, (rows, cols)).clip(0, 255).astype(np.uint8)
    screen[:, : cols // 12] = 40  # a tool bar
    windowed = ((slice_pixels.astype(np.float64) + 100) / 2400 * 255).clip(0, 255)
    side = min(rows, cols) - 16
    image = np.asarray(Image.fromarray(windowed.astype(np.uint8)).resize((side, side)))
    top, left = (rows - side) // 2, (cols - side) // 2
    screen[top : top + side, left : left + side] = image
    return screen


def generate(n: int, seed: int) -> list[Case]:
    """``n`` labelled images, the same for the same arguments."""
    rng = random.Random(seed)
    subjects = make_subjects(max(8, n // 6), seed=seed)
    n_blank = round(n * NO_TEXT_SHARE)
    blank = set(rng.sample(range(n), n_blank))
    cases: list[Case] = []
    for k in range(n):
        subject = subjects[k % len(subjects)]
        kind = "mr" if rng.random() < MR_SHARE else "sc"
        side = rng.choice((256, 256, 256, 512))
        mr = mr_series(subject, n_slices=1, rows=side, cols=side, seed=seed * 1000 + k)[0]
        if kind == "mr":
            ds: Dataset = mr
            pixels: npt.NDArray[np.generic] = mr.pixel_array
            values: dict[str, int] = MR_VALUES
        else:
            ds = other_objects(subject, seed=seed * 1000 + k)["secondary_capture"]
            rows, cols = rng.choice(((240, 320), (384, 512), (480, 640)))
            pixels = _screen(mr.pixel_array, rows, cols, rng)
            values = SC_VALUES
        font = FONTS[k % len(FONTS)]
        case = Case(kind, (int(pixels.shape[0]), int(pixels.shape[1])),
                    font.stem if font else "Pillow default", 0, "-", "-")  # fmt: skip
        if k not in blank:
            case.height = rng.choice(HEIGHTS)
            case.level = rng.choice(tuple(values))
            case.position = rng.choice(POSITIONS)
            lines = _lines(subject, rng)
            # Lines too wide for the image are dropped (the name, at 24 px in 256 px).
            fits = [
                (text, words)
                for text, words in lines
                if text_size(text, case.height, font)[0] <= case.size[1] - 8
            ] or [min(lines, key=lambda line: len(line[0]))]
            pitch = round(case.height * 1.7)
            widths = [text_size(text, case.height, font)[0] for text, _ in fits]
            x, y = _place(case.position, (max(widths), pitch * len(fits)), case.size, 4)
            differences: list[npt.NDArray[np.float64]] = []
            for i, (text, words) in enumerate(fits):
                value = values[case.level]
                before = pixels
                pixels, alpha = _burn(pixels, text, x=x, y=y + i * pitch, height=case.height,
                                      value=value, font=font)  # fmt: skip
                under = before[alpha > 0.5].astype(np.float64)
                differences.append(np.abs(_display(value, kind) - _display(under, kind)))
                case.words += words
            case.contrast = float(np.median(np.concatenate(differences)))
        case.data = _to_bytes(_with_pixels(ds, pixels))
        cases.append(case)
    return cases


def plain_slices(n: int, seed: int) -> list[bytes]:
    """``n`` plain 256×256 MR slices (no text), as files."""
    subjects = make_subjects(max(1, n // 10), seed=seed + 1)
    out: list[bytes] = []
    for k, subject in enumerate(subjects):
        count = n // len(subjects) + (k < n % len(subjects))
        series = mr_series(subject, n_slices=count, rows=256, cols=256, seed=seed + k,
                           series_number=1 + k % 3)  # fmt: skip
        out += [_to_bytes(ds) for ds in series]
    return out


# ---------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------


_engine: OcrEngine | None = None
_prefilter = True
_priors: RegionRules | None = None


def _init_worker(engine: str, prefilter: bool, priors: bool = False) -> None:
    global _engine, _prefilter, _priors
    os.environ["OMP_THREAD_LIMIT"] = "1"
    quiet_pydicom()
    _engine = make_engine(engine)
    _ = _engine.name  # loads the models: not timed
    _prefilter = prefilter
    _priors = load_region_rules() if priors else None


def _scan(data: bytes) -> ScanFinding:
    """As deid --clean-pixels scans: under the header prior that matches, with ``priors``."""
    assert _engine is not None, "_init_worker runs first"
    ds = read_dicom(data, "input bench")
    prior = _priors.prior_for(ds) if _priors is not None else None
    return scan_dataset(ds, "input bench", _engine, prefilter=_prefilter, prior=prior)


def scan_all(
    datas: Sequence[bytes], engine: str, prefilter: bool, jobs: int, priors: bool = False
) -> tuple[list[ScanFinding], float]:
    """Findings for every file and the wall time, ``jobs`` processes (pool start-up not timed)."""
    if jobs <= 1:
        _init_worker(engine, prefilter, priors)
        started = time.perf_counter()
        findings = [_scan(data) for data in datas]
        return findings, time.perf_counter() - started
    with ProcessPoolExecutor(
        jobs, initializer=_init_worker, initargs=(engine, prefilter, priors)
    ) as pool:
        list(pool.map(_scan, datas[:jobs]))  # warm up: workers started, imports done
        started = time.perf_counter()
        findings = list(pool.map(_scan, datas, chunksize=2))
        return findings, time.perf_counter() - started


def _compact(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def recovered(case: Case, finding: ScanFinding) -> int:
    """How many of the burned words were matched to the header PHI they are."""
    count = 0
    for word in case.words:
        target = _compact(word.text)
        for match in finding.phi_matches:
            if match.kind is not word.kind:
                continue
            if word.kind is not PhiKind.PATIENT_NAME_PART:
                count += 1
                break
            if any(SequenceMatcher(None, target, _compact(part)).ratio() >= 0.75
                   for part in match.text.split()):  # fmt: skip
                count += 1
                break
    return count


def evidence(finding: ScanFinding) -> bool:
    """The pixels alone would flag the file (:func:`is_evidence`), header signals aside."""
    boxes = {(m.image, m.box) for m in finding.phi_matches}
    return any(is_evidence(w, boxes, finding.vocabulary) for w in finding.words)


@dataclass(frozen=True)
class Figures:
    label: str
    recall: tuple[int, int]
    recall_10: tuple[int, int]
    recall_legible: tuple[int, int]
    false_positives: tuple[int, int]
    words: tuple[int, int]
    evidence_10: tuple[int, int]
    evidence_fp: tuple[int, int]
    seconds: float
    images: int
    skipped: int

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else float("inf")


def figures(
    label: str, cases: Sequence[Case], findings: Sequence[ScanFinding], seconds: float
) -> Figures:
    text = [(c, f) for c, f in zip(cases, findings, strict=True) if c.height]
    large = [(c, f) for c, f in text if c.height >= 10]
    legible = [(c, f) for c, f in large if c.contrast >= LEGIBLE_CONTRAST]
    blank = [f for c, f in zip(cases, findings, strict=True) if not c.height]
    return Figures(
        label,
        (sum(bool(f.words) for _, f in text), len(text)),
        (sum(bool(f.words) for _, f in large), len(large)),
        (sum(bool(f.words) for _, f in legible), len(legible)),
        (sum(bool(f.words) for f in blank), len(blank)),
        (sum(recovered(c, f) for c, f in text), sum(len(c.words) for c, _ in text)),
        (sum(evidence(f) for _, f in large), len(large)),
        (sum(evidence(f) for f in blank), len(blank)),
        seconds,
        len(findings),
        sum(f.ocr_skipped_by_prefilter for f in findings),
    )


def _pct(pair: tuple[int, int]) -> str:
    hit, total = pair
    return f"{100 * hit / total:5.1f}% ({hit}/{total})" if total else "n/a"


def _breakdown(cases: Sequence[Case], findings: Sequence[ScanFinding]) -> None:
    """Recall by height, level, position, font and kind (where the misses are)."""
    groups: dict[tuple[int, str], list[bool]] = {}
    for case, finding in zip(cases, findings, strict=True):
        if not case.height:
            continue
        bucket = "contrast " + ("< 15%" if case.contrast < LEGIBLE_CONTRAST else ">= 15%")
        keys = (f"{case.height:>2} px", case.level, case.position, case.font, case.kind, bucket)
        for order, key in enumerate(keys):
            groups.setdefault((order, key), []).append(bool(finding.words))
    for order in range(6):
        cells = [f"{key} {sum(h)}/{len(h)}" for (o, key), h in sorted(groups.items()) if o == order]
        print("    " + ", ".join(cells))


def _shoulder() -> list[Path]:
    """pydicom-data's 1024 x 1024 MR shoulder (no text: textured anatomy), where installed.

    Found by listing the installed package's folder: nothing is downloaded.
    """
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return []
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "MR2_UNCR.dcm"
    return [path] if path.is_file() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--engines", default="tesseract,rapidocr,both")
    parser.add_argument("--quick", action="store_true", help="60 images, 50 plain slices")
    parser.add_argument(
        "--real", action="store_true",
        help="only the real-MR development set and the cine (bench/ocr_real.py)",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="DIR", action="append", default=[],
        help="with --real: also run another checkout's pipeline (e.g. /work/main), interleaved",
    )  # fmt: skip
    args = parser.parse_args()
    if args.real:
        import ocr_real

        here = Path(__file__).resolve().parents[1]
        trees = [Path(tree).resolve() for tree in args.against] + [here]
        ocr_real.report(trees, args.engines.split(",")[0] if "," not in args.engines else "both",
                        args.jobs)  # fmt: skip
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    n_images, n_plain = (60, 50) if args.quick else (args.images, PLAIN_SLICES)
    quiet_pydicom()
    for name in engines:
        started = time.perf_counter()
        engine = make_engine(name)
        print(f"engine {name}: {engine.name} (ready in {time.perf_counter() - started:.2f} s)")
    print(f"rapidocr model load in this process: {load_seconds():.2f} s; cpus: {os.cpu_count()}; "
          f"fonts: {', '.join(f.stem if f else 'Pillow default' for f in FONTS)}")  # fmt: skip

    started = time.perf_counter()
    cases = generate(n_images, args.seed)
    plain = plain_slices(n_plain, args.seed)
    n_text = sum(bool(c.height) for c in cases)
    print(f"generated {len(cases)} images ({n_text} with text, "
          f"{sum(c.kind == 'mr' for c in cases)} MR, {sum(c.kind == 'sc' for c in cases)} screen "
          f"captures) and {len(plain)} plain MR slices in {time.perf_counter() - started:.1f} s")  # fmt: skip
    datas = [c.data for c in cases]

    rows: list[Figures] = []
    runs: dict[str, list[ScanFinding]] = {}
    plain_rates: dict[str, tuple[float, int, int]] = {}
    for name in engines:
        for prefilter in (True, False):
            label = f"{name}, pre-filter {'on' if prefilter else 'off'}"
            findings, seconds = scan_all(datas, name, prefilter, 1)
            runs[label] = findings
            rows.append(figures(label, cases, findings, seconds))
        # As deid --clean-pixels scans: the generated MR slices are ORIGINAL\PRIMARY,
        # so the scanner prior of rules/pixels/priors.yaml reads only their text lines.
        label = f"{name}, pre-filter on, priors"
        findings, seconds = scan_all(datas, name, True, 1, priors=True)
        runs[label] = findings
        rows.append(figures(label, cases, findings, seconds))
        plain_findings, plain_seconds = scan_all(plain, name, True, args.jobs)
        plain_rates[name] = (
            len(plain) / plain_seconds,
            sum(f.ocr_skipped_by_prefilter for f in plain_findings),
            sum(bool(f.words) for f in plain_findings),
        )

    print("\nrecall by group (pixel words read / images with text):")
    for label, findings in runs.items():
        print(f"  {label}")
        _breakdown(cases, findings)

    print()
    head = (f"{'run':28} {'recall':>17} {'recall >=10px':>17} {'>=10px legible':>17} "
            f"{'FP rate':>15} {'words recovered':>19} {'img/s':>6} {'skipped':>7} "
            f"{'flag >=10px':>17} {'flag FP':>13}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.label:28} {_pct(r.recall):>17} {_pct(r.recall_10):>17} "
              f"{_pct(r.recall_legible):>17} {_pct(r.false_positives):>15} {_pct(r.words):>19} "
              f"{r.rate:6.2f} {r.skipped:7} {_pct(r.evidence_10):>17} {_pct(r.evidence_fp):>13}")  # fmt: skip

    print(f"\nplain MR slices (256x256, no text), pre-filter on, {args.jobs} jobs:")
    for name, (rate, skipped, with_words) in plain_rates.items():
        print(f"  {name:10} {rate:6.1f} slices/s  target >= 10/s {'met' if rate >= 10 else 'NOT met'}"
              f"  ({skipped}/{len(plain)} skipped by the pre-filter, {with_words} with words)")  # fmt: skip

    print("\ntargets, pre-filter on (recall >= 99% for text >= 10 px, FP <= 2%):")
    for r in [r for r in rows if "pre-filter on" in r.label]:
        fp = r.false_positives
        recall_met = r.recall_10[0] >= 0.99 * r.recall_10[1]
        print(f"  {r.label:28} recall >=10px {_pct(r.recall_10):>17} "
              f"{'met' if recall_met else 'NOT met':7}  FP {_pct(fp):>15} "
              f"{'met' if fp[0] <= 0.02 * fp[1] else 'NOT met'}")  # fmt: skip

    print(f"\nreal files ({REFERENCE}):")
    files = sorted(REFERENCE.glob("*.dcm")) if REFERENCE.is_dir() else []
    files += _shoulder()
    if not files:
        print("  none found")
    for name in engines:
        _init_worker(name, True)
        for path in files:
            data = path.read_bytes()
            for prefilter in (True, False):
                globals()["_prefilter"] = prefilter
                t0 = time.perf_counter()
                head = f"  {name:9} {path.name:34} pre-filter {'on ' if prefilter else 'off'}"
                try:
                    finding = _scan(data)
                except Exception as exc:  # a benchmark reports, it does not stop
                    print(f"{head} error {type(exc).__name__}: {exc}")
                    continue
                seconds = time.perf_counter() - t0
                print(f"{head} flagged {finding.flagged!s:5} (pixel words: {bool(finding.words)!s:5}) "
                      f"words {len(finding.words):3}  PHI {len(finding.phi_matches):2}  "
                      f"images {finding.images_scanned:2} OCR'd, "
                      f"{finding.ocr_skipped_by_prefilter:2} skipped  {seconds:6.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
