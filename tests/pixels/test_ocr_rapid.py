"""RapidOCR runs offline on its bundled models, reads burned-in PHI; ``both`` is the union."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rapidocr
from pydicom.dataset import Dataset

from pipeline.errors import CurationError
from pipeline.pixels import rapid
from pipeline.pixels.engines import DEFAULT_ENGINE, BothEngine, EngineName, make_engine, union
from pipeline.pixels.ocr import OcrEngine, TesseractEngine, Word
from pipeline.pixels.phi import PhiKind
from pipeline.pixels.rapid import RapidOcrEngine, bundled_models
from pipeline.pixels.scan import ScanStatus, scan_dataset
from pipeline.samples import Subject, make_subjects, mr_series

from .images import burn, printed_name, text_mask, with_pixels

LABEL = "input 0123456789ab"


@pytest.fixture(scope="module")
def rapid_engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module")
def subject() -> Subject:
    return make_subjects(2, seed=23)[1]


def _page(shape: tuple[int, int], text: str, x: int, y: int, height: int) -> np.ndarray:
    """Dark text on white, as :func:`pipeline.pixels.prepare.prepare` makes it."""
    return np.round(255 * (1 - text_mask(shape, text, x=x, y=y, height=height))).astype(np.uint8)


def test_models_are_the_ones_bundled_in_the_wheel() -> None:
    models = bundled_models()
    package = Path(rapidocr.__file__).resolve().parent / "models"
    assert [p.name for p in (models.det, models.cls, models.rec)] == [
        "PP-OCRv6_det_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "PP-OCRv6_rec_small.onnx",
    ]  # fmt: skip
    assert {p.parent for p in (models.det, models.cls, models.rec)} == {package}
    assert models.missing() == []


def test_runs_offline_and_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models copied to a private folder, HOME empty, every download path made to fail."""
    from rapidocr.utils.download_file import DownloadFile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rapidocr tried to download something")

    monkeypatch.setattr(DownloadFile, "run", staticmethod(refuse))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = bundled_models()
    folder = tmp_path / "models"
    folder.mkdir()
    for path in (source.det, source.cls, source.rec):
        shutil.copy(path, folder / path.name)
    models = rapid.ModelFiles(folder / source.det.name, folder / source.cls.name,
                              folder / source.rec.name)  # fmt: skip
    engine = RapidOcrEngine(models=models)
    words = engine.read([_page((64, 320), "KESTREL 50321", x=12, y=20, height=16)])
    assert "".join(w.text for w in words[0]) == "KESTREL50321"  # spaces are not always read
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (source.det, source.cls, source.rec)
    )  # nothing was fetched beside them


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    models = rapid.ModelFiles(tmp_path / "det.onnx", tmp_path / "cls.onnx", tmp_path / "rec.onnx")
    with pytest.raises(CurationError, match=r"model file\(s\) missing: det.onnx"):
        _ = RapidOcrEngine(models=models).name


def test_word_boxes_cover_each_word(rapid_engine: RapidOcrEngine) -> None:
    assert isinstance(rapid_engine, OcrEngine)
    assert rapid_engine.name.startswith("rapidocr 3.10.0 (PP-OCRv6 small")
    page = _page((80, 400), "ALPHA 4711", x=40, y=30, height=10)
    blank = np.full((40, 40), 255, dtype=np.uint8)
    words = rapid_engine.read([page, blank])
    assert [w.text for w in words[0]] == ["ALPHA", "4711"] and words[1] == []
    ink_rows, ink_cols = np.nonzero(page < 128)
    alpha, number = words[0]
    assert alpha.line == number.line
    assert alpha.left + alpha.width <= number.left  # two boxes, side by side
    for word in words[0]:
        cols = ink_cols[(ink_cols >= word.left) & (ink_cols < word.left + word.width)]
        assert cols.size > 0
        assert word.top <= ink_rows.min() and word.top + word.height >= ink_rows.max() + 1
    # Together the word boxes cover all the ink (blanking relies on it).
    covered = np.zeros(page.shape, dtype=bool)
    for w in words[0]:
        covered[w.top : w.top + w.height, w.left : w.left + w.width] = True
    assert covered[page < 128].all()
    assert all(0 <= w.confidence <= 100 for w in words[0])
    assert rapid_engine.read([]) == []


def _burned_slice(subject: Subject) -> Dataset:
    """Name and MRN at 10 px over a 256 x 256 phantom slice, at the 12-bit maximum."""
    ds = mr_series(subject, n_slices=1, rows=256, cols=256, seed=5)[0]
    pixels = burn(ds.pixel_array, printed_name(subject.phi.patient_name), x=6, y=5, height=10,
                  value=4095)  # fmt: skip
    pixels = burn(pixels, subject.phi.patient_id, x=6, y=234, height=10, value=4095)
    return with_pixels(ds, pixels)


def test_reads_a_burned_in_name_and_matches_it_to_the_header(
    rapid_engine: RapidOcrEngine, subject: Subject
) -> None:
    finding = scan_dataset(_burned_slice(subject), LABEL, rapid_engine)
    assert finding.flagged and finding.status is ScanStatus.FLAGGED
    kinds = {m.kind for m in finding.phi_matches}
    assert {PhiKind.PATIENT_NAME_PART, PhiKind.PATIENT_ID} <= kinds
    name = [m for m in finding.phi_matches if m.kind is PhiKind.PATIENT_NAME_PART]
    assert all(m.box[1] < 20 for m in name)  # boxed where it was drawn


def test_plain_slice_is_still_skipped_by_the_prefilter(
    rapid_engine: RapidOcrEngine, subject: Subject
) -> None:
    ds = mr_series(subject, n_slices=1, rows=256, cols=256, seed=6)[0]
    finding = scan_dataset(ds, LABEL, rapid_engine)
    assert finding.status is ScanStatus.CLEAR and finding.words == ()
    assert finding.images_scanned == 0 and finding.ocr_skipped_by_prefilter == 1


def test_union_keeps_every_reading_once() -> None:
    tess = [Word("SMITH", 10, 10, 40, 10, 90.0, 0), Word("JOHN", 55, 10, 30, 10, 80.0, 0)]
    rap = [
        Word("Smith", 11, 9, 39, 12, 99.0, 0),  # the same word: left out
        Word("J0HN", 55, 9, 30, 12, 60.0, 0),  # read differently: both readings kept
        Word("1234567", 10, 200, 60, 12, 95.0, 1),  # tesseract missed it
    ]
    merged = union(tess, rap)
    assert [w.text for w in merged] == ["SMITH", "JOHN", "J0HN", "1234567"]
    assert {w.line for w in merged[2:]}.isdisjoint({w.line for w in tess})
    assert union([], rap) == rap and union(tess, []) == tess


def test_both_reads_with_each_engine_and_keeps_the_union(
    engine: TesseractEngine, rapid_engine: RapidOcrEngine
) -> None:
    pages = [
        _page((60, 300), "ORCHID 80412", x=20, y=20, height=12),
        _page((60, 300), "HERON", x=100, y=15, height=20),
    ]
    both = BothEngine(engine, rapid_engine)
    assert both.name.startswith("both: tesseract ") and "rapidocr 3.10.0" in both.name
    found = both.read(pages)
    alone = [engine.read(pages), rapid_engine.read(pages)]
    for page, words in enumerate(found):
        texts = {w.text.upper() for w in words}
        for reader in alone:
            assert {w.text.upper() for w in reader[page]} <= texts
    assert {"ORCHID", "80412"} <= {w.text for w in found[0]}


def test_factory_names_and_errors() -> None:
    assert isinstance(make_engine("tesseract"), TesseractEngine)
    assert isinstance(make_engine("RapidOCR"), RapidOcrEngine)
    assert isinstance(make_engine(EngineName.BOTH), BothEngine)
    assert make_engine("tesseract", language="deu").language == "deu"  # type: ignore[attr-defined]
    with pytest.raises(CurationError, match="unknown OCR engine 'easyocr': choose one of "
                                            "tesseract, rapidocr, both"):  # fmt: skip
        make_engine("easyocr")


def test_scan_command_offers_the_engines_with_the_library_default() -> None:
    from mricurate.cli import build_parser

    parser = build_parser()
    # The README: "`both`, the union of their words, is the default" (scan and deid).
    assert parser.parse_args(["scan", "src"]).ocr_engine == "both"
    deid = ["deid", "src", "out", "--key-file", "k", "--clean-pixels"]
    assert parser.parse_args(deid).ocr_engine == "both"
    assert DEFAULT_ENGINE is EngineName.BOTH
    for name in EngineName:
        assert (
            parser.parse_args(["scan", "src", "--ocr-engine", name.value]).ocr_engine == name.value
        )
    with pytest.raises(SystemExit):
        parser.parse_args(["scan", "src", "--ocr-engine", "easyocr"])


def test_one_thread_per_worker_and_no_box_dropped_for_its_confidence() -> None:
    """The README: onnxruntime with one thread per worker, thresholds low so no box is dropped.

    Checked on the loaded models themselves (not on our parameters), then on a
    read whose words the recogniser scores below 0.5, rapidocr's own default
    ``text_score``: they come back, with their low confidence.
    """
    engine = make_engine(EngineName.RAPIDOCR)  # what ``scan``/``deid`` build in each worker
    assert isinstance(engine, RapidOcrEngine)
    # Every other column of the letters wiped: the recogniser is unsure of what it reads.
    page = _page((64, 320), "KESTREL 50321", x=12, y=20, height=16)
    page[:, ::2] = 255
    words = engine.read([page])[0]
    model = engine._model()
    for session in (model.text_det.session.session, model.text_rec.session.session):
        options = session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert model.text_score == 0.0  # no recognised box is dropped for its score
    post = model.text_det.postprocess_op  # the detector's thresholds, below rapidocr's 0.3/0.5
    assert post.thresh < 0.3 and post.box_thresh < 0.5
    low = [w for w in words if w.confidence < 50]
    assert low, [(w.text, w.confidence) for w in words]
    assert all(w.width > 0 and w.height > 0 for w in low)
