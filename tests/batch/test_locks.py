"""Two real runs at once: one OUTPUT and one private location serve one run at a time.

Run A (a subprocess) de-identifies a corpus that lasts a few seconds.  While
it holds its locks, run B on the same OUTPUT (another private location) and
run C on the same private location (another OUTPUT) are refused at once with
exit 2 and a message naming A's PID and start time, and touch nothing of A's.
A then finishes normally, and B, run again, succeeds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.batch.conftest import (
    check_no_phi,
    check_no_temp_files,
    check_records,
    cli_env,
    quarantined,
    release_bytes,
    run_cli,
    run_ids,
    start_cli,
    store_rows,
    write_dicom,
)

DISTINCT, COPIES = 20, 8
# B and C start first, import what the command needs, say they are ready and
# wait for a line on stdin: once A holds its locks they are told to go, and the
# refusal is timed from there (on two cores shared by four processes, imports
# alone can take seconds).
TIMED_MAIN = """
import sys, time
from mricurate.cli import main
import mricurate.console, pipeline.dicom.profile, pipeline.steps.dicom_file
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
status = main(sys.argv[1:])
print(f"refused after {time.monotonic() - start:.3f} s", file=sys.stderr)
sys.exit(status)
"""


def _holder(lock: Path) -> dict[str, object]:
    try:
        return json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _wait_for_locks(run: subprocess.Popen[str], *locks: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [_holder(lock) for lock in locks]
        if all(r.get("pid") == run.pid for r in records):
            return records[0]
        assert run.poll() is None, f"run A ended early: {run.communicate()}"
        time.sleep(0.05)
    raise AssertionError("run A never took its locks")


def _timed(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", TIMED_MAIN, *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(),
    )  # fmt: skip


def test_concurrent_runs_are_refused_at_once_and_the_first_finishes(
    tmp_path: Path, key_file: Path
) -> None:
    corpus = write_dicom(tmp_path / "slices", n_slices=DISTINCT)
    source = tmp_path / "in"
    for copy in range(COPIES):
        shutil.copytree(corpus.root, source / f"copy{copy:02d}")
    small = source / "copy00"  # B's and C's SOURCE: what they read does not matter
    out, private = tmp_path / "out", tmp_path / "private"
    out_c, private_b = tmp_path / "out-c", tmp_path / "private-b"
    key = ("--key-file", key_file)

    b = _timed("deid", small, out, *key, "--private-dir", private_b, "--jobs", "1")
    c = _timed("deid", small, out_c, *key, "--private-dir", private, "--jobs", "1")
    for run in (b, c):
        assert run.stdout is not None
        assert run.stdout.readline() == "ready\n", run.communicate()
    a = start_cli("deid", source, out, *key, "--private-dir", private, "--jobs", "1")
    try:
        holder = _wait_for_locks(a, out / ".mricurate" / "lock", private / "lock")
        for run in (b, c):
            assert run.stdin is not None
            run.stdin.write("go\n")
            run.stdin.flush()
        _, b_err = b.communicate(timeout=60)
        _, c_err = c.communicate(timeout=60)
        a_running = a.poll() is None
    finally:
        for run in (b, c):
            if run.poll() is None:
                run.kill()
        a_out, a_err = a.communicate(timeout=120)

    started = str(holder["started"])
    for name, status, err, where in (
        ("B", b.returncode, b_err, "OUTPUT"),
        ("C", c.returncode, c_err, "the private location"),
    ):
        assert status == 2, f"run {name}: {err}"
        assert f"PID {a.pid}" in err and f"started {started}" in err, err
        assert f"mricurate: error: {where}" in err and "in use by another mricurate run" in err
        took = float(re.search(r"refused after ([0-9.]+) s", err).group(1))  # type: ignore[union-attr]
        assert took < 2.0, f"run {name} waited {took} s before being refused"
        check_no_phi(subprocess.CompletedProcess([], status, "", err), corpus)
    assert a_running, "A had finished before B and C were refused: they may have waited for it"
    # Neither touched A's locations, nor made its own OUTPUT.
    assert not out_c.exists()
    assert run_ids(private_b) == set()

    assert a.returncode == 0, a_err
    check_no_phi(subprocess.CompletedProcess([], 0, a_out, a_err), corpus)
    assert re.search(r"written\s+20\b", a_out) and re.search(r"duplicate\s+140\b", a_out), a_out
    (run_a,) = run_ids(private)
    assert store_rows(private, "SELECT count(*) FROM inputs WHERE run_id = ?", (run_a,)) == [
        (DISTINCT * COPIES,)
    ]
    check_no_temp_files(out)
    check_records(private, out)
    assert quarantined(private) == set()
    release = release_bytes(out)
    assert len(release) == DISTINCT

    # A is done: B may run now, and leaves A's release as it was.
    again = run_cli("deid", small, out, *key, "--private-dir", private_b, "--jobs", "1")
    assert again.returncode == 0, again.stderr
    assert re.search(r"unchanged\s+20\b", again.stdout), again.stdout
    assert release_bytes(out) == release
    check_no_temp_files(out)
    check_records(private, out)
