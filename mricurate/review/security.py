"""What guards the review app's PHI on every request: headers, hosts, sessions, CSRF.

Two plain ASGI middlewares (no BaseHTTPMiddleware: they must see every
response, the refusals of the inner layers included, and replay a body they
have read):

- :class:`Guarded`, the outermost: adds :data:`SECURITY_HEADERS` to every
  response (no referrer, no caching, a strict Content-Security-Policy: only
  this app's own scripts, styles and images, no inline script, no frame),
  and turns an exception into a bare 500 whose traceback goes to the
  private log only (an exception's text can hold PHI: a path, a value).
- :class:`SessionGate`, inside Starlette's TrustedHostMiddleware: every
  request but the login link's needs a live session (the cookie's secret,
  checked and touched in the catalog, so an idle session expires and a
  revoked one is refused), and every request that is not GET/HEAD needs
  the session's CSRF token in its form, compared with
  :func:`hmac.compare_digest`, and an ``Origin`` (when the browser sends
  one) of this very host.  The form is parsed here
  (``application/x-www-form-urlencoded`` only: another body has no token;
  at most :data:`MAX_FORM_BYTES`) and left in ``scope["state"]["form"]``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.catalog import ReviewSession

LOG = logging.getLogger("mricurate.review")

#: The session cookie (HttpOnly, SameSite=Strict, Path=/; no Max-Age: gone with the browser).
COOKIE = "mricurate_review"
#: Paths open without a session: the login link itself.
OPEN_PATHS = frozenset({"/login"})
#: A form larger than this is refused (a decision with its boxes is a few kB).
MAX_FORM_BYTES = 256 * 1024
_SAFE_METHODS = frozenset({"GET", "HEAD"})

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

#: Sent with every response, whatever produced it.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class Guarded:
    """Security headers on every response; an exception becomes a bare 500, logged privately."""

    def __init__(self, app: ASGIApp, *, private_log: Path) -> None:
        self.app = app
        self.private_log = private_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name.decode("latin-1").lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in SECURITY_HEADERS.items()
                    if name.lower() not in names
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Never the exception's text on the terminal: it can hold a path or a value.
            LOG.error("a request failed (%s); the traceback is in %s", type(exc).__name__,
                      self.private_log)  # fmt: skip
            self._keep(traceback.format_exc())
            if not started:
                response = PlainTextResponse(
                    "internal error: the traceback is in the workspace's private log",
                    status_code=500,
                )
                await response(scope, receive, send_with_headers)

    def _keep(self, text: str) -> None:
        try:
            self.private_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self.private_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(descriptor, "a", encoding="utf-8") as log:
                log.write(f"{dt.datetime.now(dt.UTC).isoformat()}\n{text}\n")
        except OSError:
            LOG.error("the private log %s cannot be written", self.private_log)


#: ``touch(secret) -> session or None``: the catalog's touch_session with the idle time bound.
Touch = Callable[[str], ReviewSession | None]


class SessionGate:
    """A live session for every request but the login link; the CSRF token on every POST."""

    def __init__(self, app: ASGIApp, *, touch: Touch) -> None:
        self.app = app
        self.touch = touch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        secret = _cookie(headers.get("cookie", ""))
        session = await anyio.to_thread.run_sync(self.touch, secret) if secret else None
        if session is None:
            await refused(
                401,
                "No open session: it expired, was closed, or was never opened. Open a new "
                "link: restart `mricurate review` and open the URL it prints.",
            )(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["session"] = session
        if scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        # Under Referrer-Policy no-referrer a browser sends its form posts with
        # ``Origin: null``; another site's origin is refused outright.
        origin = headers.get("origin", "null")
        if origin not in ("null", f"{scope.get('scheme', 'http')}://{headers.get('host')}"):
            await refused(403, "This request came from another site.")(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await refused(413, "This form is too large.")(scope, receive, send)
            return
        # Only the app's own forms are read: any other body carries no token.
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        form = (
            dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            if content_type == "application/x-www-form-urlencoded"
            else {}
        )
        if not _same_token(form.get("csrf", ""), session.csrf_token):
            await refused(
                403, "This form's CSRF token is missing or wrong: reload the page and try again."
            )(scope, receive, send)
            return
        state["form"] = form
        await self.app(scope, _replay(body), send)


def refused(status: int, text: str) -> Response:
    """A plain refusal (no template: it must work whatever failed)."""
    return PlainTextResponse(text, status_code=status)


def _same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])}  # fmt: skip


def _cookie(header: str) -> str:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # a malformed Cookie header is no session
        return ""
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else ""


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body, or None past :data:`MAX_FORM_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
