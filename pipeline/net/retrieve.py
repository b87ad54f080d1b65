"""C-MOVE and C-GET of one study in the Study Root model, and what the node said of it.

C-MOVE asks the node to open its own association to our listener (the move
destination: our AE title, which the node must know with our host and
port) and send the study there; C-GET has the node send it back on our own
association, as C-STORE sub-operations that we take in the SCP role.  For
C-GET we propose, for each SOP class the study's instances have, one
storage context per transfer syntax (at most :data:`MAX_CONTEXTS` in all,
the query/retrieve models included), and the SCP role for each class by
SCP/SCU Role Selection Negotiation: with one syntax per context, the node
can pick the context of the syntax it holds and send the instance as it is,
never re-encoded; with many syntaxes in one context it would have to choose
one for all.  When the classes times the syntaxes do not fit, each class
keeps the most common syntaxes first (:data:`SYNTAX_PREFERENCE`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, build_context, build_role
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pipeline.net.contexts import MAX_CONTEXTS
from pipeline.net.errors import NetworkError, TransientError

GET_MODEL = StudyRootQueryRetrieveInformationModelGet
MOVE_MODEL = StudyRootQueryRetrieveInformationModelMove

#: Transfer syntaxes in the order a class keeps them when not all fit:
#: uncompressed, then the compressed ones scanners and PACS use most.
SYNTAX_PREFERENCE: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    *(str(ts) for ts in ALL_TRANSFER_SYNTAXES if str(ts) not in {
        "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }),
)  # fmt: skip

_PENDING = (0xFF00, 0xFF01)
_OUT_OF_RESOURCES = (0xA701, 0xA702)


@dataclass(frozen=True)
class GetContexts:
    """What a C-GET association proposes: the contexts and the SCP roles."""

    contexts: tuple[PresentationContext, ...]
    roles: tuple[SCP_SCU_RoleSelectionNegotiation, ...]
    left_out: tuple[str, ...]  # SOP classes no context was left for


def get_contexts(sop_classes: Iterable[str]) -> GetContexts:
    """Find and Get, then one context per (class, syntax), at most 128 in all.

    Each class gets the same number of syntaxes, the most its share of the
    room allows, in the order of :data:`SYNTAX_PREFERENCE`; a class beyond
    126 gets none (its instances fail and the row is retried, never passed).
    """
    classes = sorted({c for c in sop_classes if c})
    room = MAX_CONTEXTS - 2
    kept, left_out = classes[:room], tuple(classes[room:])
    per_class = min(len(SYNTAX_PREFERENCE), room // len(kept)) if kept else 0
    contexts = [
        build_context(StudyRootQueryRetrieveInformationModelFind),
        build_context(GET_MODEL),
    ]
    for sop_class in kept:
        contexts.extend(build_context(sop_class, [ts]) for ts in SYNTAX_PREFERENCE[:per_class])
    roles = tuple(build_role(sop_class, scp_role=True) for sop_class in kept)
    return GetContexts(tuple(contexts), roles, left_out)


def move_contexts() -> tuple[PresentationContext, ...]:
    """Find and Move: the node's sub-operations go to our listener, not here."""
    return (build_context(StudyRootQueryRetrieveInformationModelFind), build_context(MOVE_MODEL))


@dataclass(frozen=True)
class Retrieval:
    """The node's final answer to one C-MOVE or C-GET: its status and sub-operation counts."""

    status: int
    completed: int
    failed: int
    warnings: int


def study_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def get_study(
    assoc: Association, study_uid: str, progress: Callable[[int, int], None] | None = None
) -> Retrieval:
    """C-GET ``study_uid`` on ``assoc`` (its C-STORE handler stores what arrives)."""
    return _final(assoc.send_c_get(study_identifier(study_uid), GET_MODEL), progress)


def move_study(
    assoc: Association,
    study_uid: str,
    destination: str,
    progress: Callable[[int, int], None] | None = None,
) -> Retrieval:
    """C-MOVE ``study_uid`` to the AE title ``destination`` (our listener)."""
    answers = assoc.send_c_move(study_identifier(study_uid), destination, MOVE_MODEL)
    return _final(answers, progress)


def _count(status: Dataset, name: str) -> int:
    value = status.get(name)
    return int(value) if value is not None and value != "" else 0


def _final(
    answers: Iterable[tuple[Dataset, Dataset | None]],
    progress: Callable[[int, int], None] | None,
) -> Retrieval:
    """Read the pending answers (for progress) to the final one.

    Raises
    ------
    TransientError
        No answer (timed out, aborted) or out of resources: try again.
    NetworkError
        A failure that trying again will not mend (an unknown move
        destination, a refused model, an identifier the node cannot read).
    """
    last: Retrieval | None = None
    for status, _identifier in answers:
        code = getattr(status, "Status", None)
        if code is None:
            raise TransientError("the node did not answer the retrieve (timed out or aborted)")
        completed = _count(status, "NumberOfCompletedSuboperations")
        failed = _count(status, "NumberOfFailedSuboperations")
        warnings = _count(status, "NumberOfWarningSuboperations")
        if code in _PENDING:
            if progress is not None:
                remaining = _count(status, "NumberOfRemainingSuboperations")
                progress(completed + failed + warnings, completed + failed + warnings + remaining)
            continue
        last = Retrieval(int(code), completed, failed, warnings)
    if last is None:
        raise TransientError("the node ended the retrieve without a final answer")
    if last.status in _OUT_OF_RESOURCES:
        raise TransientError(f"the node is out of resources for the retrieve (status "
                             f"0x{last.status:04X})")  # fmt: skip
    if last.status == 0xA801:
        raise NetworkError("the node does not know our AE title as a move destination: add "
                           "our listener (AE title, host, port) to its list of modalities, "
                           "or retrieve by C-GET (--by get)")  # fmt: skip
    if last.status not in (0x0000, 0xB000, 0xFE00) and not 0xC000 <= last.status <= 0xCFFF:
        raise NetworkError(f"the node refused the retrieve with status 0x{last.status:04X}: "
                           "check that it allows us to retrieve (C-MOVE or C-GET)")  # fmt: skip
    return last


def study_sop_classes(instances: Sequence[object]) -> list[str]:
    """The SOP classes of a study's instances (for :func:`get_contexts`)."""
    return sorted({str(getattr(i, "sop_class_uid", "")) for i in instances} - {""})
