"""The review app's pages: login, the queue, an item, its frames, a decision.

Every handler is a plain function (Starlette runs it in its thread pool:
the catalog and the image rendering are blocking calls).  What an item
shows comes from :mod:`pipeline.review` (the one place that opens a queued
input, renders its frames, explains its header and lists its boxes); this
module only lays it out, records who saw what (``record_phi_view``) and
turns a form into a :meth:`Catalog.decide`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mricurate.review.security import COOKIE, refused
from pipeline.catalog import (
    AccessRefused,
    BoxSource,
    CatalogError,
    Decision,
    OutputRecord,
    PhiView,
    RedactionBox,
    ReviewItem,
    ReviewReason,
    ReviewSession,
)
from pipeline.catalog.errors import short

if TYPE_CHECKING:
    from mricurate.review.context import ReviewContext

#: The two images of an item, as the frame URLs name them.
VERSIONS = ("original", "cleaned")
#: Keyboard shortcuts: key, what it does (shown on the item page; review.js binds them).
#: What approving means for an entry queued for these reasons, said before the reviewer decides.
APPROVAL_WARNINGS = {
    ReviewReason.DEFACE_FAILED: "The face of this head volume was NOT removed (defacing failed: "
    "see the reason in the run's report). Approving releases the series as it is, face "
    "included: approve only if no face can be rendered from it; otherwise reject.",
    ReviewReason.HEAD_KSPACE: "Raw k-space of a head scan cannot be defaced: approving releases "
    "data from which the face can be reconstructed. Approve only where the IRB decided so.",
}

SHORTCUTS = (
    ("a", "approve"),
    ("r", "reject (type the reason first)"),
    ("x", "redact with the boxes ticked and drawn"),
    ("← / →", "previous / next frame"),
    ("b", "show / hide the boxes"),
    ("w", "back to the file's own window (centre / width)"),
    ("q", "back to the queue"),
)


def _context(request: Request) -> ReviewContext:
    context: ReviewContext = request.app.state.review
    return context


def _session(request: Request) -> ReviewSession:
    session: ReviewSession = request.scope["state"]["session"]
    return session


def _render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> Response:
    session = _session(request)
    values = {"reviewer": session.reviewer, "csrf": session.csrf_token, **values}
    return _context(request).templates.TemplateResponse(request, name, values, status_code=status)


# -- login and logout -------------------------------------------------------------------


def login(request: Request) -> Response:
    """Exchange the one-time token of the printed URL for a session cookie, then a clean URL."""
    catalog = _context(request).catalog
    try:
        secret, _session_opened = catalog.open_session(request.query_params.get("token", ""))
    except AccessRefused as exc:
        return refused(403, str(exc))
    # 303: the browser GETs the clean URL; the token stays out of the address bar.
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, secret, path="/", httponly=True, samesite="strict")
    return response


def logout(request: Request) -> Response:
    secret = request.cookies.get(COOKIE, "")
    _context(request).catalog.revoke_session(secret)
    response = refused(200, "Signed out. Restart `mricurate review` for a new link.")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- the queue --------------------------------------------------------------------------


def study_of(output: OutputRecord) -> str:
    """The study pseudonym of an output: the second folder of its release path."""
    parts = output.relpath.split("/")
    return parts[1] if len(parts) >= 3 else ""


def _studies(context: ReviewContext, pending: Sequence[ReviewItem]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {item.sha256: set() for item in pending}
    for output in context.catalog.outputs_of(found):
        study = study_of(output)
        if study:
            found[output.input_sha256].add(study)
    return found


def queue(request: Request) -> Response:
    """Pending items with why each is there, filtered by reason and study; progress."""
    context = _context(request)
    catalog = context.catalog
    pending = catalog.pending_reviews()
    studies = _studies(context, pending)
    reason = request.query_params.get("reason", "")
    study = request.query_params.get("study", "")
    shown = [
        item
        for item in pending
        if (not reason or reason in {r.value for r in item.reasons})
        and (not study or study in studies[item.sha256])
    ]
    rows = [
        {
            "queue_id": item.queue_id,
            "key": short(item.sha256),
            "reasons": [r.value for r in item.reasons],
            "studies": sorted(studies[item.sha256]),
            "queued_at": item.queued_at.strftime("%Y-%m-%d %H:%M"),
        }
        for item in shown
    ]
    decided = [
        {
            "queue_id": record.queue_id,
            "key": short(record.sha256),
            "decision": record.decision.value,
            "reviewer": record.reviewer,
            "at": record.decided_at.strftime("%Y-%m-%d %H:%M"),
        }
        for record in catalog.decided_reviews()
    ]
    progress = catalog.review_progress()
    return _render(
        request,
        "queue.html",
        {
            "rows": rows,
            "pending": len(pending),
            "decided": decided,
            "progress": progress,
            "reasons": [r.value for r in ReviewReason],
            "studies": sorted(set().union(*studies.values())) if studies else [],
            "reason": reason,
            "study": study,
        },
    )


# -- an item ----------------------------------------------------------------------------


def _open(context: ReviewContext, queue_id: int) -> Any:
    from pipeline.review import open_item

    return open_item(context.workspace, context.catalog, queue_id)


def item(request: Request) -> Response:
    """Original and cleaned side by side, the boxes, the header before -> after, the history."""
    from pipeline.review import ReviewError, header_changes, item_boxes

    context = _context(request)
    queue_id: int = request.path_params["queue_id"]
    try:
        view = _open(context, queue_id)
    except CatalogError as exc:
        return refused(404, str(exc))
    # The original may have left incoming/ since it was queued: the page still
    # shows what there is (the cleaned image, the history) and says so.
    unavailable = ""
    try:
        changes = header_changes(context.workspace, view)
        found = item_boxes(context.workspace, view)
    except ReviewError as exc:
        changes, found, unavailable = [], [], str(exc)
    if changes:
        # The page shows the original header's values: that is a view of PHI.
        context.catalog.record_phi_view(_session(request).session_id, view.sha256,
                                        PhiView.ORIGINAL_HEADER)  # fmt: skip
    boxes = [
        {
            "n": n,
            "frame": box.frame,
            "x": box.x,
            "y": box.y,
            "width": box.width,
            "height": box.height,
            "source": box.source.value,
            "engine": box.engine,
            "text": box.text,
            "why": box.why,
        }
        for n, box in enumerate(found)
    ]
    history = [
        {
            "decision": record.decision.value,
            "reviewer": record.reviewer,
            "reason": record.reason,
            "ruleset_version": record.ruleset_version,
            "at": record.decided_at.strftime("%Y-%m-%d %H:%M:%S"),
            "boxes": len(record.boxes),
        }
        for record in view.decisions
    ]
    return _render(
        request,
        "item.html",
        {
            "view": view,
            "key": short(view.sha256),
            "reasons": [r.value for r in view.reasons],
            "frames": view.frames,
            "changes": changes,
            "boxes": boxes,
            "boxes_json": json.dumps(boxes),
            "history": history,
            "shortcuts": SHORTCUTS,
            "unavailable": unavailable,
            "warnings": [APPROVAL_WARNINGS[r] for r in view.reasons if r in APPROVAL_WARNINGS],
        },
    )


def frame(request: Request) -> Response:
    """One frame of the original or the cleaned image, as PNG; recorded as a view of PHI."""
    from pipeline.review import ReviewError, render_frame

    context = _context(request)
    version: str = request.path_params["version"]
    number: int = request.path_params["frame"]
    if version not in VERSIONS:
        return refused(404, "no such image")
    try:
        view = _open(context, request.path_params["queue_id"])
    except CatalogError as exc:
        return refused(404, str(exc))
    if not 0 <= number < view.frames:
        return refused(404, "no such frame")
    path = view.original if version == "original" else view.staged
    if path is None:
        return refused(404, "this item has no image of that kind")
    try:
        window = _window(request)
    except ValueError:
        return refused(400, "a window needs a finite centre and a positive width")
    try:
        png = render_frame(path, number, window=window, key=view.key)
    except ReviewError as exc:
        return refused(404, str(exc))  # names the item by its short sha only
    context.catalog.record_phi_view(_session(request).session_id, view.sha256, PhiView.IMAGE)
    return Response(png, media_type="image/png")


def _window(request: Request) -> tuple[float, float] | None:
    """The display window the reviewer asked for (``?centre=&width=``), or None: the file's."""
    centre, width = request.query_params.get("centre"), request.query_params.get("width")
    if centre is None and width is None:
        return None
    chosen = float(centre or "nan"), float(width or "nan")
    if not all(math.isfinite(v) for v in chosen) or chosen[1] <= 0:
        raise ValueError("not a window")
    return chosen


# -- a decision -------------------------------------------------------------------------


def _boxes(text: str) -> list[RedactionBox]:
    """The boxes of a redact form (JSON from review.js), or CatalogError."""
    if not text.strip():
        return []
    try:
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise ValueError("not a list")
        return [
            RedactionBox(
                None if entry.get("frame") is None else int(entry["frame"]),
                round(float(entry["x"])),
                round(float(entry["y"])),
                max(1, round(float(entry["width"]))),
                max(1, round(float(entry["height"]))),
                BoxSource(entry["source"]),
            )
            for entry in entries
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CatalogError("the boxes of this form are not readable: reload the page") from None


def decide(request: Request) -> Response:
    """Record the decision (reviewer, time, reason, rule-set version), then open the next item."""
    context = _context(request)
    catalog = context.catalog
    queue_id: int = request.path_params["queue_id"]
    form: dict[str, str] = request.scope["state"]["form"]
    try:
        decision = Decision(form.get("decision", ""))
    except ValueError:
        return refused(400, "choose approve, reject or redact")
    try:
        boxes = _boxes(form.get("boxes", "")) if decision is Decision.REDACT else []
        catalog.decide(
            queue_id,
            decision,
            reviewer=_session(request).reviewer,
            reason=form.get("reason", "").strip(),
            ruleset_version=context.settings.ruleset_version,
            boxes=boxes,
        )
    except CatalogError as exc:
        return refused(400, str(exc))
    pending = [entry.queue_id for entry in catalog.pending_reviews()]
    following = [n for n in pending if n > queue_id] or pending
    return RedirectResponse(f"/item/{following[0]}" if following else "/", status_code=303)
