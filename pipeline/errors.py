"""One exception hierarchy for the whole pipeline.

Bad input is an expected outcome: the file-level boundary catches
:class:`InputError` subclasses, records the reason, quarantines the input and
goes on.  Messages name the file and say what to do next; they never carry a
header value, because they reach run summaries and logs.
"""

from __future__ import annotations

from pathlib import Path


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


class InputError(CurationError):
    """One input cannot be processed; it goes to quarantine with this reason.

    ``reason`` is a short, PHI-free code-like phrase used to group the run
    summary; ``detail`` says what is wrong and what to do.
    """

    reason = "unprocessable input"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class UnreadableInput(InputError):
    """Not DICOM, truncated, empty, or otherwise not parseable."""

    reason = "unreadable"


class UnsupportedObject(InputError):
    """A readable object that the profile does not allow to be released."""

    reason = "sop class not allowed"


class HeldBack(InputError):
    """A readable, allowed object that needs a person or a later step first."""

    reason = "may carry burned-in text"


class SubjectUnknown(HeldBack):
    """Raw data whose subject cannot be established: never released under a guess."""

    reason = "subject unknown"


class OutputConflict(InputError):
    """Two inputs would become the same output with different content."""

    reason = "output conflict"
