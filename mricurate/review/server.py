"""Serving the review app: a loopback socket, a one-time login URL, uvicorn with no access log.

uvicorn's access log writes each request line, query string included: the
login URL's token would end up in whatever keeps the terminal's output.  So
the access log is off (and its logger has no handler), and every line uvicorn
or the app logs goes through :class:`NoSecrets`, which blanks any
``token=`` value, as a second guard.  The login URL itself is printed once,
to the terminal (standard output), never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import uvicorn

from mricurate.review.app import create_app
from mricurate.review.context import ReviewSettings
from pipeline.catalog import Catalog
from pipeline.workspace import Workspace

#: The only address the app listens on: this machine (use an SSH tunnel from elsewhere).
HOST = "127.0.0.1"
_SECRET_PARAMETER = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class NoSecrets(logging.Filter):
    """Blanks the value of any ``token=`` in a log line (its message and its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SECRET_PARAMETER.sub(r"\1<hidden>", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging: its server messages to stderr through :class:`NoSecrets`, no access log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"no_secrets": {"()": NoSecrets}},
        "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
        "handlers": {
            "terminal": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
                "filters": ["no_secrets"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["terminal"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "mricurate.review": {"handlers": ["terminal"], "level": "INFO", "propagate": False},
        },
    }


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: any free port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError as exc:
        listener.close()
        from pipeline.errors import CurationError

        raise CurationError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}): choose another --port, "
            "or 0 for any free one"
        ) from None
    listener.listen(64)
    listener.set_inheritable(True)
    return listener


@dataclass
class ReviewServer:
    """One running review app: its socket, its catalog, its uvicorn server and login URL."""

    catalog: Catalog
    listener: socket.socket
    server: uvicorn.Server
    login_url: str

    @classmethod
    def prepare(
        cls,
        workspace: Workspace,
        *,
        reviewer: str,
        port: int = 0,
        ruleset_version: str | None = None,
    ) -> ReviewServer:
        """Bind, open the catalog, issue the one-time token; nothing is served yet."""
        if ruleset_version is None:
            from pipeline.workspace.ruleset import workspace_ruleset_version

            ruleset_version = workspace_ruleset_version(workspace)
        config = workspace.config
        settings = ReviewSettings(
            idle=dt.timedelta(seconds=config.session_idle_seconds),
            ruleset_version=ruleset_version,
        )
        listener = bind(port)
        catalog = Catalog.open(workspace.catalog_url)
        try:
            token = catalog.issue_login_token(
                reviewer, ttl=dt.timedelta(seconds=config.login_token_seconds)
            )
            app = create_app(workspace, catalog, settings)
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    log_config=log_config(),
                    access_log=False,
                    proxy_headers=False,  # nothing stands in front: no X-Forwarded-* believed
                    server_header=False,
                    lifespan="off",
                    timeout_graceful_shutdown=5,
                )
            )
        except BaseException:
            catalog.close()
            listener.close()
            raise
        actual = listener.getsockname()[1]
        return cls(catalog, listener, server, f"http://{HOST}:{actual}/login?token={token}")

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def run(self) -> None:
        """Serve until SIGINT / SIGTERM (or :meth:`stop`); then close the catalog."""
        try:
            self.server.run(sockets=[self.listener])
        finally:
            self.listener.close()
            self.catalog.close()

    def stop(self) -> None:
        self.server.should_exit = True


def serve(
    workspace: Workspace,
    *,
    reviewer: str,
    port: int = 0,
    terminal: TextIO | None = None,
    announce: Callable[[ReviewServer], None] | None = None,
) -> None:
    """Print the one-time login URL to the terminal, then serve until stopped."""
    running = ReviewServer.prepare(workspace, reviewer=reviewer, port=port)
    out = terminal or sys.stdout
    idle = workspace.config.session_idle_seconds
    print(
        f"Review queue of {workspace.root} for {reviewer}, on {HOST}:{running.port} only.\n"
        f"Open this link once, within {workspace.config.login_token_seconds:g} s (it opens "
        "one session and then no longer works; keep it private: it gives access to PHI):\n"
        f"\n    {running.login_url}\n\n"
        f"A session ends after {idle:g} s without a request. Ctrl-C stops.",
        file=out,
        flush=True,
    )
    if announce is not None:
        announce(running)
    running.run()
