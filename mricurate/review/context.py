"""What the review app's pages share: its settings, the open workspace and catalog, the templates.

Below both :mod:`mricurate.review.app` (which builds them) and
:mod:`mricurate.review.pages` (which reads them from each request), so
neither imports the other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import jinja2
from starlette.templating import Jinja2Templates

from pipeline.catalog import Catalog
from pipeline.workspace import Workspace

HERE = Path(__file__).parent


@dataclass(frozen=True)
class ReviewSettings:
    """What one running review app is set to.

    ``ruleset_version`` is the workspace's rule-set version when the app
    started (:func:`pipeline.workspace.ruleset.workspace_ruleset_version`): every
    decision records it.
    """

    idle: dt.timedelta
    ruleset_version: str


@dataclass(frozen=True)
class ReviewContext:
    """What the pages share: the workspace, its open catalog, the settings, the templates."""

    workspace: Workspace
    catalog: Catalog
    settings: ReviewSettings
    templates: Jinja2Templates


def templates() -> Jinja2Templates:
    """The package's templates; every value is HTML-escaped (autoescape on for all of them)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return Jinja2Templates(env=environment)
