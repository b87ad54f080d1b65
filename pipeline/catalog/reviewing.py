"""What the review app keeps in the catalog: who may look (tokens, sessions) and who looked.

The app is started by a person at a terminal, who gets a one-time login URL
(:meth:`ReviewAccess.issue_login_token`); opening it exchanges the token for
a session (:meth:`ReviewAccess.open_session`), whose secret travels as a
cookie and is checked, and its idle time reset, on every request
(:meth:`ReviewAccess.touch_session`).  Sessions are server-side so they can
expire when idle and be revoked: a signed cookie alone can do neither.  Only
the sha256 of a token or a session secret is stored; they are random and
long (256 bits), so a plain hash is enough (no password stretching).

Every time the app shows an input's PHI (an image, the original header) it
appends to ``phi_views`` (:meth:`ReviewAccess.record_phi_view`); the audit
report counts them (:meth:`ReviewAccess.phi_views`).

:class:`ReviewAccess` is a part of :class:`pipeline.catalog.Catalog` (a base
class of it), kept in its own module because it is its own concern.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, insert, select, update

from pipeline.catalog.columns import DECISION_COLUMNS
from pipeline.catalog.errors import AccessRefused, CatalogError, UnknownItem
from pipeline.catalog.records import (
    DecisionRecord,
    PhiViewRecord,
    ReviewProgress,
    ReviewSession,
    check_sha256,
)
from pipeline.catalog.schema import (
    DecisionRow,
    ItemRow,
    LoginTokenRow,
    PhiViewRow,
    ReviewRow,
    ReviewSessionRow,
)
from pipeline.catalog.states import PhiView

#: Random bytes in a login token and in a session secret.
SECRET_BYTES = 32


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def secret_hash(secret: str) -> str:
    """What the catalog keeps of a token or a session secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def _positive(duration: dt.timedelta, what: str) -> dt.timedelta:
    if not isinstance(duration, dt.timedelta) or duration <= dt.timedelta(0):
        raise CatalogError(f"{what} must be a positive duration (a datetime.timedelta)")
    return duration


class ReviewAccess:
    """Login tokens, review sessions and the PHI access log (part of the Catalog)."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractContextManager[Connection]: ...

        def _read(self) -> AbstractContextManager[Connection]: ...

    def issue_login_token(self, reviewer: str, *, ttl: dt.timedelta) -> str:
        """A new one-time login token for ``reviewer``, valid for ``ttl``; only its hash is kept.

        The caller shows it once (the URL printed at the terminal) and forgets it.
        """
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise CatalogError("a login token needs the reviewer's name")
        _positive(ttl, "a login token's lifetime")
        token = secrets.token_urlsafe(SECRET_BYTES)
        now = _now()
        with self._write() as connection:
            connection.execute(
                insert(LoginTokenRow).values(
                    token_hash=secret_hash(token),
                    reviewer=reviewer.strip(),
                    created_at=now,
                    expires_at=now + ttl,
                    used_at=None,
                )
            )
        return token

    def open_session(self, token: str) -> tuple[str, ReviewSession]:
        """Exchange a login token for a new session: its secret (the cookie) and its record.

        A token opens one session only: the exchange marks it used in the
        same transaction, so two requests with one token cannot both win.

        Raises
        ------
        AccessRefused
            The token is unknown, already used or expired.
        """
        if not isinstance(token, str) or not token:
            raise AccessRefused("no login token was given: open the URL `mricurate review` printed")
        now = _now()
        with self._write() as connection:
            row = connection.execute(
                select(LoginTokenRow.token_id, LoginTokenRow.reviewer)
                .where(
                    LoginTokenRow.token_hash == secret_hash(token),
                    LoginTokenRow.used_at.is_(None),
                    LoginTokenRow.expires_at > now,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise AccessRefused(
                    "this login link is unknown, used or expired: each link opens one "
                    "session; restart `mricurate review` for a new one"
                )
            used = connection.execute(
                update(LoginTokenRow)
                .where(LoginTokenRow.token_id == row.token_id, LoginTokenRow.used_at.is_(None))
                .values(used_at=now)
            )
            if used.rowcount != 1:  # pragma: no cover - the row lock prevents it
                raise AccessRefused("this login link was used at the same moment elsewhere")
            secret = secrets.token_urlsafe(SECRET_BYTES)
            csrf = secrets.token_urlsafe(SECRET_BYTES)
            session_id = connection.execute(
                insert(ReviewSessionRow)
                .values(
                    secret_hash=secret_hash(secret),
                    reviewer=row.reviewer,
                    created_at=now,
                    last_seen_at=now,
                    revoked_at=None,
                    csrf_token=csrf,
                )
                .returning(ReviewSessionRow.session_id)
            ).scalar_one()
        return secret, ReviewSession(session_id, row.reviewer, now, now, csrf)

    def touch_session(self, secret: str, *, idle: dt.timedelta) -> ReviewSession | None:
        """The live session of ``secret``, its last use set to now; None if there is none.

        A session unused for longer than ``idle`` is revoked here and refused
        (None), as are a revoked one and an unknown secret.
        """
        _positive(idle, "a session's idle time")
        if not isinstance(secret, str) or not secret:
            return None
        now = _now()
        with self._write() as connection:
            row = connection.execute(
                select(
                    ReviewSessionRow.session_id,
                    ReviewSessionRow.reviewer,
                    ReviewSessionRow.created_at,
                    ReviewSessionRow.last_seen_at,
                    ReviewSessionRow.csrf_token,
                )
                .where(
                    ReviewSessionRow.secret_hash == secret_hash(secret),
                    ReviewSessionRow.revoked_at.is_(None),
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                return None
            where = ReviewSessionRow.session_id == row.session_id
            if now - row.last_seen_at > idle:
                connection.execute(update(ReviewSessionRow).where(where).values(revoked_at=now))
                return None
            connection.execute(update(ReviewSessionRow).where(where).values(last_seen_at=now))
            return ReviewSession(row.session_id, row.reviewer, row.created_at, now, row.csrf_token)

    def revoke_session(self, secret: str) -> None:
        """End the session of ``secret`` now (logging out); nothing happens for an unknown one."""
        with self._write() as connection:
            connection.execute(
                update(ReviewSessionRow)
                .where(
                    ReviewSessionRow.secret_hash == secret_hash(secret),
                    ReviewSessionRow.revoked_at.is_(None),
                )
                .values(revoked_at=_now())
            )

    def record_phi_view(self, session_id: int, sha256: str, what: PhiView) -> None:
        """Append to the access log: the session's reviewer was shown ``what`` of the input."""
        check_sha256(sha256)
        what = PhiView(what)
        with self._write() as connection:
            reviewer = connection.execute(
                select(ReviewSessionRow.reviewer).where(ReviewSessionRow.session_id == session_id)
            ).scalar_one_or_none()
            if reviewer is None:
                raise CatalogError(f"there is no review session {session_id} in the catalog")
            known = connection.execute(
                select(ItemRow.sha256).where(ItemRow.sha256 == sha256)
            ).scalar_one_or_none()
            if known is None:
                raise UnknownItem(sha256)
            connection.execute(
                insert(PhiViewRow).values(
                    session_id=session_id, reviewer=reviewer, sha256=sha256, what=what, at=_now()
                )
            )

    def phi_views(self) -> list[PhiViewRecord]:
        """The whole PHI access log, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(
                    PhiViewRow.view_id,
                    PhiViewRow.session_id,
                    PhiViewRow.reviewer,
                    PhiViewRow.sha256,
                    PhiViewRow.what,
                    PhiViewRow.at,
                ).order_by(PhiViewRow.view_id)
            )
            return [PhiViewRecord(*row) for row in rows]

    # -- the queue as the app shows it --------------------------------------------------

    def review_progress(self) -> ReviewProgress:
        """Queue entries that have a decision, of every entry ever queued."""
        with self._read() as connection:
            total = connection.execute(select(func.count()).select_from(ReviewRow)).scalar_one()
            decided = connection.execute(
                select(func.count(func.distinct(DecisionRow.queue_id)))
            ).scalar_one()
        return ReviewProgress(decided, total)

    def decided_reviews(self) -> list[DecisionRecord]:
        """The decision in force (the latest) on each decided queue entry, latest first.

        Without their boxes (:meth:`Catalog.decisions` has them): this is the
        list the review app's queue page offers to revisit.
        """
        latest = (
            select(func.max(DecisionRow.decision_id).label("decision_id"))
            .group_by(DecisionRow.queue_id)
            .subquery()
        )
        with self._read() as connection:
            rows = connection.execute(
                select(*DECISION_COLUMNS)
                .join(latest, latest.c.decision_id == DecisionRow.decision_id)
                .order_by(DecisionRow.decision_id.desc())
            )
            return [DecisionRecord(*row) for row in rows]
