"""What the review web app shows of one queue entry: pure Python over the workspace and catalog.

- :func:`open_item`: the entry as an :class:`ItemView` (reasons, pseudonyms,
  frames, the original's and the staged output's paths, the decisions);
- :func:`render_frame`: one frame of a file as a windowed PNG;
- :func:`header_changes`: the header before -> after with the deciding rule;
- :func:`item_boxes`: the OCR and region-rule boxes over the original, each
  with why it is there (scanned on demand, cached under ``private/``).

Everything here reads PHI for a page behind a session; errors name an item
by its short sha only (:class:`ReviewError`).
"""

from pipeline.review.boxes import ReviewBox, item_boxes, scan_cache_path
from pipeline.review.header import Change, header_changes
from pipeline.review.item import ItemView, ReviewError, open_item
from pipeline.review.render import Window, frame_window, render_frame

__all__ = [
    "Change",
    "ItemView",
    "ReviewBox",
    "ReviewError",
    "Window",
    "frame_window",
    "header_changes",
    "item_boxes",
    "open_item",
    "render_frame",
    "scan_cache_path",
]
