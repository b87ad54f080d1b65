"""Where a workspace keeps what, and the one place that creates it.

::

    W/mricurate.toml   the config (commented; validated at load)
    W/incoming/        where scanners, a PACS export or the DICOM listener drop files
    W/release/         versions handed to researchers (release/<version>/)
    W/quarantine/      PHI-free account of what was kept out (the copies are private)
    W/private/         0700: key, catalog, link table, staging, findings, Prefect's home

``private/`` is the only folder that may hold PHI.  The de-identified
candidates of a run are staged under ``private/staging/`` until the leak
check and the review have passed them: an output is not shareable before
it is verified, so it does not sit anywhere a researcher could read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import LocationError
from pipeline.keys import generate_key, write_key
from pipeline.storage import writing
from pipeline.workspace.config import CONFIG_NAME, WorkspaceConfig, load_config, template_text

PRIVATE_MODE = 0o700


@dataclass(frozen=True)
class Workspace:
    """The paths of one workspace and its validated config."""

    root: Path
    config: WorkspaceConfig

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def key_file(self) -> Path:
        return self.private / "site.key"

    @property
    def staging(self) -> Path:
        """De-identified candidates, not yet verified (``dicom/``, ``raw/``, ``fastmri/``)."""
        return self.private / "staging"

    @property
    def prefect_home(self) -> Path:
        return self.private / "prefect"

    @property
    def lock_dir(self) -> Path:
        """Holds the workspace lock: one ingest at a time, whoever starts it."""
        return self.private / "workspace"

    @property
    def receiving(self) -> Path:
        """The DICOM listener's temp files (PHI until renamed into ``incoming/``).

        Under ``private/`` so a half-received dataset is never outside it, and
        on ``incoming/``'s file system so the final write is a rename.
        """
        return self.private / "receiving"

    @property
    def catalog_url(self) -> str:
        """The configured URL, or a SQLite file in the private location."""
        return self.config.catalog_url or f"sqlite:///{self.private / 'catalog.sqlite'}"


def init_workspace(root: Path) -> Workspace:
    """Create a workspace at ``root`` (new or empty), with a new key and a commented config.

    Refuses a folder that already holds a workspace or other files: a second
    key over an existing one would give every person two pseudonyms.
    """
    root = root.absolute()
    if (root / CONFIG_NAME).exists():
        raise LocationError(
            f"{root} is already a workspace ({CONFIG_NAME} exists); use it as it is, or choose "
            "another folder"
        )
    if root.exists() and any(root.iterdir()):
        raise LocationError(f"{root} is not empty; a workspace is created in a new or empty folder")
    with writing("the workspace", root):
        root.mkdir(parents=True, exist_ok=True)
        for name in ("incoming", "release", "quarantine"):
            (root / name).mkdir(exist_ok=True)
        private = root / "private"
        private.mkdir(mode=PRIVATE_MODE, exist_ok=True)
        os.chmod(private, PRIVATE_MODE)  # the umask may have narrowed or widened it
        write_key(private / "site.key", generate_key())
        from pipeline.atomic import atomic_write_text

        atomic_write_text(root / CONFIG_NAME, template_text())
    return open_workspace(root)


def open_workspace(root: Path) -> Workspace:
    """The workspace at ``root``, its config validated and its private folder checked."""
    root = root.absolute()
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise LocationError(
            f"{root} is not a workspace (no {CONFIG_NAME}); create one with `mricurate init {root}`"
        )
    workspace = Workspace(root, load_config(config_path))
    private = workspace.private
    if not private.is_dir():
        raise LocationError(f"the workspace's private folder {private} is missing")
    mode = private.stat().st_mode & 0o777
    if mode & 0o077:
        raise LocationError(
            f"the workspace's private folder {private} is open to other users (mode "
            f"{mode:o}); it holds the key and the link table: `chmod 700 {private}`"
        )
    return workspace
