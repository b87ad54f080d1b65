"""The whole DICOM round trip with real peers: pull from a clinical PACS, ingest, push to research.

Two Orthancs for the module (tests/net/orthanc.py), each on free loopback
ports: CLINICAL, loaded through its REST API with three studies of
pydicom's real files carrying planted identifiers (names, IDs, accession
numbers, dates, institution, a free-text comment, identifiers inside a
sequence), and RESEARCH, empty.  `mricurate pull` retrieves two of the
studies into incoming/ (C-MOVE to our listener), one of their instances an RT
plan the release does not carry (quarantined), the ingest stages run over them (:func:`~pipeline.ingest.once.
ingest_once`, what the flow calls: Prefect's start costs more than the test's
budget and is proved by tests/flows), what the run held back for review is
approved through the catalog's review API (:meth:`Catalog.decide`, what the
review app calls), a second run publishes it, and `mricurate push` sends the
release to RESEARCH.  Read back through RESEARCH's REST API, what it stored
is exactly the release's DICOM files, element for element, and none of it,
nor the terminal or the log, holds a planted value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from mricurate.cli import main
from pipeline.catalog import Catalog, Decision
from pipeline.ingest.once import ingest_once
from pipeline.release.checksums import SUMS_NAME
from pipeline.release.versions import latest_version
from pipeline.workspace import Workspace, init_workspace
from pipeline.workspace.ruleset import workspace_ruleset_version
from tests.flows.sample import config_text
from tests.net.conftest import free_port, saved_in_study, write_config
from tests.net.orthanc import Orthanc, needs_orthanc

pytestmark = [needs_orthanc, pytest.mark.xdist_group("orthanc-round-trip")]

OUR_AE = "MRICURATE"
# study -> (accession number, patient ID, patient name, study date, files)
STUDIES = {
    "r1": ("PLANTACC01", "PLANTPID01", "Plantsurname^Janeplant", "20240105",
           ["MR_small.dcm", "CT_small.dcm"]),
    "r2": ("PLANTACC02", "PLANTPID02", "Plantother^Joeplant", "20230720",
           ["MR_small_RLE.dcm", "JPEG2000.dcm", "rtplan.dcm"]),  # an RT plan: kept out
    "r3": ("PLANTACC03", "PLANTPID02", "Plantother^Joeplant", "20220101",
           ["SC_rgb_rle.dcm"]),  # not in the cohort: never pulled
}  # fmt: skip
COHORT = ("r1", "r2")
INSTITUTION = "Plantville Memorial Hospital"
# Free text that names the patient, a doctor, a date and a record number (what the clean
# action is documented to remove: pipeline/identity/clean.py).
FREE_TEXT = "Plantnote: Janeplant seen by Dr Plantdoctor on 05.01.2024, MRN 4471123"
# Every planted value, and the distinctive words inside them.
PLANTED = [
    *(value for study in STUDIES.values() for value in study[:3]),
    *(date for study in STUDIES.values() for date in [study[3]]),
    INSTITUTION, FREE_TEXT, "Plantsurname", "Janeplant", "Plantother", "Joeplant",
    "Plantville", "Plantnote", "Plantdoctor", "05.01.2024", "4471123", "PLANTRPID7",
]  # fmt: skip


@dataclass(frozen=True)
class Peers:
    clinical: Orthanc
    research: Orthanc
    listen_port: int
    original_uids: set[str]  # every UID of every study as uploaded to CLINICAL


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    folder = tmp_path_factory.mktemp("round-trip")
    listen_port = free_port()
    clinical = Orthanc(folder / "clinical", ae_title="CLINICAL", our_ae=OUR_AE,
                       our_port=listen_port)  # fmt: skip
    research = Orthanc(folder / "research", ae_title="RESEARCH", our_ae=OUR_AE,
                       our_port=listen_port)  # fmt: skip
    original: set[str] = set()
    try:
        clinical.start()
        research.start()
        for study, (accession, patient, name, date, files) in STUDIES.items():
            study_uid = generate_uid()
            for number, filename in enumerate(files):
                ds = dcmread(get_testdata_file(filename))
                ds.PatientID, ds.PatientName, ds.AccessionNumber = patient, name, accession
                ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
                ds.PatientBirthDate = "19610203"
                ds.InstitutionName = INSTITUTION
                ds.ImageComments = FREE_TEXT
                ds.RequestAttributesSequence = [Dataset()]  # identifiers inside a sequence
                ds.RequestAttributesSequence[0].AccessionNumber = accession
                ds.RequestAttributesSequence[0].RequestedProcedureID = "PLANTRPID7"
                path = saved_in_study(ds, study_uid, number, folder / f"{study}-{number}.dcm")
                clinical.upload(path.read_bytes())
                original |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                             str(ds.SOPInstanceUID)}  # fmt: skip
        yield Peers(clinical, research, listen_port, original)
    finally:
        clinical.kill()
        research.kill()


def workspace_for(tmp_path: Path, peers: Peers) -> Workspace:
    return write_config(
        init_workspace(tmp_path / "w"),
        config_text(clean_pixels=True, jobs=1)
        + f"[listen]\nport = {peers.listen_port}\naddress = '127.0.0.1'\nae_title = '{OUR_AE}'\n"
        f"[pacs.clinical]\nae_title = 'CLINICAL'\nhost = '127.0.0.1'\n"
        f"port = {peers.clinical.dicom_port}\nroles = ['query', 'store']\n"
        f"[pacs.research]\nae_title = 'RESEARCH'\nhost = '127.0.0.1'\n"
        f"port = {peers.research.dicom_port}\nroles = ['store']\n",
    )


def stored_instances(orthanc: Orthanc) -> dict[str, Dataset]:
    """Every instance the Orthanc stored, read from the file its REST API gives: UID -> dataset."""
    datasets = [dcmread(BytesIO(data)) for data in orthanc.files()]
    stored = {str(ds.SOPInstanceUID): ds for ds in datasets}
    assert len(stored) == len(datasets)
    return stored


def dicom_uids(folder: Path) -> set[str]:
    """The SOP Instance UIDs of every DICOM file under ``folder`` (other files skipped)."""
    uids = set()
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                uids.add(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
            except (InvalidDicomError, AttributeError, OSError, ValueError, EOFError):
                continue
    return uids


def values(ds: Dataset) -> dict[object, object]:
    """Element values as dcmtk's C-STORE keeps them: no group lengths, no trailing padding."""
    return {e.tag: e.value for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC}


def decoded(ds: Dataset) -> Iterator[DataElement]:
    """Every element of ``ds`` and its file meta, into every item of every sequence."""
    for element in [*getattr(ds, "file_meta", Dataset()), *ds]:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from decoded(item)


def assert_no_planted(ds: Dataset) -> None:
    for element in decoded(ds):
        if element.tag == 0x7FE00010 or element.VR == "SQ":
            continue  # pixel data are not text; a sequence's items are walked
        value = element.value
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for planted in PLANTED:
            assert planted.lower() not in text.lower(), (element.keyword, planted)


def test_pull_ingest_push_stores_exactly_the_release_and_no_planted_value(
    tmp_path: Path, peers: Peers, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    workspace = workspace_for(tmp_path, peers)
    cohort = workspace.private / "cohort.csv"
    cohort.write_text("accession_number\n" + "".join(f"{STUDIES[s][0]}\n" for s in COHORT))
    assert main(["pull", "--workspace", str(workspace.root), "--from", "clinical",
                 "--cohort", str(cohort), "--by", "move"]) == 0  # fmt: skip
    pulled = sum(len(STUDIES[s][4]) for s in COHORT)
    assert len(list(workspace.incoming.iterdir())) == pulled

    first = ingest_once(workspace)
    with Catalog.open(workspace.catalog_url) as catalog:
        pending = catalog.pending_reviews()
        for item in pending:  # what the run held back: a reviewer approves it
            catalog.decide(item.queue_id, Decision.APPROVE, reviewer="round-trip reviewer",
                           reason="", ruleset_version=workspace_ruleset_version(workspace))  # fmt: skip
    assert pending, first  # something was routed to review: the approval is exercised
    ingest_once(workspace)
    version = latest_version(workspace.release)
    assert version is not None
    root = workspace.release / version
    listed = [line.split("  ", 1)[1] for line in (root / SUMS_NAME).read_text().splitlines()]
    released = {str(dcmread(root / p).SOPInstanceUID): dcmread(root / p)
                for p in listed if p.startswith("dicom/")}  # fmt: skip
    assert len(released) == pulled - 1  # all but the RT plan, quarantined with its reason
    account = (workspace.quarantine / "quarantined.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in account[1:]] == ["sop-class-not-allowed"]

    assert main(["push", "--workspace", str(workspace.root), "--to", "research"]) == 0
    out, err = capsys.readouterr()
    assert f"{pulled - 1} sent, 0 sent before, 0 failed (of {pulled - 1} DICOM files)" in out

    stored = stored_instances(peers.research)
    assert set(stored) == set(released)  # the release, all of it, nothing else
    # What was pulled, what was kept out, what private/ holds (but the staged candidates of
    # the release: the released files themselves, verified, before they were published).
    kept_out = dicom_uids(workspace.incoming) | dicom_uids(workspace.quarantine)
    for path in workspace.private.iterdir():
        if path != workspace.staging:
            kept_out |= dicom_uids(path) if path.is_dir() else set()
    # The check reads those folders: each pulled instance is there (the RT plan twice).
    assert len(kept_out & peers.original_uids) == pulled
    assert not set(stored) & (kept_out | peers.original_uids)
    for uid, ds in stored.items():
        sent = released[uid]
        assert ds.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert values(ds) == values(sent), uid
        assert_no_planted(ds)
        for element in decoded(ds):  # not one original UID anywhere, however nested
            assert str(element.value) not in peers.original_uids, element.keyword
    for text in (out, err, caplog.text):
        for planted in PLANTED:
            assert planted not in text
