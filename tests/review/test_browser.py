"""The review app in a real browser, then the catalog: the core path a reviewer takes.

Open the printed URL (the address bar ends clean), open an item and see its
image, approve one, reject one with a reason, redact one by drawing a box
with the mouse, decide one with a keyboard shortcut, revisit a decision;
then the catalog holds the decisions, the box, the states and the PHI
views.  Plain HTTP checks against the same process follow (a used token, a
wrong host, no session), and the last test reads the process's output: the
token is printed once, to standard output, and is in no log line.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from pipeline.catalog import (
    BoxSource,
    Catalog,
    Decision,
    ItemState,
    PhiView,
    ReviewItem,
    ReviewReason,
)
from pipeline.workspace import Workspace
from tests.review.conftest import REVIEWER, RunningApp

# One reviewer's session, in order: the tests of this module share one app
# process and its catalog, so they run on one worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("review-browser")


@pytest.fixture(scope="module")
def image_items(queued_workspace: Workspace) -> list[ReviewItem]:
    """Queued DICOM inputs that have a cleaned image (the ones a reviewer looks at)."""
    with Catalog.open(queued_workspace.catalog_url) as catalog:
        pending = catalog.pending_reviews()
        dicom = {o.input_sha256 for o in catalog.outputs_of(p.sha256 for p in pending)
                 if o.area == "dicom"}  # fmt: skip
    items = [item for item in pending if item.sha256 in dicom]
    assert len(items) >= 5
    return items


@pytest.fixture(scope="module")
def page(browser: Any, review_app: RunningApp) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def _until(page: Any, function: str, timeout: float = 10.0) -> None:
    """Poll ``function`` (JavaScript source) in the page until it returns true.

    Not ``page.wait_for_function``: when its first check fails it polls by
    evaluating a string, which the app's Content-Security-Policy forbids
    (no 'unsafe-eval'); ``evaluate`` calls a function, which CSP allows.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(function):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {function}"
        time.sleep(0.05)


def _natural_width(page: Any, selector: str) -> int:
    _until(page, f"() => document.querySelector('{selector}').complete && "
                 f"document.querySelector('{selector}').naturalWidth > 0")  # fmt: skip
    width: int = page.eval_on_selector(selector, "image => image.naturalWidth")
    return width


def test_the_token_url_opens_a_session_and_ends_clean(page: Any, review_app: RunningApp) -> None:
    page.goto(review_app.login_url)
    assert page.url == f"{review_app.base}/"
    assert "token" not in page.url
    assert page.locator("#progress").inner_text().startswith("0 decided of ")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert review_app.token not in cookie["value"]


def test_the_queue_filters_by_reason_and_study(page: Any, review_app: RunningApp) -> None:
    page.goto(f"{review_app.base}/?reason=pixel-findings")
    rows = page.locator("#pending tbody tr")
    assert rows.count() >= 1
    assert all("pixel-findings" in rows.nth(n).inner_text() for n in range(rows.count()))
    page.goto(f"{review_app.base}/")
    everything = page.locator("#pending tbody tr").count()
    study = page.locator("select[name=study] option").nth(1).get_attribute("value")
    page.select_option("select[name=study]", study)
    page.click("form.filters button")
    assert f"study={study}" in page.url
    assert 0 < page.locator("#pending tbody tr").count() < everything


def test_approve_reject_redact_in_the_browser(
    page: Any, review_app: RunningApp, image_items: list[ReviewItem]
) -> None:
    first, second, third = image_items[:3]
    page.goto(f"{review_app.base}/item/{first.queue_id}")
    assert _natural_width(page, "#original") > 0
    assert _natural_width(page, "#cleaned") > 0
    assert page.locator("#changes tbody tr").count() > 1  # the header before -> after
    assert "approve" in page.locator(".shortcuts").inner_text()

    page.click("#approve")  # the next pending item opens
    page.wait_for_url(f"{review_app.base}/item/*")
    assert page.url != f"{review_app.base}/item/{first.queue_id}"

    page.goto(f"{review_app.base}/item/{second.queue_id}")
    page.click("#reject")  # no reason: refused in the page
    assert page.locator("#form-error").is_visible()
    assert page.url == f"{review_app.base}/item/{second.queue_id}"
    page.fill("#reason", "a face is recognisable")
    page.click("#reject")
    page.wait_for_url(lambda url: not url.endswith(f"/item/{second.queue_id}"))

    page.goto(f"{review_app.base}/item/{third.queue_id}")
    _natural_width(page, "#original")
    for box in page.locator("input.accept").all():  # leave out what OCR found
        box.uncheck()
    area = page.locator("#overlay").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.1, area["y"] + area["height"] * 0.1)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.4, area["y"] + area["height"] * 0.3, steps=5)
    page.mouse.up()
    assert page.locator("#drawn-list li").count() == 1
    assert "frame 1" in page.locator("#drawn-list").inner_text()
    page.click("#redact")
    page.wait_for_url(lambda url: not url.endswith(f"/item/{third.queue_id}"))


def test_a_shortcut_decides_and_a_decision_can_be_revisited(
    page: Any, review_app: RunningApp, image_items: list[ReviewItem]
) -> None:
    fourth, second = image_items[3], image_items[1]
    page.goto(f"{review_app.base}/item/{fourth.queue_id}")
    _natural_width(page, "#original")
    page.keyboard.press("a")
    page.wait_for_url(lambda url: not url.endswith(f"/item/{fourth.queue_id}"))

    page.goto(f"{review_app.base}/")
    assert page.locator("#decided").inner_text().count("reject") >= 1
    page.goto(f"{review_app.base}/item/{second.queue_id}")  # rejected above
    assert "a face is recognisable" in page.locator("#history").inner_text()
    page.fill("#reason", "on second look: no face")
    page.click("#approve")
    page.wait_for_url(lambda url: not url.endswith(f"/item/{second.queue_id}"))
    page.goto(f"{review_app.base}/item/{second.queue_id}")
    assert page.locator("#history tbody tr").count() == 2


def test_the_catalog_holds_what_the_reviewer_did(
    queued_workspace: Workspace, review_app: RunningApp, image_items: list[ReviewItem]
) -> None:
    first, second, third, fourth = image_items[:4]
    with Catalog.open(queued_workspace.catalog_url) as catalog:
        (approved,) = catalog.decisions(first.sha256)
        assert approved.decision is Decision.APPROVE and approved.reviewer == REVIEWER
        assert len(approved.ruleset_version) == 16  # the workspace's rule-set hash
        assert catalog.state_of(first.sha256) is ItemState.VERIFIED

        rejected, reapproved = catalog.decisions(second.sha256)
        assert rejected.decision is Decision.REJECT
        assert rejected.reason == "a face is recognisable"
        assert reapproved.decision is Decision.APPROVE
        assert reapproved.decided_at >= rejected.decided_at

        (redacted,) = catalog.decisions(third.sha256)
        assert redacted.decision is Decision.REDACT
        (box,) = redacted.boxes
        assert box.source is BoxSource.DRAWN and box.frame == 0
        # The mouse went from 10% to 40% across and from 10% to 30% down the image.
        (output,) = catalog.outputs_of([third.sha256])
        staged = queued_workspace.staging / output.area / output.relpath
        ds = pydicom.dcmread(staged, stop_before_pixels=True)
        assert abs(box.width - 0.3 * ds.Columns) <= 0.05 * ds.Columns + 2
        assert abs(box.height - 0.2 * ds.Rows) <= 0.05 * ds.Rows + 2
        assert catalog.redaction_boxes(third.sha256) == (box,)
        assert catalog.state_of(third.sha256) is ItemState.QUARANTINED

        (by_key,) = catalog.decisions(fourth.sha256)
        assert by_key.decision is Decision.APPROVE

        views = catalog.phi_views()
        assert {v.reviewer for v in views} == {REVIEWER}
        seen = {(v.sha256, v.what) for v in views}
        for item in (first, second, third, fourth):
            assert (item.sha256, PhiView.IMAGE) in seen
            assert (item.sha256, PhiView.ORIGINAL_HEADER) in seen
        progress = catalog.review_progress()
        assert progress.decided == 4


def test_plain_requests_are_refused(review_app: RunningApp) -> None:
    with httpx.Client(base_url=review_app.base, follow_redirects=False) as client:
        assert client.get("/").status_code == 401
        assert client.get(review_app.login_url).status_code == 403  # used by the browser
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400
        response = client.post("/logout", data={})
        assert response.status_code == 401
        for name in ("content-security-policy", "referrer-policy", "cache-control"):
            assert name in response.headers
        assert "server" not in response.headers


def test_an_item_whose_original_left_incoming_still_opens(
    review_app: RunningApp, queued_workspace: Workspace, image_items: list[ReviewItem]
) -> None:
    """The cleaned image and the history stay reviewable; the page says what is missing."""
    item = image_items[-1]
    with Catalog.open(queued_workspace.catalog_url) as catalog:
        token = catalog.issue_login_token(REVIEWER, ttl=dt.timedelta(minutes=1))
        (path,) = {os.fsdecode(p) for p in catalog.paths_of(item.sha256)}
    moved = Path(path).with_name(Path(path).name + ".away")
    os.rename(path, moved)
    try:
        with httpx.Client(base_url=review_app.base, follow_redirects=True) as client:
            assert client.get("/login", params={"token": token}).status_code == 200
            response = client.get(f"/item/{item.queue_id}")
            assert response.status_code == 200, response.text
            assert 'class="unavailable"' in response.text
            assert client.get(f"/item/{item.queue_id}/cleaned/0.png").status_code == 200
            refused = client.get(f"/item/{item.queue_id}/original/0.png")
            assert refused.status_code == 404 and path not in refused.text
    finally:
        os.rename(moved, path)


def test_the_reviewer_chooses_the_display_window(
    review_app: RunningApp, page: Any, image_items: list[ReviewItem]
) -> None:
    """Centre and width typed on the page re-render both images; a nonsense window is refused."""
    item = image_items[-1]
    page.goto(f"{review_app.base}/item/{item.queue_id}")
    default = page.locator("#cleaned").get_attribute("src")
    page.fill("#window-centre", "40")
    page.fill("#window-width", "80")
    page.dispatch_event("#window-width", "change")
    _until(page, "() => document.getElementById('cleaned').src.includes('centre=40')")
    _until(page, "() => document.getElementById('cleaned').complete")
    windowed = page.locator("#cleaned").get_attribute("src")
    assert windowed != default and "width=80" in windowed
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=review_app.base, cookies=cookies) as client:
        plain = client.get(f"/item/{item.queue_id}/cleaned/0.png")
        narrow = client.get(f"/item/{item.queue_id}/cleaned/0.png?centre=40&width=80")
        assert plain.status_code == narrow.status_code == 200
        assert plain.content != narrow.content  # the same frame, windowed otherwise
        refused = client.get(f"/item/{item.queue_id}/cleaned/0.png?centre=40&width=-1")
        assert refused.status_code == 400
    page.evaluate("() => document.activeElement.blur()")  # keys typed in a field are text
    page.keyboard.press("w")  # back to the file's own window
    _until(page, "() => !document.getElementById('cleaned').src.includes('centre=')")


def test_an_entry_whose_defacing_failed_warns_before_approval(
    review_app: RunningApp, page: Any, queued_workspace: Workspace, image_items: list[ReviewItem]
) -> None:
    """Approving it releases a face: the page says so first, in words a reviewer cannot miss."""
    item = image_items[-1]
    with Catalog.open(queued_workspace.catalog_url) as catalog:
        run = catalog.runs()[-1].run_id
        assert (
            catalog.enqueue_review(item.sha256, [ReviewReason.DEFACE_FAILED], run) == item.queue_id
        )
    page.goto(f"{review_app.base}/item/{item.queue_id}")
    warning = page.locator("p.warning")
    assert warning.count() == 1 and "NOT removed" in warning.inner_text()
    page.goto(f"{review_app.base}/item/{image_items[0].queue_id}")
    assert page.locator("p.warning").count() == 0


def test_the_token_is_printed_once_and_logged_nowhere(review_app: RunningApp, page: Any) -> None:
    printed = review_app.stdout.read_text()
    assert printed.count(review_app.token) == 1
    logged = review_app.stderr.read_text()
    assert "Started server process" in logged
    assert review_app.token not in logged and "token=" not in logged
    (cookie,) = page.context.cookies()
    assert cookie["value"] not in logged and cookie["value"] not in printed
