"""The review app refuses what it must, in process (Starlette's TestClient, no server, no browser).

An empty workspace is enough: what is tested is the guard around the pages
(sessions, their idle expiry, the one-time token, CSRF, hosts, headers).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mricurate.review import ReviewSettings, create_app
from mricurate.review.security import COOKIE, SECURITY_HEADERS
from mricurate.review.server import NoSecrets
from pipeline.catalog import Catalog
from pipeline.workspace import Workspace, init_workspace

BASE = "http://127.0.0.1"
IDLE = dt.timedelta(seconds=0.6)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return init_workspace(tmp_path_factory.mktemp("review-security") / "w")


@pytest.fixture(scope="module")
def catalog(workspace: Workspace) -> Iterator[Catalog]:
    with Catalog.open(workspace.catalog_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def app_client(workspace: Workspace, catalog: Catalog) -> Iterator[TestClient]:
    app = create_app(workspace, catalog, ReviewSettings(idle=IDLE, ruleset_version="rules-test"))
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client


def login(client: TestClient, catalog: Catalog) -> str:
    """A new session in ``client`` (its cookie set); returns its CSRF token."""
    client.cookies.clear()
    token = catalog.issue_login_token("ada", ttl=HOUR)
    response = client.get(f"/login?token={token}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_token_gives_a_strict_http_only_cookie_once(
    app_client: TestClient, catalog: Catalog
) -> None:
    app_client.cookies.clear()
    token = catalog.issue_login_token("ada", ttl=HOUR)
    first = app_client.get(f"/login?token={token}")
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert {"HttpOnly", "Path=/", "SameSite=strict"} <= {p.strip() for p in cookie.split(";")}
    assert token not in cookie
    app_client.cookies.clear()
    again = app_client.get(f"/login?token={token}")
    assert again.status_code == 403 and "set-cookie" not in again.headers
    assert token not in again.text
    assert app_client.get("/login?token=guess").status_code == 403
    assert app_client.get("/login").status_code == 403


def test_every_page_needs_a_session(app_client: TestClient) -> None:
    app_client.cookies.clear()
    for path in ("/", "/item/1", "/item/1/original/0.png", "/static/review.js"):
        response = app_client.get(path)
        assert response.status_code == 401, path
        assert "mricurate review" in response.text
    app_client.cookies.set(COOKIE, "forged")
    assert app_client.get("/").status_code == 401
    response = app_client.post("/item/1/decide", data={"decision": "approve"})
    assert response.status_code == 401


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    app_client: TestClient, catalog: Catalog
) -> None:
    csrf = login(app_client, catalog)
    for data in ({"decision": "approve"}, {"decision": "approve", "csrf": csrf[:-1] + "x"},
                 {"decision": "approve", "csrf": ""}):  # fmt: skip
        response = app_client.post("/item/1/decide", data=data)
        assert response.status_code == 403 and "CSRF" in response.text
    other = app_client.post(
        "/item/1/decide", data={"decision": "approve", "csrf": csrf},
        headers={"origin": "http://evil.example"},
    )  # fmt: skip
    assert other.status_code == 403
    # A browser posts a form under Referrer-Policy no-referrer with Origin: null.
    null = app_client.post(
        "/item/1/decide", data={"decision": "approve", "csrf": csrf}, headers={"origin": "null"}
    )
    assert null.status_code == 400 and "no review 1" in null.text
    as_json = app_client.post("/item/1/decide", json={"decision": "approve", "csrf": csrf})
    assert as_json.status_code == 403  # only the app's own form carries the token
    huge = app_client.post("/item/1/decide", data={"csrf": csrf, "boxes": "x" * 300_000})
    assert huge.status_code == 413
    # With the right token the request passes the guard (no queue entry 1 here).
    passed = app_client.post("/item/1/decide", data={"decision": "approve", "csrf": csrf})
    assert passed.status_code == 400 and "no review 1" in passed.text
    # Logging out is a POST like any other, and ends the session.
    assert app_client.post("/logout", data={}).status_code == 403
    assert app_client.post("/logout", data={"csrf": csrf}).status_code == 200
    assert app_client.get("/").status_code == 401


def test_an_idle_session_expires(app_client: TestClient, catalog: Catalog) -> None:
    login(app_client, catalog)
    for _ in range(3):  # requests keep it alive beyond the idle time in total
        time.sleep(IDLE.total_seconds() / 2)
        assert app_client.get("/").status_code == 200
    time.sleep(IDLE.total_seconds() + 0.2)
    assert app_client.get("/").status_code == 401
    assert app_client.get("/").status_code == 401  # revoked: it does not come back


def test_a_wrong_host_is_refused(app_client: TestClient, catalog: Catalog) -> None:
    login(app_client, catalog)
    assert app_client.get("/", headers={"host": "localhost:8000"}).status_code == 200
    for host in ("evil.example", "127.0.0.1.nip.io", "attacker.localhost"):
        response = app_client.get("/", headers={"host": host})
        assert response.status_code == 400, host
        assert response.headers["referrer-policy"] == "no-referrer"


def test_every_response_has_the_security_headers(app_client: TestClient, catalog: Catalog) -> None:
    csrf = login(app_client, catalog)
    responses = [
        app_client.get("/"),
        app_client.get("/static/review.js"),
        app_client.get("/static/review.css"),
        app_client.get("/no-such-page"),
        app_client.get("/", headers={"host": "evil.example"}),
        app_client.post("/item/1/decide", data={"csrf": csrf}),
    ]
    app_client.cookies.clear()
    responses.append(app_client.get("/"))
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy


def test_pages_are_escaped_and_load_nothing_from_elsewhere(
    app_client: TestClient, catalog: Catalog
) -> None:
    app_client.cookies.clear()
    token = catalog.issue_login_token('<script>alert(1)</script>"><b>', ttl=HOUR)
    app_client.get(f"/login?token={token}")
    page = app_client.get("/?reason=<script>&study=x")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert '"><b>' not in page.text
    for text in (page.text, app_client.get("/static/review.js").text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and "//cdn" not in text


def test_the_log_filter_hides_tokens() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, 'GET "%s" 200', ("/login?token=abc&x=1",), None
    )
    assert NoSecrets().filter(record)
    assert record.getMessage() == 'GET "/login?token=<hidden>&x=1" 200'


def test_errors_keep_their_text_out_of_the_response(
    workspace: Workspace, catalog: Catalog, tmp_path: Path
) -> None:
    """An exception in a page is a bare 500; its text goes to the private log only."""
    app = create_app(workspace, catalog, ReviewSettings(idle=HOUR, ruleset_version="r"))

    def broken(request: object) -> None:
        raise RuntimeError("/hospital/Doe^Jane/IM0001")

    app.router.add_route("/broken", broken)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        token = catalog.issue_login_token("ada", ttl=HOUR)
        client.get(f"/login?token={token}")
        response = client.get("/broken")
    assert response.status_code == 500 and "Doe" not in response.text
    assert response.headers["cache-control"] == "no-store"
    log = workspace.private / "logs" / "review.log"
    assert "Doe^Jane" in log.read_text() and (log.stat().st_mode & 0o077) == 0
