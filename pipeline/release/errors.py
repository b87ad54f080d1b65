"""What can stop a publish: every one leaves ``release/`` as it was.

Part of the one hierarchy of :mod:`pipeline.errors` (each is a
:class:`~pipeline.errors.CurationError`).  Messages name a file by its
relative path inside the version (pseudonymous tokens only), never by a staged
path, and never quote a cell: the message reaches logs and the flow's records.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import CurationError

# Said by every publish error: the state it leaves, and what to do.
NOTHING_PUBLISHED = (
    "nothing was published (no new version; earlier versions untouched); fix the cause, "
    "then publish again"
)


class ReleaseError(CurationError):
    """A release cannot be written as asked."""


class UnreadableReleasedFile(ReleaseError):
    """A file to release cannot be read for its manifest row (a damaged staged file)."""

    def __init__(self, relpath: str, what: str) -> None:
        self.relpath = relpath
        super().__init__(
            f"{relpath}: cannot read its manifest values ({what}); {NOTHING_PUBLISHED}"
        )


class StagedFileError(ReleaseError):
    """A staged file cannot be released: missing, not a regular file, unreadable."""

    def __init__(self, relpath: str, what: str) -> None:
        self.relpath = relpath
        super().__init__(f"{relpath}: cannot release its staged file ({what}); {NOTHING_PUBLISHED}")


class StagedFileChanged(StagedFileError):
    """A staged file's bytes changed while it was being released."""

    def __init__(self, relpath: str) -> None:
        super().__init__(relpath, "it changed while being released: is a run writing it?")


@dataclass(frozen=True)
class ContractError:
    """One cell or row that breaks a data contract, as Frictionless reports it.

    ``row`` is counted as Frictionless counts it, the header row being 1: the
    first data row is 2, and in the CSV file the row is its line number.
    ``column`` is ``None`` for an error of a whole row (a repeated primary key).
    """

    row: int | None
    column: str | None
    kind: str
    note: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "the table"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.kind} ({self.note})"


class ContractViolation(ReleaseError):
    """A written manifest breaks its schema in ``data_contracts/``.

    Parameters
    ----------
    table : str
        The manifest, by its path inside the version (``manifests/files.csv``).
    contract : str
        The schema file's name.
    errors : tuple of ContractError
        Every error Frictionless found; the message names the first few.
    """

    _SHOWN = 5

    def __init__(self, table: str, contract: str, errors: tuple[ContractError, ...]) -> None:
        self.table = table
        self.contract = contract
        self.errors = errors
        shown = "; ".join(str(error) for error in errors[: self._SHOWN])
        more = f" (and {len(errors) - self._SHOWN} more)" if len(errors) > self._SHOWN else ""
        super().__init__(
            f"{table} breaks data_contracts/{contract}: {shown}{more}; {NOTHING_PUBLISHED}"
        )
