"""A step whose inputs say what their worker does: finish, die by a signal, stall, run out of memory.

The faults are real: a worker process really receives SIGKILL or SIGSEGV,
really sleeps past its stall limit, really hits its RLIMIT_AS.  Only which
input triggers them is scripted, so a test can assert that exactly that
input paid for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.atomic import write_temp
from pipeline.batch.step import Area, Candidate, Item, LinkRow, StepResult, WorkerEnv
from pipeline.errors import StorageError
from pipeline.identity.links import LinkRecord
from pipeline.phi import Phi
from pipeline.read.content import sha256_of
from pipeline.reasons import Outcome


def link(name: str) -> LinkRecord:
    return LinkRecord(name, "", name, "SUBJ-X", 0, "1.2", "2.25.1", "", "", "", "", "")


@dataclass
class ScriptedStep:
    """Writes each input's bytes (reversed) to ``out/<name>.out``, unless its name says otherwise.

    Names: ``kill-*`` SIGKILL itself, ``segv-*`` dereference NULL, ``stall-*``
    sleep a minute, ``memory-*`` allocate 8 GiB, ``exit-*`` exit 5,
    ``disk-*`` report a full disk, ``slow-*`` take half a second.

    With ``hang_in`` (a folder), every input hangs in the processes of one
    Dask worker, or of all (see :func:`hang_if_asked`): a hung worker, not a
    bad input.
    """

    output: Path
    command: str = "scripted"
    incremental: bool = True
    key_fingerprint: str = "0123456789abcdef"
    version: str = "1"
    hang_in: str = ""
    _env: WorkerEnv | None = field(default=None, repr=False)

    @property
    def areas(self) -> dict[Area, Path]:
        return {Area.RELEASE: self.output}

    def digest(self) -> str:
        return self.version

    def setup(self, env: WorkerEnv) -> None:
        self._env = env

    def run(self, item: Item) -> StepResult:
        env = self._env
        assert env is not None
        name = item.path.name
        if self.hang_in:
            hang_if_asked(Path(self.hang_in))
        if name.startswith("kill-"):
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("segv-"):
            ctypes.string_at(0)
        if name.startswith("stall-"):
            time.sleep(60)
        if name.startswith("memory-"):
            bytearray(8 << 30)
        if name.startswith("exit-"):
            os._exit(5)
        if name.startswith("disk-"):
            raise StorageError("OUTPUT", self.output, OSError(errno.ENOSPC, "full"))
        if name.startswith("slow-"):
            for _ in range(5):
                time.sleep(0.1)
                env.progress()
        data = item.path.read_bytes()
        sha = sha256_of(data)
        written = (self.version.encode() + data)[::-1]
        temp = write_temp(env.temp_dirs[Area.RELEASE], written)
        relpath = f"{name}.out"
        return StepResult(
            Outcome.WRITTEN,
            sha,
            detail=Phi(""),
            outputs=(Candidate(Area.RELEASE, relpath, os.fspath(temp), sha256_of(written)),),
            links=(LinkRow(sha, relpath, link(name)),),
            facts=(("scripted", 1),),
        )


def hang_if_asked(folder: Path) -> None:
    """Block (really: sleep) while ``folder`` says this worker hangs; a test ends it by deleting.

    ``folder/all``: every worker hangs.  ``folder/one``: the first worker
    process to get here claims it (a rename: exactly one wins) for the Dask
    worker that started it, its parent; every later input of that Dask
    worker hangs too, those of the others do not.
    """
    mine = folder / f"hung-{os.getppid()}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(folder / "one", mine)
    while mine.exists() or (folder / "all").exists():
        time.sleep(0.05)


def inputs(folder: Path, names: list[str]) -> Path:
    """One small file per name (its content is its name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode() * 10)
    return folder
