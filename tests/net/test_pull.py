"""`mricurate pull` from Orthanc playing the clinical PACS, by C-MOVE and by C-GET; push to it.

One Orthanc for the module, loaded through its REST API with four studies
made of pydicom's and pydicom-data's real files (uncompressed, JPEG 2000,
RLE, JPEG lossless; MR, CT, Enhanced MR, Secondary Capture) with planted
identifiers.  Each pull asks for some of them and for one that does not
exist; every instance lands once in incoming/, the missing row is in the
table (in private/), a rerun retrieves nothing, a node down at the first
attempt is retried, and neither the terminal nor the log names a patient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from mricurate.cli import main
from pipeline.catalog import Catalog, PullOutcome
from pipeline.workspace import Workspace, init_workspace
from tests.net.conftest import free_port, saved_in_study, wait_for_port, write_config
from tests.net.orthanc import Orthanc, needs_orthanc

# One Orthanc for the module: its tests on one xdist worker.
pytestmark = [needs_orthanc, pytest.mark.xdist_group("orthanc")]

OUR_AE = "MRICURATE"
PACS_AE = "CLINICAL"
# study -> (accession number, patient ID, study date, files)
STUDIES = {
    "s1": ("PHIACC0001", "PHIPID01", "20240105", ["MR_small.dcm", "CT_small.dcm"]),
    "s2": ("PHIACC0002", "PHIPID01", "20240310", ["JPEG2000.dcm", "SC_rgb_rle.dcm"]),
    "s3": ("PHIACC0003", "PHIPID02", "20230720", ["emri_small.dcm", "MR_small_RLE.dcm"]),
    "s4": ("PHIACC0004", "PHIPID02", "20220101", ["JPEG-LL.dcm"]),
}
PLANTED = ("PHIACC", "PHIPID", "Jane", "Sample")


@dataclass(frozen=True)
class Pacs:
    orthanc: Orthanc
    listen_port: int
    uids: dict[str, set[str]]  # study -> its SOP Instance UIDs
    sent: dict[str, Path]  # SOP Instance UID -> the file as uploaded


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    folder = tmp_path_factory.mktemp("orthanc")
    listen_port = free_port()
    orthanc = Orthanc(folder / "pacs", ae_title=PACS_AE, our_ae=OUR_AE, our_port=listen_port)
    orthanc.start()
    uids: dict[str, set[str]] = {}
    sent: dict[str, Path] = {}
    try:
        for study, (accession, patient, date, files) in STUDIES.items():
            study_uid = generate_uid()
            for number, name in enumerate(files):
                ds = dcmread(get_testdata_file(name))
                ds.PatientID, ds.PatientName = patient, f"Sample^Jane{patient[-1]}"
                ds.AccessionNumber, ds.StudyDate = accession, date
                path = saved_in_study(ds, study_uid, number, folder / f"{study}-{number}.dcm")
                orthanc.upload(path.read_bytes())
                uids.setdefault(study, set()).add(str(ds.SOPInstanceUID))
                sent[str(ds.SOPInstanceUID)] = path
        yield Pacs(orthanc, listen_port, uids, sent)
    finally:
        orthanc.kill()


def workspace_for(tmp_path: Path, pacs: Pacs, roles: str) -> Workspace:
    return write_config(
        init_workspace(tmp_path / "w"),
        f"[listen]\nport = {pacs.listen_port}\naddress = '127.0.0.1'\nae_title = '{OUR_AE}'\n"
        f"[pacs.clinical]\nae_title = '{PACS_AE}'\nhost = '127.0.0.1'\n"
        f"port = {pacs.orthanc.dicom_port}\nroles = {roles}\n",
    )


def incoming_uids(workspace: Workspace) -> list[str]:
    return [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in workspace.incoming.glob("*.dcm")]  # fmt: skip


def table_rows(path: Path) -> dict[str, str]:
    """row number -> status, from the pull's table."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("row,accession_number,patient_id,")
    return {line.split(",")[0]: line.split(",")[5] for line in lines[1:]}


def assert_as_sent(path: Path, pacs: Pacs) -> None:
    """The instance in its transfer syntax as uploaded, every element's value the same.

    Not byte for byte: Orthanc's C-STORE (dcmtk) drops the group length
    elements (gggg,0000) and the trailing padding (FFFC,FFFC) that CT_small.dcm
    carries; every other element, pixel data included (compressed fragments as
    they were), is compared.
    """
    got = dcmread(path)
    sent = dcmread(pacs.sent[str(got.SOPInstanceUID)])
    assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID

    def values(ds: Dataset) -> dict[object, object]:
        return {e.tag: e.value for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC}

    assert values(got) == values(sent)


def assert_no_phi(*texts: str) -> None:
    for text in texts:
        for planted in PLANTED:
            assert planted not in text


def test_pull_by_c_move_retrieves_each_instance_once_and_resumes(
    tmp_path: Path, pacs: Pacs, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    workspace = workspace_for(tmp_path, pacs, "['query', 'store']")
    cohort = workspace.private / "cohort.csv"
    cohort.write_text("accession_number\nPHIACC0001\nPHIACC0002\nPHIACC0003\nPHIACC9999\n")
    args = ["pull", "--workspace", str(workspace.root), "--from", "clinical",
            "--cohort", str(cohort)]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "by C-MOVE: 3 retrieved, 0 retrieved before, 1 missing, 0 failed, 0 not asked" in out
    assert "row 5 (4 of 4): missing" in err
    expected = pacs.uids["s1"] | pacs.uids["s2"] | pacs.uids["s3"]
    landed = incoming_uids(workspace)
    assert sorted(landed) == sorted(expected)  # each once, nothing of s4
    for path in workspace.incoming.glob("*.dcm"):
        assert_as_sent(path, pacs)
    table = workspace.private / "pulls" / "cohort-clinical.csv"
    assert table_rows(table) == {"2": "retrieved", "3": "retrieved", "4": "retrieved",
                                 "5": "missing"}  # fmt: skip
    assert "PHIACC9999,,,,missing,0,0,0" in table.read_text()
    assert table.stat().st_mode & 0o777 == 0o600
    with Catalog.open(workspace.catalog_url) as catalog:
        receipts = [catalog.received(uid) for uid in expected]
        attempts = catalog.pull_attempts("clinical")
    assert {r.calling_ae for r in receipts if r is not None} == {PACS_AE}
    assert sorted(a.outcome.value for a in attempts.values()) == [
        "missing",
        "retrieved",
        "retrieved",
        "retrieved",
    ]

    # A rerun asks only for the missing row and retrieves nothing new.
    before = sorted(workspace.incoming.iterdir())
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "0 retrieved, 3 retrieved before, 1 missing" in out
    assert sorted(workspace.incoming.iterdir()) == before
    assert table_rows(table)["2"] == "retrieved-before"
    assert_no_phi(out, err, caplog.text)


def test_pull_by_c_get_retries_a_node_that_is_down_at_first(
    tmp_path: Path, pacs: Pacs, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.net.cohort import read_cohort
    from pipeline.net.pull import PullMethod, Retry, RowStatus, pull_cohort

    caplog.set_level(logging.DEBUG)
    workspace = workspace_for(tmp_path, pacs, "['query', 'get']")
    cohort = workspace.private / "cohort.csv"
    # A patient's studies of 2023 (s3, not s4 of 2022), an accession number, a patient unknown.
    cohort.write_text(
        "accession_number,patient_id,study_date_from,study_date_to\n"
        ",PHIPID02,2023-01-01,2023-12-31\nPHIACC0002,,,\n,PHIPID99,,\n"
    )
    rows = read_cohort(cohort)
    lines: list[str] = []

    def progress(line: str) -> None:
        # Up again as soon as the first attempt has failed (before its retry):
        # down for exactly one attempt, however loaded the machine is.
        lines.append(line)
        if "cannot reach" in line and len(lines) == 1:
            pacs.orthanc.start()

    pacs.orthanc.kill()  # down at the first attempt
    with Catalog.open(workspace.catalog_url) as catalog:
        report = pull_cohort(workspace, catalog, workspace.config.node("clinical"), rows,
                             cohort_name="cohort", retry=Retry(attempts=4, first_delay=1.0),
                             progress=progress)  # fmt: skip
        attempts = catalog.pull_attempts("clinical")
    assert report.method is PullMethod.GET
    assert [r.status for r in report.rows] == [
        RowStatus.RETRIEVED,
        RowStatus.RETRIEVED,
        RowStatus.MISSING,
    ]
    assert [(r.studies, r.instances, r.retrieved) for r in report.rows] == [
        (1, 2, 2),
        (1, 2, 2),
        (0, 0, 0),
    ]
    assert "row 2 (1 of 3): cannot reach clinical" in lines[0]
    assert "trying again in 1 s" in lines[0]
    assert sorted(incoming_uids(workspace)) == sorted(pacs.uids["s3"] | pacs.uids["s2"])
    assert {a.outcome for a in attempts.values()} == {PullOutcome.RETRIEVED, PullOutcome.MISSING}

    # Each dataset arrives as it was uploaded, compressed ones as they are.
    for path in workspace.incoming.glob("*.dcm"):
        assert_as_sent(path, pacs)

    assert main(["pull", "--workspace", str(workspace.root), "--from", "clinical",
                 "--cohort", str(cohort), "--by", "get"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "by C-GET: 0 retrieved, 2 retrieved before, 1 missing" in out
    assert len(list(workspace.incoming.glob("*.dcm"))) == 4
    assert_no_phi(out, err, caplog.text, *lines)


def test_serve_s_listener_takes_what_the_pacs_sends_and_push_sends_it_a_release(
    tmp_path: Path, pacs: Pacs, capsys: pytest.CaptureFixture[str]
) -> None:
    """The listener `serve` starts with [listen] with_serve, as a child process; then push."""
    from mricurate.workspace_commands import start_listener, stop_listener
    from tests.net.test_push import release

    workspace = workspace_for(tmp_path, pacs, "['sender', 'store']")
    (workspace.root / "mricurate.toml").write_text(
        (workspace.root / "mricurate.toml").read_text().replace("[listen]\n",
                                                                "[listen]\nwith_serve = true\n")
    )  # fmt: skip
    child = start_listener(workspace)
    try:
        wait_for_port(pacs.listen_port, child)  # type: ignore[arg-type]
        # Orthanc sends study s4 to us (its REST API: C-STORE to the modality "mricurate").
        study = pacs.orthanc.find_study("PHIACC0004")
        pacs.orthanc.post("/modalities/mricurate/store", {"Resources": [study]})
    finally:
        stop_listener(child)
    assert sorted(incoming_uids(workspace)) == sorted(pacs.uids["s4"])

    before = pacs.orthanc.sop_instance_uids()
    files = release(workspace)
    assert main(["push", "--workspace", str(workspace.root), "--to", "clinical"]) == 0
    assert "5 sent, 0 sent before, 0 failed (of 5 DICOM files)" in capsys.readouterr().out
    root = workspace.release / "v0001"
    released = {str(dcmread(root / f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert pacs.orthanc.sop_instance_uids() - before == released
