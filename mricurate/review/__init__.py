"""``mricurate review``: the web app on the catalog's review queue (Starlette + Jinja2, uvicorn).

Reviewers see PHI, so the app is built like one that guards it: bound to
127.0.0.1, opened by a one-time link printed at the terminal whose token is
exchanged for a server-side session (HttpOnly, SameSite=Strict cookie;
idle sessions expire), a CSRF token on every form, only the package's own
scripts and styles under a strict Content-Security-Policy, no access log,
and every view of an image or of an original header appended to the
catalog's PHI access log.

- :mod:`mricurate.review.server`: the socket, the login URL, uvicorn;
- :mod:`mricurate.review.app`: the ASGI app and its middleware;
- :mod:`mricurate.review.security`: headers, sessions, CSRF;
- :mod:`mricurate.review.pages`: the queue, an item, its frames, decisions.
"""

from __future__ import annotations

from mricurate.review.app import create_app
from mricurate.review.context import ReviewSettings
from mricurate.review.server import ReviewServer, serve

__all__ = ["ReviewServer", "ReviewSettings", "create_app", "serve"]
