"""What happens to one input of a run, and why: one vocabulary for every step.

Every runner, summary, record and report speaks these two enums.  A
:class:`Reason`'s value is a stable code: it is what the private store and
the run records keep, what tests and later tools match on, and it never
changes once released (add a new member instead).  Its :attr:`Reason.text`
is the phrase a person reads.  Neither ever holds PHI: what is particular to
one input goes into the result's detail, which is typed as PHI
(:class:`pipeline.phi.Phi`).
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    """Where an input ended; every input of a run ends in exactly one."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"  # written by an earlier run from the same content, rules and key
    DUPLICATE = "duplicate"  # same output as another input, same bytes
    SCANNED = "scanned"  # the pixel scan read it (its finding says what it found)
    HELD_BACK = "held back"  # readable and allowed, but a person or a later step must see it first
    QUARANTINED = "quarantined"
    NOT_COPIED = "not copied"  # DICOMDIR: an index that names patients

    @property
    def kept_privately(self) -> bool:
        """A copy of the input goes to the private quarantine with its reason."""
        return self in (Outcome.QUARANTINED, Outcome.HELD_BACK)


class Reason(enum.Enum):
    """Why an input was quarantined, held back, not copied or not rewritten.

    The value is the stable code; :attr:`text` is for people.
    """

    # -- the input itself cannot be read -------------------------------------
    NOT_A_REGULAR_FILE = "not-a-regular-file"
    INPUT_IO_ERROR = "input-io-error"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too-large"
    # -- readable, but not releasable -----------------------------------------
    SOP_CLASS_NOT_ALLOWED = "sop-class-not-allowed"
    SIEMENS_CSA_NON_IMAGE = "siemens-csa-non-image"
    IMAGE_WITHOUT_PIXELS = "image-without-pixel-data"
    INVALID_ISMRMRD_HEADER = "invalid-ismrmrd-header"
    SUBJECTS_DISAGREE = "subjects-disagree"
    OUTPUT_CONFLICT = "output-conflict"
    CHANGED_AT_SOURCE = "changed-at-source"
    NO_FASTMRI_LAYOUT = "no-fastmri-layout"  # written as ISMRMRD, without a fastMRI file
    # -- processing of this input failed -------------------------------------
    INTERNAL_ERROR = "internal-error"
    STALLED = "stalled"
    WORKER_DIED = "worker-died"
    # -- held back for a person or a later step -------------------------------
    MAY_CARRY_BURNED_IN_TEXT = "may-carry-burned-in-text"
    TEXT_NOT_LOCATED = "burned-in-text-not-located"
    TOO_MUCH_TEXT = "too-much-text-to-blank"
    SUBJECT_UNKNOWN = "subject-unknown"
    # -- written, but a person should look before it is released ------------------
    FREE_TEXT_NAMED_SUBJECT = "free-text-named-subject"
    UNKNOWN_PRIVATE_CREATOR_KEPT = "unknown-private-creator-kept"
    # -- not an error -----------------------------------------------------------
    DICOMDIR = "dicomdir-index"
    DUPLICATE = "duplicate"

    @property
    def text(self) -> str:
        return _TEXT[self]

    @property
    def outcome(self) -> Outcome:
        """The outcome an input given this reason ends in."""
        if self in _HELD:
            return Outcome.HELD_BACK
        if self is Reason.DICOMDIR:
            return Outcome.NOT_COPIED
        if self is Reason.DUPLICATE:
            return Outcome.DUPLICATE
        if self in (Reason.NO_FASTMRI_LAYOUT, *DOUBTS):
            return (
                Outcome.WRITTEN
            )  # NO_FASTMRI_LAYOUT: released as ISMRMRD, without a training file
        return Outcome.QUARANTINED

    @property
    def review_fact(self) -> str:
        """The run fact counting outputs written with this reason as a doubt (PHI-free)."""
        return f"to be reviewed: {self.text}"

    def __str__(self) -> str:
        return self.value


_HELD = frozenset(
    {
        Reason.MAY_CARRY_BURNED_IN_TEXT,
        Reason.TEXT_NOT_LOCATED,
        Reason.TOO_MUCH_TEXT,
        Reason.SUBJECT_UNKNOWN,
    }
)
#: Doubts: the output is written, and a person sees it before it is released
#: (the ingest flow sends it to the review queue; ``deid`` counts them).
DOUBTS = frozenset({Reason.FREE_TEXT_NAMED_SUBJECT, Reason.UNKNOWN_PRIVATE_CREATOR_KEPT})
_TEXT = {
    Reason.NOT_A_REGULAR_FILE: "not a regular file (FIFO, socket, device, dangling link, "
    "link to a folder, or a folder that cannot be listed)",
    Reason.INPUT_IO_ERROR: "the input could not be read (I/O error)",
    Reason.UNREADABLE: "unreadable: not DICOM or raw data, damaged or cut short",
    Reason.TOO_LARGE: "too large: needs more memory than a worker may use",
    Reason.SOP_CLASS_NOT_ALLOWED: "SOP class not on the allowlist",
    Reason.SIEMENS_CSA_NON_IMAGE: "Siemens CSA Non-Image object (private SOP class): its data "
    "are vendor binaries in private elements no rule can clean",
    Reason.IMAGE_WITHOUT_PIXELS: "an image object with no pixel data: nothing to release",
    Reason.INVALID_ISMRMRD_HEADER: "the anonymized ISMRMRD header is not valid",
    Reason.SUBJECTS_DISAGREE: "the measurements of one file name different subjects",
    Reason.OUTPUT_CONFLICT: "another input becomes the same output with other content",
    Reason.CHANGED_AT_SOURCE: "changed at the source since its output was written "
    "(same identity, other content)",
    Reason.NO_FASTMRI_LAYOUT: "no fastMRI layout (undersampled, non-Cartesian, ...)",
    Reason.INTERNAL_ERROR: "processing failed (an internal error: report it)",
    Reason.STALLED: "stalled: no progress within the stall limit",
    Reason.WORKER_DIED: "its worker process died",
    Reason.MAY_CARRY_BURNED_IN_TEXT: "may carry burned-in text",
    Reason.TEXT_NOT_LOCATED: "burned-in text signalled but not located",
    Reason.TOO_MUCH_TEXT: "too much text found to blank",
    Reason.SUBJECT_UNKNOWN: "subject unknown",
    Reason.FREE_TEXT_NAMED_SUBJECT: "kept free text named the file's own patient, and the "
    "profile cleans without a vocabulary (the name was removed; what else the text says is "
    "worth a look)",
    Reason.UNKNOWN_PRIVATE_CREATOR_KEPT: "private elements of a creator no rule names were kept "
    "(the profile keeps private data it knows nothing about)",
    Reason.DICOMDIR: "DICOMDIR index (names patients; never copied)",
    Reason.DUPLICATE: "duplicate of another input (same output, same content)",
}
assert set(_TEXT) == set(Reason), "every reason needs its text"
