"""One real run for the leak check's tests: generated inputs, the real engine, its outputs.

The session makes it once (about two seconds): a PACS-like DICOM tree with
PHI planted everywhere (:func:`pipeline.samples.write_sample_tree`), Siemens
twix files of the same subjects (:func:`pipeline.demo.write_raw_sample`) and
an ISMRMRD file whose XML header carries every identifying field; DICOM
de-identified with the research profile, raw data converted to ISMRMRD and
fastMRI files, and the release files a publish writes beside them
(manifests in CSV and Parquet, a JSON descriptor, a README, SHA256SUMS), all
from the run's own outputs.  Tests that plant a leak copy an output first.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.demo import write_raw_sample
from pipeline.dicom.profile import load_profile
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.samples import Subject, write_sample_tree
from pipeline.samples.ismrmrd import IsmrmrdSample, write_ismrmrd_sample
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.steps.raw_file import convert_tree
from pipeline.verify import Identifiers, collect_identifiers

KEY = SecretKey(bytes(range(32)))
ISMRMRD_SERIAL = "53127"
ISMRMRD_UID = "1.3.12.2.1107.5.2.19.53127.2021062215163569300000001"


@dataclass(frozen=True)
class Run:
    """A finished run: its inputs, their identifiers and the outputs to publish."""

    root: Path
    subjects: list[Subject]
    incoming: Path
    release: Path
    identifiers: Identifiers
    outputs: list[tuple[str, Path, str]]  # (key, file, release-relative path)
    planted: list[str]  # every value planted in the inputs

    def output(self, suffix: str, part: str = "") -> tuple[str, Path, str]:
        """The first output whose release path ends with ``suffix`` (and contains ``part``)."""
        return next(o for o in self.outputs if o[2].endswith(suffix) and part in o[2])


def _ismrmrd_input(path: Path, subject: Subject) -> list[str]:
    """An ISMRMRD file of ``subject`` whose XML header holds every identifying field."""
    write_ismrmrd_sample(path, IsmrmrdSample(patient_id=subject.phi.patient_id, slices=2))
    phi = subject.phi
    family = phi.patient_name.split("^")[0]
    with h5py.File(path, "r+") as f:
        xml = f["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
        xml = re.sub(
            r"<subjectInformation>.*?</subjectInformation>",
            "<subjectInformation>"
            f"<patientName>{phi.patient_name}</patientName><patientID>{phi.patient_id}</patientID>"
            f"<patientBirthdate>{phi.birth_date[:4]}-{phi.birth_date[4:6]}-{phi.birth_date[6:]}"
            "</patientBirthdate></subjectInformation><studyInformation>"
            f"<studyDate>2021-06-22</studyDate><accessionNumber>{phi.accession_number}"
            f"</accessionNumber><referringPhysicianName>{phi.referring_physician}"
            f"</referringPhysicianName><studyDescription>Knie {family}</studyDescription>"
            f"<studyInstanceUID>{ISMRMRD_UID}.1</studyInstanceUID></studyInformation>",
            xml,
        )
        xml = re.sub(
            r"<measurementInformation>",
            f"<measurementInformation><measurementID>{ISMRMRD_SERIAL}_66327770_66327775_358"
            "</measurementID>",
            xml,
        )
        xml = xml.replace(
            "</receiverChannels></acquisitionSystemInformation>",
            f"</receiverChannels><institutionName>{phi.institution_name}</institutionName>"
            f"<stationName>{phi.station_name}</stationName>"
            f"<deviceSerialNumber>{ISMRMRD_SERIAL}</deviceSerialNumber>"
            "</acquisitionSystemInformation>",
        )
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=[xml.encode()], dtype=h5py.string_dtype("utf-8"))
    return [ISMRMRD_SERIAL, "66327770", f"{ISMRMRD_UID}.1"]


def _release_files(release: Path, outputs: list[tuple[str, Path, str]]) -> list[Path]:
    """What a publish writes beside the data: manifests, descriptor, card, checksums."""
    rows = []
    for _, path, rel in outputs:
        data = path.read_bytes()
        rows.append(
            {
                "subject": rel.split("/")[1],
                "path": rel,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "split": "train",
            }
        )
    manifests = release / "manifests"
    manifests.mkdir(parents=True)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[c]) for c in header) for r in rows]
    (manifests / "files.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), manifests / "files.parquet")
    (release / "datapackage.json").write_text(
        json.dumps({"name": "mricurate-release", "resources": [{"path": "manifests/files.csv",
                    "schema": {"fields": [{"name": c, "type": "string"} for c in header]}}]}),
        encoding="utf-8",
    )  # fmt: skip
    (release / "README.md").write_text(
        f"# Dataset card\n\n{len(rows)} files, field strength 3 T, split train.\n",
        encoding="utf-8",
    )
    (release / "SHA256SUMS").write_text(
        "".join(f"{r['sha256']}  {r['path']}\n" for r in rows), encoding="utf-8"
    )
    return [
        manifests / "files.csv",
        manifests / "files.parquet",
        release / "datapackage.json",
        release / "README.md",
        release / "SHA256SUMS",
    ]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("verify-run")
    incoming, release, private = root / "incoming", root / "release", root / "private"
    private.mkdir(mode=0o700)
    subjects = write_sample_tree(incoming / "pacs", n_subjects=2, slices=2)
    raw_planted = write_raw_sample(incoming / "raw", subjects)
    raw_planted += _ismrmrd_input(incoming / "raw" / "other-converter.h5", subjects[0])
    profile = load_profile("research")
    store = PrivateStore(private)
    deidentify_tree(incoming / "pacs", release / "dicom", KEY, profile, store, jobs=1)
    convert_tree(
        incoming / "raw", release / "raw", KEY, store, load_header_rules(),
        date_shift_days=profile.date_shift_days, fastmri=release / "fastmri", jobs=1,
    )  # fmt: skip
    data = sorted(p for p in release.rglob("*") if p.is_file() and ".mricurate" not in p.parts)
    outputs = [(f"out-{n}", p, str(p.relative_to(release))) for n, p in enumerate(data)]
    extra = _release_files(release, outputs)
    outputs += [
        (f"out-{len(outputs) + n}", p, str(p.relative_to(release))) for n, p in enumerate(extra)
    ]
    planted = [v for s in subjects for v in s.phi.values()] + raw_planted
    return Run(
        root=root,
        subjects=subjects,
        incoming=incoming,
        release=release,
        identifiers=collect_identifiers([incoming]),
        outputs=outputs,
        planted=planted,
    )


@pytest.fixture
def copy_of(run: Run, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``copy_of(output)``: a copy of the output under a key and file name of its own."""
    made: list[Path] = []

    def make(output: tuple[str, Path, str]) -> tuple[str, Path, str]:
        key, path, rel = output
        target = tmp_path / f"copy-{len(made)}" / path.name
        target.parent.mkdir()
        shutil.copyfile(path, target)
        made.append(target)
        return f"{key}-copy-{len(made)}", target, rel

    return make
