"""One workspace with a queue and one ``mricurate review`` process on it, for the module.

The workspace is a real ingest of the generated sample (one subject, DICOM
and raw data, burned-in text in some images) with the spot-check share at
1.0, so every input waits in the queue.  The app runs as the command a
reviewer types, in a subprocess whose standard output (where the login URL
is printed) and standard error (uvicorn's log) are files the tests read.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.ingest.once import ingest_once
from pipeline.workspace import Workspace
from tests.flows.sample import sample_workspace

REVIEWER = "ada"
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/login\?token=([A-Za-z0-9_-]+)")


@dataclass
class RunningApp:
    """The review process: its login URL, base URL, token and the files of its output."""

    process: subprocess.Popen[bytes]
    login_url: str
    base: str
    token: str
    stdout: Path
    stderr: Path


@pytest.fixture(scope="module")
def queued_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace, _people, _planted = sample_workspace(
        tmp_path_factory.mktemp("review") / "w", subjects=1, spot=1.0
    )
    ingest_once(workspace, jobs=1)
    return workspace


@pytest.fixture(scope="module")
def review_app(
    queued_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    logs = tmp_path_factory.mktemp("review-logs")
    stdout, stderr = logs / "stdout", logs / "stderr"
    command = [sys.executable, "-m", "mricurate", "review", "--workspace",
               str(queued_workspace.root), "--port", "0", "--reviewer", REVIEWER]  # fmt: skip
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None:
            found = _URL.search(stdout.read_text())
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mricurate review did not start:\n{stderr.read_text()}")
            time.sleep(0.1)
        while "Started server process" not in stderr.read_text():
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        port, token = found.groups()
        base = f"http://127.0.0.1:{port}"
        yield RunningApp(process, found.group(0), base, token, stdout, stderr)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
