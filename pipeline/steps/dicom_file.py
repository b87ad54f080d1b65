"""The ``deid`` step: one DICOM file's header de-identified and, with pixel cleaning, its pixels.

This is where the two halves meet: :mod:`pipeline.dicom` knows headers,
:mod:`pipeline.pixels` knows pixels, and neither imports the other's
runner; the step reads the file once, classifies it, plans and applies the
pixel cleaning, de-identifies the header and writes the result under a temp
name for the runner (:mod:`pipeline.batch`) to commit.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from pipeline import __version__
from pipeline.atomic import write_temp
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.batch.step import (
    Area,
    Candidate,
    Item,
    LinkRow,
    StepResult,
    WorkerEnv,
    not_a_file,
    rejected,
    result_of_error,
)
from pipeline.dicom.csa import load_csa_allowlist
from pipeline.dicom.deidentify import (
    add_method_code,
    classify,
    deidentify_dataset,
    rebuild_file_meta,
)
from pipeline.dicom.dicomdir import write_fileset
from pipeline.dicom.profile import MethodCode, Profile
from pipeline.dicom.stream_write import write_stream_pieces
from pipeline.dicom.tally import default_facts, edit_facts
from pipeline.errors import HeldBack, LocationError
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.phi import Phi
from pipeline.pixels.blank import (
    CleanedFrames,
    ManualBox,
    PixelAction,
    PixelCleaning,
    PixelPlan,
    blank_pixels,
    plan_cleaning,
    plan_manual,
)
from pipeline.pixels.encode import (
    PixelStream,
    remove_overlays_and_icons,
    store_pixels,
    stream_native,
)
from pipeline.pixels.scan import header_signals, scan_dataset
from pipeline.private_store import PrivateStore
from pipeline.read.content import sha256_of
from pipeline.read.dicom import is_dicomdir, quiet_pydicom, read_dicom
from pipeline.read.dicom_stream import Decline, StreamRead, read_dicom_stream
from pipeline.reasons import Outcome, Reason
from pipeline.storage import writing

CLEAN_PIXEL_DATA = MethodCode("113101", "Clean Pixel Data Option")
# Which reader and writer a file took (run facts: counts only, never a value).
STREAM_FACT = "header path: byte stream"
PYDICOM_FACT = "header path: pydicom: "
_PIXEL_WORK = "pixel cleaning or a reviewer's redaction"


@dataclass
class DicomStep:
    """De-identify DICOM files into ``output`` (:class:`~pipeline.batch.step.Step`).

    Parameters
    ----------
    key : SecretKey
    profile : Profile
    output : Path
        The release folder.
    keep_burned_in : bool
        Write files that may carry burned-in text (by their header, or text
        the scan could not locate or blank) as they are instead of holding
        them back, each with its reason as a doubt
        (:attr:`~pipeline.batch.step.StepResult.doubts`): ``deid`` counts
        them, the ingest flow sends them to the review queue, where a person
        approves, redacts or rejects the file itself.
    cleaning : PixelCleaning, optional
        ``--clean-pixels``: blank burned-in text (region rules and OCR).
    redactions : Mapping[str, tuple of ManualBox], optional
        Per input (by content sha256), the boxes a reviewer decided to
        redact: blanked on top of the pixel rules (and blanked even without
        ``cleaning``).  Data of the step, sent to each worker with it; part
        of :meth:`digest`, so an input with a new redaction is never skipped
        as unchanged.
    """

    key: SecretKey
    profile: Profile
    output: Path
    keep_burned_in: bool = False
    cleaning: PixelCleaning | None = None
    redactions: Mapping[str, tuple[ManualBox, ...]] = field(default_factory=dict)
    command: str = "deid"
    incremental: bool = True
    _env: WorkerEnv | None = field(default=None, repr=False)
    _uids: UidMapper | None = field(default=None, repr=False)

    @property
    def areas(self) -> dict[Area, Path]:
        return {Area.RELEASE: self.output}

    @property
    def key_fingerprint(self) -> str:
        return self.key.fingerprint

    def digest(self) -> str:
        """The rules, options and code version that decide an output's bytes."""
        parts: dict[str, object] = {
            "version": __version__,
            "profile": self.profile.digest,
            # The CSA allowlist decides the bytes of a rebuilt Siemens header.
            "csa_allowlist": load_csa_allowlist().digest,
            "keep_burned_in": self.keep_burned_in,
        }
        if self.cleaning is not None:
            cleaning = self.cleaning
            parts["cleaning"] = [
                cleaning.engine.name, cleaning.rules.digest, cleaning.prefilter,
                cleaning.max_text_fraction, cleaning.margin,
            ]  # fmt: skip
        if self.redactions:
            parts["redactions"] = {
                sha: [[b.frame, b.area.x, b.area.y, b.area.width, b.area.height] for b in boxes]
                for sha, boxes in sorted(self.redactions.items())
            }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def setup(self, env: WorkerEnv) -> None:
        quiet_pydicom()
        self._env = env
        self._uids = UidMapper(self.key)

    def run(self, item: Item) -> StepResult:
        refused = not_a_file(item.path)
        if refused is not None:
            return refused
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            return rejected(Outcome.QUARANTINED, Reason.INPUT_IO_ERROR, type(exc).__name__)
        except MemoryError as exc:
            return result_of_error(exc, "", "input")
        sha = sha256_of(data)
        try:
            return self.deidentify(data, sha)
        except Exception as exc:
            return result_of_error(exc, sha, f"input {sha[:12]}")

    def deidentify(self, data: bytes, sha256: str) -> StepResult:
        """De-identify one file's bytes into a temp file of the release (raises for bad input)."""
        env, uids = self._env, self._uids
        assert env is not None and uids is not None, "setup() runs before the first input"
        label = f"input {sha256[:12]}"
        cleaning, profile = self.cleaning, self.profile
        manual = self.redactions.get(sha256, ())
        # One path per file, decided before the rules run: the byte stream
        # (read and written by spans) where it reads the file and no pixel is
        # rewritten, else pydicom throughout.  Both give the same bytes.
        stream: StreamRead | None = None
        why: str
        if cleaning is not None or manual:
            why = _PIXEL_WORK
        else:
            found = read_dicom_stream(data, label)
            if isinstance(found, Decline):
                why = found.value
            else:
                stream, why = found, ""
        ds = (
            stream.dataset
            if stream
            else read_dicom(data, label, max_inflated=env.max_inflated_bytes)
        )
        if is_dicomdir(ds):
            return rejected(Outcome.NOT_COPIED, Reason.DICOMDIR, sha256=sha256)
        # A reviewer who redacted the file has looked at its burned-in text.
        looked_at = cleaning is not None or bool(manual)
        # With keep_burned_in, what would be held back is written as it is and
        # flagged as a doubt: a person sees it before it is released.
        kept: set[Reason] = set()
        try:
            classify(ds, profile, keep_burned_in=looked_at)
        except HeldBack as held:
            if not self.keep_burned_in:
                raise
            kept.add(held.reason)
        plan: PixelPlan | None = None
        original: Dataset | None = None
        pixels = ""
        if cleaning is not None or manual:
            # The scan and the rules read a copy of their own: decoding touches
            # the dataset, and an untouched file must be written byte for byte.
            original = read_dicom(data, label, max_inflated=env.max_inflated_bytes)
            if cleaning is not None:
                plan = plan_pixels(original, label, cleaning, profile, env.progress, manual)
            else:
                plan = plan_manual(original, manual)
            pixels = plan.action.value
            if plan.reason:
                if not self.keep_burned_in:
                    raise HeldBack(plan.reason, plan.held)
                # --keep-burned-in: written as it is, for a person to review.
                pixels = "not cleaned (kept for review)"
                kept.add(plan.held or Reason.MAY_CARRY_BURNED_IN_TEXT)
        ctx, link, relpath, vendor_facts = deidentify_dataset(ds, self.key, profile, uids)
        cleaned: PixelStream | None = None
        if plan is not None and original is not None:
            cleaned = apply_pixel_plan(ds, original, plan, label)
        assert cleaned is None or stream is None, "cleaned pixels are written by pydicom's path"
        written: Iterable[bytes | memoryview] | None = (
            write_stream_pieces(ds, stream) if stream is not None else None
        )
        if written is None:
            if stream is not None:
                why = "written by pydicom (another syntax or character set)"
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            written = [buffer.getbuffer()]
            if cleaned is not None:  # the frames follow, decoded as they are written
                implicit = UID(ds.file_meta.TransferSyntaxUID).is_implicit_VR
                written = itertools.chain(written, cleaned.pieces(implicit))
        folder = env.temp_dirs[Area.RELEASE]
        digest = hashlib.sha256()
        with writing("OUTPUT", folder):
            temp = write_temp(folder, written, digest)
        facts = list(vendor_facts)
        facts.append((PYDICOM_FACT + why if why else STREAM_FACT, 1))
        facts += default_facts(ctx.by_default)
        facts += edit_facts(ctx.edited)
        if pixels:
            facts.append((f"pixels {pixels}", 1))
        return StepResult(
            Outcome.WRITTEN,
            sha256,
            detail=Phi(pixel_account(plan)),
            outputs=(Candidate(Area.RELEASE, relpath, os.fspath(temp), digest.hexdigest()),),
            links=(LinkRow(sha256, relpath, link),),
            facts=tuple(facts),
            doubts=tuple(sorted(ctx.doubts | kept, key=list(Reason).index)),
        )


def plan_pixels(
    ds: Dataset,
    label: str,
    cleaning: PixelCleaning,
    profile: Profile,
    progress: Callable[[], None] | None = None,
    manual: Sequence[ManualBox] = (),
) -> PixelPlan:
    """Scan ``ds`` (the original file) and decide what to blank (with a reviewer's ``manual``).

    A file whose header signals burned-in text is read whole (no pre-filter):
    the header already says there is text to find; unless a header prior of
    the pixel rules matches it (``rules/pixels/priors.yaml``), and then its
    text lines are read (see :mod:`pipeline.pixels.regions`).

    Raises
    ------
    UnreadableInput
        The pixel data, an overlay or an icon cannot be decoded.
    """
    signals = header_signals(ds, profile.sop)
    prior = cleaning.rules.prior_for(ds)
    finding = scan_dataset(
        ds, label, cleaning.engine, policy=profile.sop,
        prefilter=cleaning.prefilter and (prior is not None or not signals), progress=progress,
        prior=prior,
    )  # fmt: skip
    return plan_cleaning(
        ds,
        finding,
        cleaning.rules.matching(ds),
        max_text_fraction=cleaning.max_text_fraction,
        margin=cleaning.margin,
        manual=manual,
    )


def apply_pixel_plan(
    ds: Dataset, original: Dataset, plan: PixelPlan, label: str, *, stream: bool = True
) -> PixelStream | None:
    """Blank, re-encode and mark the de-identified ``ds`` as ``plan`` says.

    Only a cleaned plan changes anything; an untouched or held (but kept with
    --keep-burned-in) file is written as without --clean-pixels.  Where the
    pixels are rewritten, they are returned as a :class:`PixelStream` to
    write after ``ds`` (which then holds no Pixel Data): decoded, blanked
    and written one frame at a time.  Without ``stream`` (and where a
    stream cannot be made) they are stored in ``ds``, decoded whole.
    """
    if plan.action is not PixelAction.CLEANED:
        return None
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    pixels: PixelStream | None = None
    if plan.rewrite_pixels:
        made = stream_native(ds, CleanedFrames(original, plan, label), syntax) if stream else None
        if made is None:
            syntax = store_pixels(ds, blank_pixels(original, plan, label), syntax)
        else:
            syntax, pixels = made
    if plan.remove_overlays:
        remove_overlays_and_icons(ds)
    # Every text found was blanked or left in a keep area as not PHI, and
    # every header signal was explained: PS3.3 C.7.6.1.1.7 allows NO.
    ds.BurnedInAnnotation = "NO"
    add_method_code(ds, CLEAN_PIXEL_DATA)
    rebuild_file_meta(ds, syntax)
    return pixels


def pixel_account(plan: PixelPlan | None) -> str:
    """For the private run record: what cleaning did (counts and rule names, no PHI)."""
    if plan is None or plan.action is not PixelAction.CLEANED:
        return ""
    filled = sum(len(areas) for areas in plan.frame_areas)
    rules = "; ".join(plan.rules) or "none"
    return (
        f"pixels cleaned: {plan.words_blanked} OCR word box(es) blanked, {plan.words_kept} left "
        f"in keep areas, {plan.by_hand} box(es) a reviewer redacted, {filled} rectangle(s) "
        f"filled over {len(plan.frame_areas)} frame(s); overlays and icons removed; "
        f"region rules: {rules}"
    )


def deidentify_tree(
    source: Path,
    output: Path,
    key: SecretKey,
    profile: Profile,
    private: PrivateStore,
    *,
    jobs: int | None = None,
    keep_burned_in: bool = False,
    dicomdir: bool = False,
    cleaning: PixelCleaning | None = None,
    options: RunOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """De-identify every file under ``source`` into ``output``: the ``deid`` command.

    With ``dicomdir`` the release is laid out as a DICOM File-set with a new
    DICOMDIR (see :mod:`pipeline.dicom.dicomdir`); OUTPUT must then be empty.
    With ``cleaning`` (``--clean-pixels``) burned-in text is blanked
    (:mod:`pipeline.pixels.blank`); the engine is checked before any file is read.
    """
    if cleaning is not None:
        _ = cleaning.engine.name  # a missing OCR program is a setup error, not a file's
    options = options or RunOptions()
    if jobs is not None:
        options = _with_jobs(options, jobs)
    if dicomdir and output.is_dir() and any(p.name != ".mricurate" for p in output.iterdir()):
        raise LocationError(
            f"--dicomdir writes a whole File-set: OUTPUT {output} must be empty (or new)"
        )
    step = DicomStep(key, profile, output, keep_burned_in=keep_burned_in, cleaning=cleaning)
    summary = run_batch(step, source, private, options, progress=progress)
    if dicomdir and summary.written:
        root = output.resolve()
        written = private.outputs_of_run(summary.run_id, os.fsencode(root))
        private.move_outputs(summary.run_id, os.fsencode(root), write_fileset(root, written))
    return summary


def _with_jobs(options: RunOptions, jobs: int) -> RunOptions:
    from dataclasses import replace

    return replace(options, jobs=max(1, jobs))
