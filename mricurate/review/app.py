"""The review app as an ASGI application: :func:`create_app` over one workspace's catalog.

Layers, outermost first: :class:`~mricurate.review.security.Guarded`
(security headers on everything, exceptions kept out of the terminal),
Starlette's ``TrustedHostMiddleware`` (only ``127.0.0.1`` and ``localhost``:
a page of another site whose name was re-pointed at 127.0.0.1, DNS
rebinding, is refused), :class:`~mricurate.review.security.SessionGate`
(a live session, the CSRF token), then the pages
(:mod:`mricurate.review.pages`) and the package's own static files.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mricurate.review import pages
from mricurate.review.context import HERE, ReviewContext, ReviewSettings, templates
from mricurate.review.security import Guarded, SessionGate
from pipeline.catalog import Catalog, ReviewSession
from pipeline.workspace import Workspace

#: Host names the app answers to (the Host header of every request).
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def create_app(workspace: Workspace, catalog: Catalog, settings: ReviewSettings) -> Starlette:
    """The app over ``catalog`` (open; the caller closes it after the app stops)."""
    context = ReviewContext(workspace, catalog, settings, templates())

    def touch(secret: str) -> ReviewSession | None:
        return catalog.touch_session(secret, idle=settings.idle)

    app = Starlette(
        routes=[
            Route("/login", pages.login, methods=["GET"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route("/", pages.queue, methods=["GET"]),
            Route("/item/{queue_id:int}", pages.item, methods=["GET"]),
            Route(
                "/item/{queue_id:int}/{version:str}/{frame:int}.png", pages.frame, methods=["GET"]
            ),
            Route("/item/{queue_id:int}/decide", pages.decide, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(Guarded, private_log=workspace.private / "logs" / "review.log"),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(ALLOWED_HOSTS)),
            Middleware(SessionGate, touch=touch),
        ],
    )
    app.state.review = context
    return app
