"""The link table absorbed from a real links.sqlite, and withdrawal through it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.catalog import Catalog, CatalogError, InputKind, ItemState, StateChange
from pipeline.catalog.engine import create_catalog_engine
from pipeline.catalog.links import LINK_COLUMNS, read_links
from pipeline.identity.links import LinkRecord
from pipeline.private_store import PrivateStore
from tests.catalog.conftest import sha


def link(patient: str, issuer: str, subject: str, n: int) -> LinkRecord:
    return LinkRecord(
        patient_id=patient, issuer=issuer, patient_name="DOE^JOHN", subject=subject,
        day_offset=-n, study_uid=f"1.2.3.{n}", new_study_uid=f"2.25.{n}",
        series_uid=f"1.2.3.{n}.1", new_series_uid=f"2.25.{n}1", sop_uid=f"1.2.3.{n}.1.1",
        new_sop_uid=f"2.25.{n}11", frame_of_reference_uid=f"1.2.3.{n}.9",
    )  # fmt: skip


@pytest.fixture
def links_sqlite(tmp_path: Path) -> Path:
    """A links.sqlite written by the private store itself, as a deid run leaves it."""
    store = PrivateStore(tmp_path / "private")
    store.record_links(
        "run-a",
        [
            (sha("mr-1"), "sub-A/st/se/1.dcm", link("PID-1", "HOSP", "sub-A", 1)),
            (sha("mr-2"), "sub-A/st/se/2.dcm", link("PID-1", "HOSP", "sub-A", 2)),
            (sha("mr-3"), "sub-B/st/se/1.dcm", link("PID-1", "OTHER", "sub-B", 3)),
            (sha("mr-4"), "sub-C/st/se/1.dcm", link("PID-2", "", "sub-C", 4)),
        ],
    )
    store.record_links(
        "run-b", [(sha("mr-1"), "sub-A/st/se/1.dcm", link("PID-1", "HOSP", "sub-A", 1))]
    )
    store.close()
    return store.db_path


def test_every_row_and_column_is_absorbed_once(
    catalog: Catalog, catalog_url: str, links_sqlite: Path
) -> None:
    assert catalog.import_links(links_sqlite) == 5
    assert catalog.import_links(links_sqlite) == 0  # idempotent
    with sqlite3.connect(links_sqlite) as source:
        expected = sorted(source.execute(f"SELECT {', '.join(LINK_COLUMNS)} FROM links").fetchall())
    engine, _ = create_catalog_engine(catalog_url)
    with engine.connect() as connection:
        imported = sorted(
            tuple(row)
            for row in connection.execute(sa.text(f"SELECT {', '.join(LINK_COLUMNS)} FROM links"))
        )
    engine.dispose()
    assert imported == expected
    assert {row[LINK_COLUMNS.index("patient_name")] for row in imported} == {"DOE^JOHN"}


def test_subjects_of_a_patient_by_issuer(catalog: Catalog, links_sqlite: Path) -> None:
    catalog.import_links(links_sqlite)
    assert catalog.subjects_of_patient("PID-1") == {"sub-A", "sub-B"}
    assert catalog.subjects_of_patient("PID-1", "HOSP") == {"sub-A"}
    assert catalog.subjects_of_patient("PID-2", "") == {"sub-C"}
    assert catalog.subjects_of_patient("PID-2", "HOSP") == set()
    assert catalog.subjects_of_patient("PID-9") == set()


def test_withdrawal_finds_the_inputs_through_the_links(
    catalog: Catalog, run: int, links_sqlite: Path
) -> None:
    items = [sha(f"mr-{n}") for n in (1, 2, 3, 4)]
    catalog.register([(item, InputKind.DICOM, 1) for item in items], run)
    catalog.transition([StateChange(items[1], ItemState.QUARANTINED, "unreadable")], run)
    catalog.import_links(links_sqlite)
    (subject,) = catalog.subjects_of_patient("PID-1", "HOSP")
    assert catalog.withdraw_subject(subject, run) == {items[0], items[1]}
    assert [catalog.state_of(item) for item in items] == [
        ItemState.WITHDRAWN, ItemState.WITHDRAWN, ItemState.NEW, ItemState.NEW,
    ]  # fmt: skip
    assert catalog.history(items[1])[-2:][0].to_state is ItemState.QUARANTINED


def test_a_link_table_of_an_older_version_reads_missing_columns_as_null(tmp_path: Path) -> None:
    old = tmp_path / "links.sqlite"
    with sqlite3.connect(old) as db:  # the first release had neither column
        db.execute(
            "CREATE TABLE links (sha256 TEXT, run_id TEXT, patient_id TEXT, issuer TEXT, "
            "patient_name TEXT, subject TEXT, day_offset INTEGER, study_uid TEXT, new_study_uid TEXT, "
            "series_uid TEXT, new_series_uid TEXT, sop_uid TEXT, new_sop_uid TEXT, output_path TEXT, "
            "PRIMARY KEY (sha256, run_id))"
        )
        db.execute(
            "INSERT INTO links (sha256, run_id, patient_id, subject) VALUES (?, 'r', 'P', 'sub-X')",
            (sha(1),),
        )
    db.close()
    ((row,),) = list(read_links(old))
    assert (row["subject"], row["frame_of_reference_uid"], row["commit_id"]) == (
        "sub-X",
        None,
        None,
    )
    assert list(row) == list(LINK_COLUMNS)


def test_not_a_link_table(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no link table to import"):
        list(read_links(tmp_path / "missing.sqlite"))
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CatalogError, match="not a SQLite file"):
        list(read_links(garbage))
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(CatalogError, match="has no link table"):
        list(read_links(other))
