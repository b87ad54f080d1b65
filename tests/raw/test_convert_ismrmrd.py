"""``convert`` on ISMRMRD files from other converters: groups, noise files, no fastMRI layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.reasons import Outcome, Reason
from pipeline.samples.ismrmrd import IsmrmrdSample, write_ismrmrd_sample
from pipeline.steps.raw_file import convert_tree

KEY = SecretKey(bytes(range(32)))


def _convert(source: Path, tmp: Path) -> tuple[RunSummary, Path, Path]:
    output, fastmri = tmp / "release", tmp / "fastmri"
    summary = convert_tree(
        source, output, KEY, PrivateStore(tmp / "private"), load_header_rules(),
        date_shift_days=load_profile("research").date_shift_days, fastmri=fastmri,
    )  # fmt: skip
    return summary, output, fastmri


def test_each_group_is_a_measurement_and_a_noise_group_is_named_so(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    write_ismrmrd_sample(source / "scan.h5", IsmrmrdSample(slices=1, patient_id="MRN-1"))
    noise = tmp_path / "noise.h5"
    write_ismrmrd_sample(noise, IsmrmrdSample(slices=1, patient_id="MRN-1"))
    with h5py.File(noise, "a") as f:  # keep only the noise readouts
        data = f["dataset/data"][:]
        keep = data[(data["head"]["flags"] & (1 << 18)) != 0]
        del f["dataset/data"]
        f["dataset"].create_dataset("data", data=keep, maxshape=(None,))
    with h5py.File(source / "scan.h5", "a") as f, h5py.File(noise, "r") as g:
        g.copy("dataset", f, name="noise")  # a second group in the same file
    summary, output, fastmri = _convert(source, tmp_path)
    assert summary.outcomes == {Outcome.WRITTEN: 1}
    assert (summary.facts["measurements"], summary.facts["noise measurements"]) == (2, 1)
    names = sorted(p.name.endswith("-noise.h5") for p in output.rglob("*.h5"))
    assert names == [False, True]
    assert len(list(fastmri.rglob("*.h5"))) == 1  # the image group only


def test_an_undersampled_scan_is_released_without_a_training_file(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    write_ismrmrd_sample(source / "r2.h5", IsmrmrdSample(slices=1, acceleration=2))
    summary, output, fastmri = _convert(source, tmp_path)
    assert summary.outcomes == {Outcome.WRITTEN: 1}
    assert (summary.facts["fastMRI files"], summary.facts["fastMRI skipped"]) == (0, 1)
    assert len(list(output.rglob("*.h5"))) == 1
    assert not list(fastmri.rglob("*.h5"))


def test_an_unforeseen_failure_quarantines_that_input_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net for reader-library surprises (simulated: no real input triggers it)."""
    import pipeline.raw.convert as run

    source = tmp_path / "in"
    source.mkdir()
    write_ismrmrd_sample(source / "a.h5", IsmrmrdSample(slices=1, patient_id="MRN-A"))
    write_ismrmrd_sample(source / "b.h5", IsmrmrdSample(slices=1, patient_id="MRN-B"))
    real = run.anonymize_header

    def flaky(xml: str, *args: object, **kwargs: object) -> str:
        if "MRN-B" in xml:
            raise ValueError("a library surprise")
        return real(xml, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "anonymize_header", flaky)
    summary, output, _ = _convert(source, tmp_path)
    assert summary.outcomes == {Outcome.WRITTEN: 1, Outcome.QUARANTINED: 1}
    assert list(summary.reasons) == [Reason.INTERNAL_ERROR]
    assert len(list(output.rglob("*.h5"))) == 1
    assert not list(output.rglob(".mricurate-tmp-*"))
    (key,) = summary.reasons[Reason.INTERNAL_ERROR]
    assert list((tmp_path / "private" / "quarantine").rglob(f"{key}*"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_input_that_stops_making_progress_is_quarantined_and_the_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """The worker stuck in a read is stopped by its watchdog (the hang is simulated:
    a damaged HDF5 heap kept libhdf5 busy for 20 s in a trial, not reliably forever)."""
    import time

    import pipeline.raw.convert as run

    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b", "c"):
        write_ismrmrd_sample(source / f"{name}.h5", IsmrmrdSample(slices=1, patient_id=f"P-{name}"))
    real = run.ismrmrd_blocks

    def stuck_on_b(group, **kwargs):  # type: ignore[no-untyped-def]
        if group.path.name == "b.h5":
            time.sleep(120)  # what a read stuck in C looks like from Python
        return real(group, **kwargs)

    monkeypatch.setattr(run, "ismrmrd_blocks", stuck_on_b)  # inherited by forked workers
    started = time.monotonic()
    summary = convert_tree(
        source, tmp_path / "release", KEY, PrivateStore(tmp_path / "private"),
        load_header_rules(), date_shift_days=load_profile("research").date_shift_days,
        jobs=jobs, stall_seconds=1.0,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert summary.outcomes == {Outcome.WRITTEN: 2, Outcome.QUARANTINED: 1}
    (key,) = summary.reasons[Reason.STALLED]
    assert list((tmp_path / "private" / "quarantine").rglob(f"{key}*"))
    assert len(list((tmp_path / "release").rglob("*.h5"))) == 2
    assert not list((tmp_path / "release").rglob(".mricurate-tmp-*"))


def test_export_fastmri_lists_a_damaged_file_and_goes_on(tmp_path: Path) -> None:
    from pipeline.raw.fastmri import export_fastmri_tree

    _, output, _ = _convert_two(tmp_path)
    files = sorted(output.rglob("*.h5"))
    files[0].write_bytes(files[0].read_bytes()[:2000])  # cut short after the fact
    written, skipped, failed = export_fastmri_tree(output, tmp_path / "fastmri-again")
    assert (written, skipped, len(failed)) == (1, 0, 1)
    assert failed[0][0] == files[0].relative_to(output).as_posix()


def _convert_two(tmp_path: Path) -> tuple[RunSummary, Path, Path]:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b"):
        write_ismrmrd_sample(source / f"{name}.h5", IsmrmrdSample(slices=1, patient_id=f"P-{name}"))
    return _convert(source, tmp_path)
