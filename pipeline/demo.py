"""The generated sample of ``mricurate demo``, and its stage-by-stage walk-through.

The sample is a messy PACS-like export with PHI planted in headers, paths
and private elements (a head series with a face among them), and Siemens
raw data (twix) of the same subjects with PHI planted in the protocol.
``mricurate demo`` drops it into a new workspace and runs the product on it
(the ingest flow, :mod:`mricurate.demo_command`); ``mricurate demo
--stages`` runs :func:`run_demo` instead: each library stage on its own,
with its full account (de-identification, defacing, raw conversion, the
pixel scan), then checks that no planted value reached the output.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import h5py

from pipeline.batch.runner import RunSummary
from pipeline.deface.rules import load_deface_rules
from pipeline.deface.series import deface_series
from pipeline.dicom.profile import load_profile
from pipeline.dicom.tally import for_people
from pipeline.keys import generate_key, load_key, write_key
from pipeline.pixels.blank import PixelCleaning
from pipeline.pixels.engines import DEFAULT_ENGINE, make_engine
from pipeline.pixels.regions import load_region_rules
from pipeline.pixels.scan import ScanStatus, write_findings
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.samples import Subject, write_sample_tree
from pipeline.samples.exams import BRAIN, subject_region
from pipeline.samples.head_volume import (
    HeadGrid,
    HeadPose,
    head_datasets,
    make_head,
    write_head_series,
)
from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.steps.raw_file import convert_tree
from pipeline.steps.scan_file import scan_tree

# In HDF5 files the k-space samples are random-looking bytes in which a short
# value can occur by chance; their text (the header) is searched for every
# value, their bytes for values at least this long.
_BINARY_NEEDLE = 6


def leaked_values(release: Path, values: list[str]) -> list[str]:
    """Planted values found in any byte or path of ``release`` (should be none).

    A value made only of digits (a serial number, an MRN) counts only where it
    stands alone: ``41710`` inside ``20161014171002`` is a shifted date-time,
    not the serial number.
    """
    needles = {v.encode("utf-8").upper() for v in values if len(v) >= 4}
    needles |= {v.encode("latin-1", "ignore").upper() for v in values if len(v) >= 4}
    patterns = {
        n: re.compile(rb"(?<![0-9])" + re.escape(n) + rb"(?![0-9])") if n.isdigit() else None
        for n in needles
        if n
    }

    def present(needle: bytes, data: bytes) -> bool:
        pattern = patterns[needle]
        return needle in data if pattern is None else pattern.search(data) is not None

    found: set[str] = set()
    for path in release.rglob("*"):
        rel = str(path.relative_to(release)).encode().upper()
        data = path.read_bytes().upper() if path.is_file() else b""
        if path.suffix == ".h5" and path.is_file():
            text = _hdf5_text(path).upper()
            found |= {n.decode("latin-1") for n in patterns if present(n, text) or present(n, rel)}
            found |= {
                n.decode("latin-1")
                for n in patterns
                if len(n) >= _BINARY_NEEDLE and present(n, data)
            }
            continue
        found |= {n.decode("latin-1") for n in patterns if present(n, data) or present(n, rel)}
    return sorted(found)


def _hdf5_text(path: Path) -> bytes:
    """Every string an HDF5 file holds: the ISMRMRD header and the attributes."""
    parts: list[bytes] = []

    def visit(_: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "OS" and item.ndim <= 1:
            value = item[()]
            values = value.ravel() if hasattr(value, "ravel") else [value]
            parts.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
        if isinstance(item, h5py.Dataset | h5py.Group):
            parts.extend(str(v).encode() for v in item.attrs.values())

    with h5py.File(path, "r") as f:
        parts.extend(str(v).encode() for v in f.attrs.values())
        f.visititems(visit)
    return b"\n".join(parts)


def write_raw_sample(root: Path, subjects: list[Subject], *, head: bool = False) -> list[str]:
    """One Siemens twix file (noise + a knee scan) per subject, PHI in its protocol.

    The raw data carries each subject's real patient ID, so the converter
    links it to the same subject as the DICOM series.  Returns the planted
    values that only the raw side has.  ``head``: a brain scan instead
    (body part BRAIN, protocol ``t2_tse_tra_brain``), whose k-space
    ``rules/deface/head.yaml`` holds for review.
    """
    extra: list[str] = []
    for number, subject in enumerate(subjects):
        phi = subject.phi
        serial = phi.device_serial_number if phi.device_serial_number.isdigit() else "45000"
        image = SyntheticMeasurement(
            patient_name=phi.patient_name.replace('"', "'"),
            patient_id=phi.patient_id,
            birth_date=phi.birth_date,
            sex=subject.sex,
            weight_kg=subject.weight_kg,
            height_m=subject.size_m,
            institution=phi.institution_name,
            institution_address=phi.institution_address.replace(", ", ","),
            station_name=phi.station_name,
            serial=serial,
            referring_physician=phi.referring_physician,
            study_description=f"Knie {phi.patient_name.split('^')[0]}",
            channels=4, samples=128, lines=32, slices=3, pmu_every=8,
            meas_id=200 + number, seed=number,
        )  # fmt: skip
        if head:
            image = replace(image, protocol_name="t2_tse_tra_brain", body_part="BRAIN",
                            patient_position="HFS", meas_id=400 + number)  # fmt: skip
        noise = replace(image, noise=True, lines=8, slices=1, pmu_every=0, meas_id=100 + number)
        folder = root / phi.patient_name.replace("^", " ")
        folder.mkdir(parents=True, exist_ok=True)
        write_vd_twix(
            folder / f"meas_MID{image.meas_id:05d}_{image.protocol_name}.dat", [noise, image]
        )
        extra += [serial, str(image.patient_loid), str(image.study_loid)]
    return extra


def write_workspace_sample(incoming: Path, *, subjects: int = 3, head: bool = True) -> list[str]:
    """A PACS export (``pacs/``) and the scanner's raw data (``raw/``) of the same subjects,
    dropped into a workspace's ``incoming/``, with a head series with a face; return every
    planted value (DICOM and raw)."""
    people = write_sample_tree(incoming / "pacs", n_subjects=subjects)
    if head:
        write_head_sample(incoming / "pacs", people)
    raw_planted = write_raw_sample(incoming / "raw", people)
    return [v for person in people for v in person.phi.values()] + raw_planted


def write_head_sample(root: Path, subjects: list[Subject]) -> int:
    """A head series with a face for the first subject whose exam is a brain; its images.

    The generated head (:mod:`pipeline.samples.head_volume`: pydeface's
    template under a known pose) as 28 classic sagittal slices of 5 mm (4 mm pixels), the
    subject's PHI in the header like the rest of the sample.
    """
    brains = [s for s in subjects if subject_region(s) is BRAIN]
    if not brains:
        return 0
    subject = brains[0]
    grid = HeadGrid(rows=64, cols=64, slices=28, pixel_mm=4.0, slice_mm=5.0)
    phantom = make_head(grid, HeadPose((6.0, 3.0, -4.0), (2.0, -3.0, 5.0)))
    folder = root / subject.phi.patient_name.replace("^", " ") / "t1_head"
    return len(write_head_series(folder, head_datasets(subject, phantom)))


def deface_tree(dicom: Path) -> Counter[str]:
    """Deface every head volume among the series folders under ``dicom``; outcomes counted."""
    rules = load_deface_rules()
    outcomes: Counter[str] = Counter()
    folders = sorted({p.parent for p in dicom.rglob("*.dcm")})
    for folder in folders:
        result = deface_series(sorted(folder.glob("*.dcm")), rules)
        outcomes[result.outcome.value] += 1
    return outcomes


def _report(summary: RunSummary, *, facts: bool = True) -> None:
    for outcome, count in sorted((o.value, n) for o, n in summary.outcomes.items()):
        print(f"     {outcome:<12} {count}")
    for reason, keys in sorted((r.value, k) for r, k in summary.reasons.items()):
        print(f"     - {reason}: {len(keys)}")
    if facts:
        for name, count in for_people(summary.facts):
            print(f"     {name}: {count}")


def run_demo(root: Path, *, subjects: int = 3, jobs: int = 1, head: bool = True) -> int:
    """Generate, de-identify, deface, verify and report; return the number of leaks (0).

    ``head``: add the head series with a face and deface it (one registration,
    2-4 s on two cores).
    """
    root.mkdir(parents=True, exist_ok=True)
    incoming = root / "incoming"
    incoming_raw = root / "incoming-raw"
    release = root / "release"
    private_dir = root / "private"
    key_path = private_dir / "site.key"
    private_dir.mkdir(exist_ok=True, mode=0o700)
    if not key_path.exists():
        write_key(key_path, generate_key())
    key = load_key(key_path)
    print(f"1. generating a sample of {subjects} subjects with planted PHI in {incoming}")
    people = write_sample_tree(incoming, n_subjects=subjects)
    heads = write_head_sample(incoming, people) if head else 0
    if heads:
        print(f"   with a head series with a face ({heads} images, a generated head)")
    engine = make_engine(DEFAULT_ENGINE)
    print(f"2. de-identifying with profile 'research', cleaning pixels with OCR ({engine.name})")
    profile = load_profile("research")
    private = PrivateStore(private_dir)
    cleaning = PixelCleaning(engine, load_region_rules())
    summary = deidentify_tree(
        incoming, release / "dicom", key, profile, private, jobs=jobs, cleaning=cleaning
    )
    _report(summary)
    print("3. defacing head volumes (rules/deface/head.yaml): registered to pydeface's template")
    for outcome, count in sorted(deface_tree(release / "dicom").items()):
        print(f"     {outcome:<18} {count} series")
    print(f"4. converting Siemens raw data of the same subjects ({incoming_raw})")
    raw_planted = write_raw_sample(incoming_raw, people)
    converted = convert_tree(
        incoming_raw, release / "raw", key, private, load_header_rules(),
        date_shift_days=profile.date_shift_days, fastmri=release / "fastmri", jobs=jobs,
    )  # fmt: skip
    _report(converted, facts=False)
    facts = converted.facts
    print(
        f"     {facts.get('measurements', 0)} measurements ({facts.get('noise measurements', 0)} "
        f"noise) as ISMRMRD, {facts.get('fastMRI files', 0)} fastMRI-layout files; subjects "
        "linked to the DICOM side by their patient ID"
    )
    print(f"5. scanning the pixels of the input for burned-in text ({engine.name})")
    _, findings = scan_tree(incoming, engine, private, jobs=jobs)
    write_findings(findings, private_dir / "findings.json")
    flagged = [f for f in findings if f.status is ScanStatus.FLAGGED]
    print(f"     {len(flagged)} of {len(findings)} file(s) flagged; findings (PHI) in private/")
    planted = [v for person in people for v in person.phi.values()] + raw_planted
    leaks = leaked_values(release, planted)
    print(f"6. leak check: {len(planted)} planted values, {len(leaks)} found in the release")
    print()
    print(f"Look at the release:       {release}")
    print(f"  e.g. dcmdump $(find {release}/dicom -name '*.dcm' | head -1)")
    print(f"       h5dump -d dataset/xml $(find {release}/raw -name '*.h5' | head -1)")
    print(f"       fastMRI layout: {release}/fastmri")
    print(f"Private (key, link table, quarantine with reasons): {private_dir}")
    print(f"The input with its PHI:    {incoming}")
    return len(leaks)
