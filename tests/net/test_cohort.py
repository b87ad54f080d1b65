"""The cohort CSV of `mricurate pull`: checked whole, errors by row and column, never a value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mricurate.cli import main
from pipeline.net.cohort import CohortRow, read_cohort
from pipeline.net.contexts import MAX_CONTEXTS
from pipeline.net.errors import CohortError, NetworkError
from pipeline.net.retrieve import SYNTAX_PREFERENCE, get_contexts
from pipeline.workspace import init_workspace


def cohort(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    return path


def test_rows_by_accession_number_or_patient_and_dates(tmp_path: Path) -> None:
    rows = read_cohort(cohort(
        tmp_path,
        "patient_id,accession_number,study_date_from,study_date_to\n"
        ",A1,,\n\nP7,,2023-01-01,2023-12-31\nP8,,,2020-05-06\n",
    ))  # fmt: skip
    assert rows == [
        CohortRow(2, accession_number="A1"),
        CohortRow(4, patient_id="P7", date_from=dt.date(2023, 1, 1), date_to=dt.date(2023, 12, 31)),
        CohortRow(5, patient_id="P8", date_to=dt.date(2020, 5, 6)),
    ]
    assert [r.study_date for r in rows] == ["", "20230101-20231231", "-20200506"]
    assert len({r.key for r in rows}) == 3
    # The key is what the row asks for, not where it is: a re-sorted file resumes.
    assert CohortRow(9, accession_number="A1").key == rows[0].key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accession\nA1\n", r"unknown column \(accession\)"),
        ("study_date_from\n2024-01-01\n", "no identifying column"),
        ("accession_number\nA*\nA?1\n", r"row 2, column 'accession_number': constraint-error"),
        ("accession_number\nABCDEFGHIJKLMNOPQ\n", r"row 2, .*maxLength"),
        ("patient_id,study_date_from\nSECRET7,2024-13-01\n",
         r"row 2, column 'study_date_from': type-error"),
        ("patient_id,study_date_from,study_date_to\nSECRET7,2024-02-01,2024-01-01\n",
         r"row 2, column 'study_date_to': the range ends before"),
        ("accession_number,patient_id,study_date_from\n,,2024-01-01\n",
         "row 2: names neither"),
        ("accession_number\nSECRET1\nSECRET1\n", "row 3: asks for what row 2 asks for"),
        ("accession_number\n\n", "has no rows"),
    ],
)  # fmt: skip
def test_a_bad_cohort_is_refused_by_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CohortError, match=message) as caught:
        read_cohort(cohort(tmp_path, text))
    assert "SECRET" not in str(caught.value)


def test_the_cli_refuses_a_bad_cohort_before_asking_the_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = init_workspace(tmp_path / "w")
    (workspace.root / "mricurate.toml").write_text(
        "[pacs.clinical]\nae_title = 'CLINICAL'\nhost = '127.0.0.1'\nport = 9\nroles = ['query']\n"
    )
    path = cohort(tmp_path, "accession_number\nSECRET*\n")
    args = ["pull", "--workspace", str(workspace.root), "--from", "clinical", "--cohort"]
    assert main([*args, str(path)]) != 0
    err = capsys.readouterr().err
    assert "row 2, column 'accession_number'" in err
    assert "SECRET" not in err


def test_c_get_contexts_one_per_syntax_at_most_128_with_the_scp_role() -> None:
    mr, ct = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2"
    plan = get_contexts([mr, ct, mr])
    storage = plan.contexts[2:]
    assert all(len(c.transfer_syntax) == 1 for c in storage)
    assert len(storage) == 2 * len(SYNTAX_PREFERENCE)  # 2 x 45 fit in 126
    assert sorted(str(r.sop_class_uid) for r in plan.roles) == sorted([mr, ct])
    assert all(r.scp_role and not r.scu_role for r in plan.roles)
    many = [f"1.2.3.{n}" for n in range(130)]
    plan = get_contexts(many)
    assert len(plan.contexts) <= MAX_CONTEXTS
    assert len(plan.left_out) == 4
    assert {c.transfer_syntax[0] for c in plan.contexts[2:]} == {SYNTAX_PREFERENCE[0]}


def test_a_node_that_stays_down_stops_the_pull_after_bounded_retries(tmp_path: Path) -> None:
    from pipeline.catalog import Catalog
    from pipeline.net.pull import PullMethod, PullStopped, Retry, RowStatus, method_for, pull_cohort
    from pipeline.workspace import NodeRole, PacsNode
    from tests.net.conftest import free_port

    workspace = init_workspace(tmp_path / "w")
    node = PacsNode("clinical", "CLINICAL", "127.0.0.1", free_port(),
                    frozenset({NodeRole.QUERY, NodeRole.GET}))  # fmt: skip
    rows = read_cohort(cohort(tmp_path, "accession_number\nSECRET1\nSECRET2\n"))
    lines: list[str] = []
    with Catalog.open(workspace.catalog_url) as catalog, pytest.raises(PullStopped) as caught:
        pull_cohort(workspace, catalog, node, rows, cohort_name="c", progress=lines.append,
                    retry=Retry(attempts=3, first_delay=0.01))  # fmt: skip
    report = caught.value.report
    assert [r.status for r in report.rows] == [RowStatus.NOT_ASKED, RowStatus.NOT_ASKED]
    assert "stopped at row 2: cannot reach clinical" in str(caught.value)
    assert "(after 3 attempts)" in str(caught.value)
    assert [line.rsplit(" in ", 1)[1] for line in lines] == ["0.01 s", "0.02 s"]
    assert (workspace.private / "pulls" / "c-clinical.csv").read_text().count("not-asked") == 2
    assert not any("SECRET" in text for text in [str(caught.value), *lines])

    assert method_for(node) is PullMethod.GET
    move_only = PacsNode("old", "OLD", "127.0.0.1", 104, frozenset({NodeRole.QUERY}))
    assert method_for(move_only) is PullMethod.MOVE
    with pytest.raises(NetworkError, match='does not have the "get" role'):
        method_for(move_only, PullMethod.GET)
    with pytest.raises(NetworkError, match="not a node we pull from"):
        method_for(PacsNode("r", "R", "127.0.0.1", 104))
