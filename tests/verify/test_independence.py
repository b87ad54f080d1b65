"""The leak check runs without the code it checks: nothing of it is even imported."""

from __future__ import annotations

import json
import subprocess
import sys

ALLOWED_PROJECT_MODULES = {"pipeline", "pipeline.phi", "pipeline.errors", "pipeline.reasons"}
CHECKED_CODE_AND_ITS_LIBRARIES = {"twixtools", "ismrmrd", "yaml", "nibabel", "pytesseract"}


def test_importing_and_running_the_check_loads_none_of_the_checked_code() -> None:
    """In a fresh interpreter (import-linter checks the same statically, `make lint`)."""
    script = """
import json, sys, tempfile, pathlib
from pipeline.verify import check_outputs, collect_identifiers
folder = pathlib.Path(tempfile.mkdtemp())
(folder / "a.txt").write_text("nothing")
check_outputs([("a", folder / "a.txt", "a.txt")], collect_identifiers([folder]))
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(json.loads(result.stdout))
    project = {m for m in modules if m.split(".")[0] in ("pipeline", "flows", "mricurate")}
    assert {m for m in project if not m.startswith("pipeline.verify")} <= ALLOWED_PROJECT_MODULES
    assert not {m.split(".")[0] for m in modules} & CHECKED_CODE_AND_ITS_LIBRARIES
