"""A workspace: the folders, the config and the key a team's nightly runs share.

``mricurate init W`` lays it out; every later command (``ingest``, ``serve``,
``withdraw``, ``review``) finds everything from ``W`` alone.
"""

from pipeline.workspace.config import (
    ConfigError,
    ListenSettings,
    NodeRole,
    PacsNode,
    WorkspaceConfig,
    load_config,
)
from pipeline.workspace.layout import Workspace, init_workspace, open_workspace

__all__ = [
    "ConfigError",
    "ListenSettings",
    "NodeRole",
    "PacsNode",
    "Workspace",
    "WorkspaceConfig",
    "init_workspace",
    "load_config",
    "open_workspace",
]
