"""A workspace with the generated sample in ``incoming/``, for the flow tests."""

from __future__ import annotations

from pathlib import Path

from pipeline.demo import write_raw_sample
from pipeline.samples import Subject, write_sample_tree
from pipeline.workspace import Workspace, init_workspace, open_workspace

FAST_CONFIG = """
[deid]
profile = "research"
clean_pixels = {clean_pixels}

[pixels]
ocr_engine = "tesseract"

[ingest]
quiet_seconds = {quiet}
jobs = {jobs}

[review]
spot_check_share = {spot}
"""


def config_text(
    *, clean_pixels: bool = True, quiet: float = 0, spot: float = 0.0, jobs: int = 2
) -> str:
    """A workspace config tuned for tests (Tesseract only, no quiet time unless asked)."""
    return FAST_CONFIG.format(
        clean_pixels=str(clean_pixels).lower(), quiet=quiet, spot=spot, jobs=jobs
    )


def sample_workspace(
    root: Path,
    *,
    subjects: int = 2,
    clean_pixels: bool = True,
    quiet: float = 0,
    spot: float = 0.0,
    catalog_url: str = "",
) -> tuple[Workspace, list[Subject], list[str]]:
    """A new workspace, its config tuned for tests, the sample dropped in ``incoming/``.

    Returns the workspace, the subjects and every planted value (DICOM and raw).
    """
    workspace = init_workspace(root)
    text = config_text(clean_pixels=clean_pixels, quiet=quiet, spot=spot)
    if catalog_url:
        text += f'\n[catalog]\nurl = "{catalog_url}"\n'
    (workspace.root / "mricurate.toml").write_text(text)
    people = write_sample_tree(workspace.incoming / "pacs", n_subjects=subjects)
    raw_planted = write_raw_sample(workspace.incoming / "raw", people)
    planted = [v for person in people for v in person.phi.values()] + raw_planted
    return open_workspace(workspace.root), people, planted
