"""The review app's records: one-time tokens, idle sessions, the PHI access log, progress."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from pipeline.catalog import (
    AccessRefused,
    Catalog,
    CatalogError,
    Decision,
    InputKind,
    ItemState,
    PhiView,
    ReviewProgress,
    ReviewReason,
    StateChange,
    UnknownItem,
)
from pipeline.catalog.engine import create_catalog_engine
from pipeline.catalog.reviewing import secret_hash
from tests.catalog.conftest import sha, staged

HOUR = dt.timedelta(hours=1)


def _texts(catalog_url: str) -> str:
    """Every value of the three tables, as one string (to look for secrets in)."""
    engine, _ = create_catalog_engine(catalog_url)
    try:
        with engine.connect() as connection:
            return repr(
                [
                    list(connection.execute(sa.text(f"SELECT * FROM {table}")))
                    for table in ("login_tokens", "review_sessions", "phi_views")
                ]
            )
    finally:
        engine.dispose()


def test_a_token_opens_one_session_and_only_hashes_are_kept(
    catalog: Catalog, catalog_url: str
) -> None:
    token = catalog.issue_login_token(" ada ", ttl=HOUR)
    other = catalog.issue_login_token("ada", ttl=HOUR)
    assert token != other and len(token) >= 40
    secret, session = catalog.open_session(token)
    assert session.reviewer == "ada" and len(session.csrf_token) >= 40
    assert session.created_at == session.last_seen_at
    with pytest.raises(AccessRefused, match="unknown, used or expired") as refused:
        catalog.open_session(token)
    assert token not in str(refused.value)
    with pytest.raises(AccessRefused):
        catalog.open_session("not-a-token")
    with pytest.raises(AccessRefused, match="no login token"):
        catalog.open_session("")
    stored = _texts(catalog_url)
    assert token not in stored and secret not in stored and secret_hash(token) in stored
    assert secret_hash(secret) in stored
    # The other token is still good, and gives another session.
    secret2, session2 = catalog.open_session(other)
    assert secret2 != secret and session2.session_id != session.session_id
    assert session2.csrf_token != session.csrf_token


def test_an_expired_token_is_refused(catalog: Catalog) -> None:
    token = catalog.issue_login_token("ada", ttl=dt.timedelta(milliseconds=50))
    time.sleep(0.1)
    with pytest.raises(AccessRefused):
        catalog.open_session(token)
    with pytest.raises(CatalogError, match="positive duration"):
        catalog.issue_login_token("ada", ttl=dt.timedelta(0))
    with pytest.raises(CatalogError, match="reviewer's name"):
        catalog.issue_login_token("  ", ttl=HOUR)


def test_sessions_are_touched_expire_when_idle_and_can_be_revoked(catalog: Catalog) -> None:
    secret, session = catalog.open_session(catalog.issue_login_token("ada", ttl=HOUR))
    touched = catalog.touch_session(secret, idle=HOUR)
    assert touched is not None and touched.session_id == session.session_id
    assert touched.last_seen_at >= session.last_seen_at
    assert touched.csrf_token == session.csrf_token
    assert catalog.touch_session("a guess", idle=HOUR) is None
    assert catalog.touch_session("", idle=HOUR) is None

    short = dt.timedelta(milliseconds=150)
    for _ in range(3):  # each touch resets the idle time
        time.sleep(0.05)
        assert catalog.touch_session(secret, idle=short) is not None
    time.sleep(0.25)
    assert catalog.touch_session(secret, idle=short) is None  # idle too long: revoked
    assert catalog.touch_session(secret, idle=HOUR) is None  # and stays so

    secret2, _ = catalog.open_session(catalog.issue_login_token("bob", ttl=HOUR))
    catalog.revoke_session(secret2)
    catalog.revoke_session("unknown")  # nothing to do
    assert catalog.touch_session(secret2, idle=HOUR) is None


def test_phi_views_are_logged_append_only(catalog: Catalog, catalog_url: str, run: int) -> None:
    catalog.register([(sha(1), InputKind.DICOM, 10)], run)
    _, ada = catalog.open_session(catalog.issue_login_token("ada", ttl=HOUR))
    _, bob = catalog.open_session(catalog.issue_login_token("bob", ttl=HOUR))
    catalog.record_phi_view(ada.session_id, sha(1), PhiView.IMAGE)
    catalog.record_phi_view(bob.session_id, sha(1), PhiView.ORIGINAL_HEADER)
    views = catalog.phi_views()
    assert [(v.reviewer, v.session_id, v.sha256, v.what) for v in views] == [
        ("ada", ada.session_id, sha(1), PhiView.IMAGE),
        ("bob", bob.session_id, sha(1), PhiView.ORIGINAL_HEADER),
    ]
    assert views[0].at <= views[1].at and views[0].at.tzinfo is not None
    with pytest.raises(UnknownItem):
        catalog.record_phi_view(ada.session_id, sha(2), PhiView.IMAGE)
    with pytest.raises(CatalogError, match="no review session"):
        catalog.record_phi_view(9999, sha(1), PhiView.IMAGE)
    with pytest.raises(CatalogError, match="sha256"):
        catalog.record_phi_view(ada.session_id, "/a/path.dcm", PhiView.IMAGE)
    engine, _ = create_catalog_engine(catalog_url)
    try:
        for statement in ("UPDATE phi_views SET reviewer = 'x'", "DELETE FROM phi_views"):
            with (
                pytest.raises(sa_exc.DatabaseError, match="append-only"),
                engine.begin() as connection,
            ):
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert len(catalog.phi_views()) == 2


def test_progress_and_decided_reviews(catalog: Catalog, run: int) -> None:
    assert catalog.review_progress() == ReviewProgress(0, 0)
    queued = []
    for n in range(3):
        catalog.register([(sha(n), InputKind.DICOM, 10)], run)
        staged(catalog, run, sha(n))
        catalog.transition(
            [
                StateChange(sha(n), ItemState.PROCESSED),
                StateChange(sha(n), ItemState.NEEDS_REVIEW, ReviewReason.SPOT_CHECK.value),
            ],
            run,
        )
        queued.append(catalog.enqueue_review(sha(n), [ReviewReason.SPOT_CHECK], run))
    catalog.decide(queued[0], Decision.APPROVE, reviewer="ada", reason="", ruleset_version="r")
    catalog.decide(queued[1], Decision.REJECT, reviewer="ada", reason="a face", ruleset_version="r")
    catalog.decide(queued[0], Decision.REJECT, reviewer="bob", reason="text", ruleset_version="r")
    assert catalog.review_progress() == ReviewProgress(2, 3)
    decided = catalog.decided_reviews()
    assert [(d.queue_id, d.decision, d.reviewer) for d in decided] == [
        (queued[0], Decision.REJECT, "bob"),
        (queued[1], Decision.REJECT, "ada"),
    ]
