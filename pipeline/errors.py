"""One exception hierarchy for the whole pipeline.

Two kinds of failure, never confused:

- **Bad input** (:class:`InputError`): an expected outcome.  The step's
  boundary catches it, the runner records its :class:`~pipeline.reasons.Reason`,
  quarantines the input and goes on.
- **Our own failure** (:class:`RunFailure`): a full disk, a read-only output,
  a lock held by another run, workers that keep dying.  No input is blamed:
  the run stops, nothing half-written is left under a final name, and the
  message says what to do before running again.

Messages name files by their opaque key and say what to do next; they never
carry a header value, because they reach run summaries and logs.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pipeline.reasons import Reason


class CurationError(Exception):
    """Base class of every error raised on purpose by mricurate."""


class RuleError(CurationError):
    """A rule file is malformed; raised at load time with file, line and reason."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {reason}")


class KeyFileError(CurationError):
    """The secret key is missing, malformed or readable by others."""


class LocationError(CurationError):
    """SOURCE, OUTPUT, the key and the private location are laid out unsafely."""


class InputError(CurationError):
    """One input cannot be processed; it goes to quarantine with this reason.

    ``reason`` groups the run summary; ``detail`` says what is wrong and what
    to do (it is kept in the private location only).
    """

    reason: Reason = Reason.UNREADABLE

    def __init__(self, detail: str, reason: Reason | None = None) -> None:
        self.detail = detail
        if reason is not None:
            self.reason = reason
        super().__init__(detail)


class UnreadableInput(InputError):
    """Not DICOM, truncated, empty, or otherwise not parseable."""

    reason = Reason.UNREADABLE


class ImageWithoutPixels(InputError):
    """A well-formed image object that holds no pixel data: there is nothing to release."""

    reason = Reason.IMAGE_WITHOUT_PIXELS


class TooLarge(InputError):
    """Reading the input would take more memory than a worker may use."""

    reason = Reason.TOO_LARGE


class UnsupportedObject(InputError):
    """A readable object that the profile does not allow to be released."""

    reason = Reason.SOP_CLASS_NOT_ALLOWED


class HeldBack(InputError):
    """A readable, allowed object that needs a person or a later step first."""

    reason = Reason.MAY_CARRY_BURNED_IN_TEXT


class SubjectUnknown(HeldBack):
    """Raw data whose subject cannot be established: never released under a guess."""

    reason = Reason.SUBJECT_UNKNOWN


class OutputConflict(InputError):
    """Two inputs would become the same output with different content."""

    reason = Reason.OUTPUT_CONFLICT


class RunFailure(CurationError):
    """The run itself cannot go on; no input is to blame (exit status 3).

    The runner sets ``summary`` to the account of what was done before it.
    """

    summary: object = None


class StorageError(RunFailure):
    """Writing to OUTPUT or the private location failed (full, read-only, I/O error).

    Parameters
    ----------
    area : str
        What was being written: ``OUTPUT``, ``the private location``, ...
    location : Path
        Its folder (the run's own locations: no PHI).
    error : OSError
        What the operating system said.
    """

    def __init__(self, area: str, location: Path | None, error: OSError) -> None:
        self.area = area
        self.location = location
        self.errno = error.errno
        self._error = OSError(error.errno, error.strerror) if error.errno else OSError()
        code = errno.errorcode.get(error.errno or 0, "")
        what = os.strerror(error.errno) if error.errno else type(error).__name__
        advice = _ADVICE.get(error.errno or 0, "check the file system, then run again")
        super().__init__(
            f"cannot write to {area}{f' {location}' if location else ''}: {what}"
            f"{f' ({code})' if code else ''}; "
            f"{advice}. No input was blamed or quarantined for this, nothing half-written "
            "is left under a final name, and the next run goes on where this one stopped."
        )

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, Path | None, OSError]]:
        # Raised in a worker, re-raised by the runner: pickled by its parts.
        return (StorageError, (self.area, self.location, self._error))


_ADVICE = {
    errno.ENOSPC: "free space there (or choose another location), then run again",
    errno.EDQUOT: "raise the quota or free space there, then run again",
    errno.EROFS: "the file system is read-only: remount it read-write or choose another "
    "location, then run again",
    errno.EIO: "the device reported an I/O error: check the disk (dmesg, SMART) before "
    "running again",
    errno.EACCES: "check its owner and permissions, then run again",
    errno.EPERM: "check its owner and permissions, then run again",
}


class RunLocked(CurationError):
    """Another run holds OUTPUT or the private location (refused before anything is written)."""


class WorkersKeepDying(RunFailure):
    """Worker processes die on input after input: the machine, not the inputs, is failing."""
