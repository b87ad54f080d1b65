"""The per-process memos of the deid step change no byte, no count and no record.

The step keeps, per worker process, what the rules made of a value
(``pipeline.dicom.engine``: the edit memo), which rule decides which element
of a given set of tags (the walk's plan) and what the CSA allowlist keeps of
a header (``pipeline.dicom.csa``).  A series repeats its values
slice after slice, so the later slices replay them.  Each memo is keyed by
everything that decides its output: a file de-identified with the memos
warm gives exactly what it gives with them cold, and another key, subject
or profile never takes an entry made for another.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pipeline.batch.step import Area, Item, StepResult, WorkerEnv
from pipeline.dicom import engine
from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile, load_profile
from pipeline.dicom.stream_write import write_stream
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.dicom import quiet_pydicom
from pipeline.read.dicom_stream import StreamRead, read_dicom_stream
from pipeline.samples import make_subjects, mr_series
from pipeline.steps.dicom_file import DicomStep
from tests.dicom.conftest import KEY, tiny_mr

OTHER_KEY = SecretKey(bytes(range(1, 33)))


def _clear() -> None:
    engine._EDIT_MEMO.clear()
    engine._SEQUENCE_MEMO.clear()
    engine._PLANS.clear()


def _series(tmp: Path, seed: int = 0, n: int = 4) -> list[Path]:
    """Slices of two subjects' series: the same values slice after slice, another subject's too."""
    paths = []
    for number, person in enumerate(make_subjects(2, seed=seed)):
        for index, ds in enumerate(mr_series(person, n_slices=n, rows=8, cols=8, seed=seed)):
            path = tmp / f"{number}-{index}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _outcome(result: StepResult) -> tuple[object, ...]:
    (output,) = result.outputs
    return (Path(output.temp).read_bytes(), output.relpath, sorted(result.facts),
            result.doubts, result.links)  # fmt: skip


def _step(tmp: Path, key: SecretKey = KEY, profile: str = "research") -> DicomStep:
    out = tmp / f"out-{key.fingerprint[:8]}-{profile}"
    (out / "tmp").mkdir(parents=True, exist_ok=True)
    step = DicomStep(key, load_profile(profile), out)
    step.setup(WorkerEnv({Area.RELEASE: out / "tmp"}, lambda: None, 64 << 20))
    return step


def _cold(step: DicomStep, paths: list[Path]) -> list[tuple[object, ...]]:
    found = []
    for index, path in enumerate(paths):
        _clear()
        found.append(_outcome(step.run(Item(path, index))))
    return found


def _warm(step: DicomStep, paths: list[Path]) -> list[tuple[object, ...]]:
    return [_outcome(step.run(Item(path, index))) for index, path in enumerate(paths)]


@pytest.fixture
def learned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the edits the rules worked out (not replayed from the memo)."""
    calls: list[int] = []
    real = engine._learn_edit
    monkeypatch.setattr(engine, "_learn_edit", lambda *a: calls.append(1) or real(*a))
    return calls


def test_warm_and_cold_give_the_same_files_and_counts(tmp_path: Path, learned: list[int]) -> None:
    quiet_pydicom()
    paths = _series(tmp_path)
    step = _step(tmp_path)
    cold = _cold(step, paths)
    worked_out_cold = len(learned)
    _clear()
    learned.clear()
    assert _warm(step, paths) == cold
    # The later slices replayed what the first worked out: far fewer edits learned.
    assert 0 < len(learned) < worked_out_cold / 2


def test_another_key_or_profile_never_takes_an_entry(tmp_path: Path) -> None:
    """Warm with one key's (or profile's) entries, another gives what it gives cold."""
    quiet_pydicom()
    paths = _series(tmp_path)
    first = _step(tmp_path)
    _clear()
    mine = _warm(first, paths)
    for other in (_step(tmp_path, key=OTHER_KEY), _step(tmp_path, profile="safe-harbor")):
        alone = _cold(other, paths)
        _clear()
        _warm(first, paths)  # the memo full of the first step's entries
        assert _warm(other, paths) == alone
        assert [o[0] for o in alone] != [m[0] for m in mine]


def test_another_subject_with_the_same_values_gets_its_own_pseudonyms(tmp_path: Path) -> None:
    """Two subjects share a description: each keeps its own subject-keyed edits."""
    quiet_pydicom()
    step = _step(tmp_path)
    files = []
    for patient_id in ("MRN1", "MRN2"):
        for ds in mr_series(make_subjects(1)[0], n_slices=2, rows=8, cols=8):
            ds.PatientID = patient_id
            ds.StudyDescription = "KNEE MRN1"  # names the first subject only
            path = tmp_path / f"{patient_id}-{ds.InstanceNumber}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    cold = _cold(step, files)
    _clear()
    assert _warm(step, files) == cold
    first, second = cold[0], cold[2]
    assert first[1].split("/")[0] != second[1].split("/")[0]  # two subjects


def test_the_dry_run_does_not_use_the_memo(tmp_path: Path) -> None:
    quiet_pydicom()
    from pipeline.dicom.deidentify import explain

    (path, *_rest) = _series(tmp_path)
    _clear()
    before = explain(path.read_bytes(), KEY, load_profile("research"))
    assert engine._EDIT_MEMO == {}
    _warm(_step(tmp_path), [path])
    assert explain(path.read_bytes(), KEY, load_profile("research")) == before


def _deidentify(
    data: bytes, key: SecretKey, uids: UidMapper, profile: Profile
) -> tuple[object, ...]:
    found = read_dicom_stream(data, "input")
    assert isinstance(found, StreamRead)
    ctx, link, relpath, _facts = deidentify_dataset(found.dataset, key, profile, uids)
    return write_stream(found.dataset, found), dict(ctx.edited), link, relpath


def test_each_part_of_the_key_decides(tmp_path: Path) -> None:
    """Only the key, or only the subject (by its issuer), differs: so do the outputs."""
    quiet_pydicom()
    (ds, *_rest) = mr_series(make_subjects(1)[0], n_slices=1, rows=8, cols=8)
    files = []
    for issuer in ("HOSP A", "HOSP B"):
        ds.IssuerOfPatientID = issuer  # not an identifying value the memo is keyed by
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    uids, profile = UidMapper(KEY), load_profile("research")  # one of each, as in a worker
    cases = [(files[0], KEY), (files[0], OTHER_KEY), (files[1], KEY)]
    cold = []
    for data, key in cases:
        _clear()
        cold.append(_deidentify(data, key, uids, profile))
    _clear()
    warm = [_deidentify(data, key, uids, profile) for data, key in cases]
    assert warm == cold
    assert len({c[0] for c in cold}) == 3


def test_a_remembered_csa_rebuild_is_the_allowlists_own(tmp_path: Path) -> None:
    """The CSA rebuild memo: cold and warm alike, and another allowlist takes no entry."""
    from pipeline.dicom import csa
    from pipeline.samples import encode_csa

    header = encode_csa(
        {"B_value": ["1000"], "NumberOfImagesInMosaic": ["48"], "PatientName": ["SMITH"]},
        vrs={"B_value": ("IS", 6)},
    )
    full = csa.load_csa_allowlist()
    lines = full.path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "name: B_value" in line)
    end = next(i for i in range(start + 1, len(lines)) if "- name:" in lines[i])
    shorter_path = tmp_path / "csa_image_header.yaml"
    shorter_path.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")
    shorter = csa.load_csa_allowlist(shorter_path)
    csa._REBUILT.clear()
    cold = {a.path: csa.rebuild_image_header(header, a) for a in (full, shorter)}
    assert cold[full.path] != cold[shorter.path]  # the allowlist decides
    for allowlist in (full, shorter, full, shorter):
        assert csa._rebuilt(header, allowlist) == cold[allowlist.path]
    assert len(csa._REBUILT) == 2
    assert csa._rebuilt(b"not a CSA2 header", full) == csa.Rebuilt(None, (), 0)


def test_the_planned_walk_does_what_the_element_by_element_walk_does(tmp_path: Path) -> None:
    """The dry run walks element by element: the same bytes, counts (in order) and doubts."""
    quiet_pydicom()
    from tests.dicom.test_stream import _series_bytes  # kept sequences holding PHI, both encodings

    profile, uids = load_profile("research"), UidMapper(KEY)
    files = [path.read_bytes() for path in _series(tmp_path, n=2)] + _series_bytes()
    ds = tiny_mr()
    item = Dataset()
    item.PatientName = "Smith^Anna"  # PHI in a sequence no rule names: the rules look inside
    item.CodeValue = "en"
    ds.LanguageCodeSequence = [item]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    files.append(buffer.getvalue())
    _clear()
    for data in files * 2:  # the second time with the plans (and memos) warm
        outcomes = []
        for explain in (True, False):
            found = read_dicom_stream(data, "input")
            assert isinstance(found, StreamRead)
            ctx, link, relpath, facts = deidentify_dataset(
                found.dataset, KEY, profile, uids, explain=explain
            )
            written = write_stream(found.dataset, found)
            outcomes.append((written, list(ctx.edited.items()), list(ctx.by_default.items()),
                             ctx.doubts, link, relpath, facts))  # fmt: skip
        assert outcomes[0] == outcomes[1]
    assert engine._PLANS  # the step's walk was planned


def test_a_long_value_is_not_kept(tmp_path: Path) -> None:
    """The memo's bounds hold: values over 1 KiB are worked out each time, never kept."""
    quiet_pydicom()
    ds = tiny_mr()
    ds.ImageComments = "scan repeated " * 100  # 1,400 characters, cleaned by a rule
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    _clear()
    _deidentify(buffer.getvalue(), KEY, UidMapper(KEY), load_profile("research"))
    kept = [key for _, _, inner in engine._EDIT_MEMO.values() for key in inner]
    assert kept  # the short values were kept
    assert all(len(key[3]) <= engine._EDIT_MEMO_VALUE for key in kept)  # type: ignore[arg-type]
    assert not any(b"scan repeated" in key[3] for key in kept)  # type: ignore[operator]
