"""The real-MR development set and the multi-frame case for ``bench/ocr.py --real``.

Kept apart from the generated set so that it can also run against another
checkout's ``pipeline`` (``--against DIR``: the same files, the same
measurement, in a subprocess with ``PYTHONPATH=DIR``), interleaved with this
one's, so that before and after are measured in one run on a shared machine.
Only what both versions have is used; figures the older one lacks are n/a.

The set: every MR image (Modality MR with pixel data) among pydicom's
bundled files and pydicom-data's (``data_store``), found by listing the
installed packages' folders (nothing is downloaded), the 1024 x 1024
shoulder included; the real files of ``/work/shared/reference``: the Siemens
MR with an overlay and the 35-slice Siemens Prisma head series; a Siemens
style mosaic built from those 35 real slices (6 x 6 tiles of 256 x 256 in
one 1536 x 1536 frame, as a DWI or fMRI mosaic: real anatomy, no text; no
real mosaic is installed here); and the multi-frame case: an 87-frame cine
built from the real GE ultrasound frame (its burned-in text static, the
image area of SequenceOfUltrasoundRegions changing every frame), since no
real cine is in the reference folder; and that cine as a JPEG Baseline
ultrasound stores it (Pillow, quality 90, 4:2:0), where the codec's blocks
make the static pixels around the moving image change too.

Per file: frames, seconds, frames/s, OCR images (pieces sent to the
engine, counted by a wrapper), words read, flagged, and what
``deid --clean-pixels`` would do (:func:`plan_pixels` with the shipped
pixel rules and the research profile): untouched, cleaned or held.  For the
cine and its one frame, also the memory each scan adds at its peak (the
process's peak RSS reset before it, Linux only): it should not grow with
the number of frames, which are decoded one at a time.
"""

from __future__ import annotations

import glob
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

REFERENCE = Path("/work/shared/reference")
CINE_FRAMES = 87


@dataclass
class Counting:
    """An engine that counts the images it is given (OCR calls of the scan)."""

    inner: Any
    images: int = 0
    calls: int = 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def read(self, images: list[npt.NDArray[np.uint8]]) -> list[Any]:
        self.calls += 1
        self.images += len(images)
        return list(self.inner.read(images))


def _package_dirs() -> list[Path]:
    import importlib.util

    import pydicom.data

    dirs = [Path(pydicom.data.__file__).parent / "test_files"]
    spec = importlib.util.find_spec("data_store")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return dirs


def development_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of every real MR file of the set, in a fixed order."""
    out: list[tuple[str, bytes]] = []
    for folder in _package_dirs():
        for name in sorted(glob.glob(str(folder / "**" / "*"), recursive=True)):
            path = Path(name)
            if not path.is_file():
                continue
            try:
                ds = dcmread(path, defer_size=64, force=True)
            except Exception:
                continue
            if str(ds.get("Modality", "")) == "MR" and "PixelData" in ds:
                out.append((f"{folder.parent.name}/{path.relative_to(folder)}", path.read_bytes()))
    for path in sorted((REFERENCE / "dicom").glob("MR*.dcm")):
        out.append((f"reference/{path.name}", path.read_bytes()))
    heads = sorted((REFERENCE / "heads" / "t1_fl2d_sag_hfs").glob("*.dcm"))
    for path in heads:
        out.append((f"reference/heads/{path.name[:4]}", path.read_bytes()))
    if heads:
        out.append(("built/mosaic-6x6-of-heads", mosaic(heads)))
    return out


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mosaic(slices: list[Path]) -> bytes:
    """The real head slices tiled 6 x 6 into one frame, as a Siemens mosaic stores them."""
    first = dcmread(slices[0])
    rows, cols = int(first.Rows), int(first.Columns)
    tiles = 6
    frame = np.zeros((rows * tiles, cols * tiles), dtype=first.pixel_array.dtype)
    for i, path in enumerate(slices[: tiles * tiles]):
        r, c = divmod(i, tiles)
        frame[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = dcmread(path).pixel_array
    first.Rows, first.Columns = frame.shape
    first.PixelData = frame.tobytes()
    first.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in first:
            del first[keyword]
    return _to_bytes(first)


def cine(frames: int = CINE_FRAMES) -> bytes | None:
    """An ultrasound cine from the real GE frame: text static, the image area moving."""
    path = REFERENCE / "dicom" / "US-GE-4AICL142.dcm"
    if not path.is_file():
        return None
    ds = dcmread(path)
    ds.pixel_array  # noqa: B018  (decoded once, YBR to RGB)
    from pydicom.pixels.processing import convert_color_space

    rgb = convert_color_space(ds.pixel_array, "YBR_FULL", "RGB")
    region = max(
        ds.SequenceOfUltrasoundRegions,
        key=lambda r: (
            (r.RegionLocationMaxX1 - r.RegionLocationMinX0)
            * (r.RegionLocationMaxY1 - r.RegionLocationMinY0)
        ),
    )
    x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
    x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
    noise = np.random.default_rng(0)
    out = np.empty((frames, *rgb.shape), dtype=np.uint8)
    for k in range(frames):
        frame = rgb.copy()
        area = frame[y0:y1, x0:x1].astype(np.int16)
        area = np.roll(area, k, axis=0) + noise.integers(-6, 7, area.shape[:2])[..., None]
        frame[y0:y1, x0:x1] = area.clip(0, 255).astype(np.uint8)
        out[k] = frame
    ds.PixelData = out.tobytes()
    ds.NumberOfFrames = frames
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 33.3
    return _to_bytes(ds)


def jpeg_cine(native: bytes) -> bytes:
    """The cine as a JPEG Baseline ultrasound stores it: each frame by Pillow, quality 90, 4:2:0."""
    from pipeline.samples.burned_text import as_jpeg_baseline

    return _to_bytes(as_jpeg_baseline(dcmread(io.BytesIO(native))))


def measure(datas: list[tuple[str, bytes]], engine_name: str) -> Iterator[dict[str, object]]:
    """One record per file: what the scan and the cleaning plan make of it."""
    from pipeline.dicom.profile import load_profile
    from pipeline.pixels.blank import PixelCleaning
    from pipeline.pixels.engines import make_engine
    from pipeline.pixels.regions import load_region_rules
    from pipeline.read.dicom import quiet_pydicom, read_dicom
    from pipeline.steps.dicom_file import plan_pixels

    quiet_pydicom()
    engine = make_engine(engine_name)
    _ = engine.name
    profile = load_profile("research")
    rules = load_region_rules()
    yield {"ready": time.time()}  # start-up and model loading are done
    for name, data in datas:
        counting = Counting(engine)
        cleaning = PixelCleaning(counting, rules)  # type: ignore[arg-type]
        record: dict[str, object] = {"file": name}
        try:
            ds = read_dicom(data, "input bench")
        except Exception as exc:
            record["error"] = type(exc).__name__
            yield record
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        before = _reset_peak()
        started = time.perf_counter()
        try:
            plan, finding = _plan(ds, cleaning, profile, plan_pixels)
        except Exception as exc:
            record["error"] = type(exc).__name__
            yield record
            continue
        seconds = time.perf_counter() - started
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        record.update(
            frames=frames,
            seconds=seconds,
            ocr_images=counting.images,
            words=len(finding.words),
            flagged=finding.flagged,
            action=plan.action.value,
            held=plan.held.value if plan.held is not None else "",
            blanked=plan.words_blanked,
            reused=getattr(finding, "regions_reused", None),
            prior=getattr(finding, "prior", None),
            max_rss_mb=peak / 1e6,  # of the process so far (never lower than earlier files)
            frame_mb=_frame_bytes(ds) / 1e6,
            scan_peak_mb=None if before is None else (_status_mb("VmHWM") or 0.0) - before,
        )
        yield record


def _frame_bytes(ds: Dataset) -> int:
    """One decoded frame's size as stored (rows x columns x samples x bytes per sample)."""
    size = 1
    for keyword in ("Rows", "Columns", "SamplesPerPixel"):
        size *= int(ds.get(keyword, 1) or 1)
    return size * max(1, int(ds.get("BitsAllocated", 8) or 8) // 8)


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory figure in MB (10^6 bytes), or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name == field:
                    return int(value.split()[0]) * 1024 / 1e6
    except OSError:
        return None
    return None


def _reset_peak() -> float | None:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5); return the RSS now, in MB.

    The memory a file's scan adds at its peak is then ``VmHWM`` after it
    less this: what the scan of a cine holds (frames decoded, pieces for
    OCR), apart from the file's own bytes and the dataset already in memory.
    None where the peak cannot be reset.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def _plan(ds: Dataset, cleaning: Any, profile: Any, plan_pixels: Any) -> tuple[Any, Any]:
    """plan_pixels, keeping the finding it was made from (by wrapping the scan)."""
    import pipeline.steps.dicom_file as step

    seen: list[Any] = []
    original = step.scan_dataset

    def keep(*args: Any, **kwargs: Any) -> Any:
        finding = original(*args, **kwargs)
        seen.append(finding)
        return finding

    step.scan_dataset = keep  # type: ignore[assignment]
    try:
        plan = plan_pixels(ds, "input bench", cleaning, profile)
    finally:
        step.scan_dataset = original  # type: ignore[assignment]
    return plan, seen[-1]


def main_child(engine: str, with_cine: bool, part: int = 0, parts: int = 1) -> None:
    """Print one JSON record per line (run in a subprocess by ``bench/ocr.py --real``)."""
    datas = development_files()[part::parts]
    if with_cine:
        built = cine()
        if built is not None:
            # The one frame first: the OCR engine's first read of an image this
            # size grows its working memory (rapidocr's by some 200 MB), which
            # the cine, read next, then finds in place; each file's peak is
            # then what it adds itself (see _reset_peak).
            one = dcmread(io.BytesIO(built))
            one.PixelData = one.PixelData[: len(one.PixelData) // CINE_FRAMES]
            one.NumberOfFrames = 1
            single = _to_bytes(one)
            datas.append(("built/us-cine-1-frame", single))
            datas.append((f"built/us-cine-{CINE_FRAMES}-frames", built))
            datas.append(("built/us-cine-1-frame-jpeg", jpeg_cine(single)))
            datas.append((f"built/us-cine-{CINE_FRAMES}-frames-jpeg", jpeg_cine(built)))
    for record in measure(datas, engine):
        print(json.dumps(record), flush=True)
    print(json.dumps({"done": time.time()}), flush=True)


if __name__ == "__main__":
    import sys

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    split = next((a for a in sys.argv if a.startswith("--part=")), "--part=0/1")[7:].split("/")
    main_child(
        sys.argv[1] if len(sys.argv) > 1 else "both",
        "--no-cine" not in sys.argv,
        int(split[0]),
        int(split[1]),
    )


def run(
    tree: Path, engine: str, *, cine: bool, parts: int = 1
) -> tuple[list[dict[str, Any]], float]:
    """Run the set with ``tree``'s ``pipeline`` in ``parts`` concurrent processes: records, wall s."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_THREAD_LIMIT": "1"}
    args = [sys.executable, __file__, engine, *([] if cine else ["--no-cine"])]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*args, f"--part={k}/{parts}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for k in range(parts)
    ]
    outputs = [proc.communicate()[0] for proc in procs]
    wall = time.perf_counter() - started
    lines = [json.loads(line) for out in outputs for line in out.splitlines() if line.strip()]
    ready = max((r["ready"] for r in lines if "ready" in r), default=0.0)
    done = max((r["done"] for r in lines if "done" in r), default=0.0)
    records = [r for r in lines if "file" in r]
    return records, wall, max(0.0, done - ready)


def report(trees: list[Path], engine: str, jobs: int) -> None:
    """Per file, each tree side by side (interleaved runs), then frames/s with ``jobs`` processes."""
    load = os.getloadavg()
    print(f"real-MR set, engine {engine}; load average at start {load[0]:.2f} {load[1]:.2f}")
    single: dict[Path, list[dict[str, Any]]] = {}
    for tree in trees:
        single[tree], _, _ = run(tree, engine, cine=True)
    head = f"{'file':44} {'frames':>6}"
    for k, _tree in enumerate(trees):
        head += f" | {k}: {'s':>6} {'fr/s':>6} {'ocr':>4} {'words':>5} {'flag':>5} {'plan':>9}"
    print(head)
    print("-" * len(head))
    for i, record in enumerate(single[trees[0]]):
        line = f"{record['file'][:44]:44} {record.get('frames', 0):>6}"
        for tree in trees:
            r = single[tree][i]
            if "error" in r:
                line += f" | {'error ' + str(r['error']):>42}"
                continue
            rate = r["frames"] / r["seconds"] if r["seconds"] else float("inf")
            plan = r["held"] or r["action"]
            line += (
                f" | {k_(tree, trees)}: {r['seconds']:6.2f} {rate:6.1f} {r['ocr_images']:4} "
                f"{r['words']:5} {r['flagged']!s:>5} {plan[:9]:>9}"
            )
        print(line)
    for tree in trees:
        ok = [r for r in single[tree] if "error" not in r and not r["file"].startswith("built/us")]
        frames = sum(r["frames"] for r in ok)
        seconds = sum(r["seconds"] for r in ok)
        held = sum(bool(r["held"]) for r in ok)
        flagged = sum(bool(r["flagged"]) for r in ok)
        print(
            f"{k_(tree, trees)} {tree}: MR set {len(ok)} files, {frames} frames, {seconds:.1f} s in "
            f"one process ({frames / seconds:.1f} frames/s), {flagged} flagged, {held} held"
        )
    for tree in trees:
        by_name = {r["file"]: r for r in single[tree] if "error" not in r}
        long, one = (
            by_name.get(f"built/us-cine-{CINE_FRAMES}-frames"),
            by_name.get("built/us-cine-1-frame"),
        )
        if long and one:
            print(
                f"{k_(tree, trees)} {tree}: cine {CINE_FRAMES} frames {long['seconds']:.2f} s, one "
                f"frame {one['seconds']:.2f} s: {long['seconds'] / one['seconds']:.1f}x (target < 5x); "
                f"{long['ocr_images']} OCR image(s); process max RSS {long['max_rss_mb']:.0f} MB"
            )
            peaks = long.get("scan_peak_mb"), one.get("scan_peak_mb")
            if None not in peaks:
                frame_mb = long.get("frame_mb")
                size = f" (one decoded frame: {frame_mb:.1f} MB)" if frame_mb else ""
                print(
                    f"{k_(tree, trees)} {tree}: memory the scan adds at its peak (the OCR engine's "
                    f"working memory included): its one frame alone {peaks[1]:.0f} MB, then the "
                    f"{CINE_FRAMES}-frame cine {peaks[0]:.0f} MB{size}"
                )
        jpeg, jpeg_one = (
            by_name.get(f"built/us-cine-{CINE_FRAMES}-frames-jpeg"),
            by_name.get("built/us-cine-1-frame-jpeg"),
        )
        if jpeg and jpeg_one:
            plan = jpeg["held"] or jpeg["action"]
            print(
                f"{k_(tree, trees)} {tree}: JPEG cine {CINE_FRAMES} frames {jpeg['seconds']:.2f} s, "
                f"one frame {jpeg_one['seconds']:.2f} s: "
                f"{jpeg['seconds'] / jpeg_one['seconds']:.1f}x (target < 5x); "
                f"{jpeg['ocr_images']} OCR image(s), {plan}"
            )
    for tree in trees:
        records, wall, scanning = run(tree, engine, cine=False, parts=jobs)
        frames = sum(r.get("frames", 0) for r in records if "error" not in r)
        print(
            f"{k_(tree, trees)} {tree}: MR set with {jobs} processes: {frames} frames in "
            f"{scanning:.1f} s from all ready to all done ({frames / scanning:.1f} frames/s); "
            f"{wall:.1f} s wall with start-up and model loading ({frames / wall:.1f} frames/s)"
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


def k_(tree: Path, trees: list[Path]) -> int:
    return trees.index(tree)
