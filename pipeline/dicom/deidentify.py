"""De-identify one DICOM file: read, classify, apply the profile, write to a temp name.

This is the file boundary: every expected failure becomes an
:class:`~pipeline.errors.InputError` with a PHI-free reason, so the caller can
quarantine the input and go on.  The result is a small frozen record that the
runner (and later the flows) commit and persist.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pipeline import __version__
from pipeline.atomic import write_temp
from pipeline.dicom.burned_in import burned_in_signals
from pipeline.dicom.engine import Change, FileContext, apply_profile
from pipeline.dicom.profile import MethodCode, Profile
from pipeline.dicom.vendor import carry_diffusion
from pipeline.errors import HeldBack, InputError, UnreadableInput, UnsupportedObject
from pipeline.identity.links import LinkRecord
from pipeline.identity.subjects import subject_day_offset, subject_key, subject_pseudonym
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.content import sha256_of
from pipeline.read.dicom import is_dicomdir, read_dicom
from pipeline.reasons import Outcome

if TYPE_CHECKING:  # pipeline.pixels imports this module: imported where used
    from pipeline.pixels.blank import PixelCleaning, PixelPlan

# Our own implementation class UID: 2.25 + a UUID derived from the project name.
IMPLEMENTATION_CLASS_UID = UID("2.25.217106185428227311926419468296418335589")
IMPLEMENTATION_VERSION = "MRICURATE_" + __version__.replace(".", "")[:6]

_NAME_KEYWORDS = (
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "ResponsiblePerson",
)  # fmt: skip
_ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "InstitutionName",
    "StationName", "DeviceSerialNumber", "MedicalRecordLocator", "PatientTelephoneNumbers",
    "RequestedProcedureID", "AdmissionID", "PatientAddress",
)  # fmt: skip
_DATE_KEYWORDS = ("PatientBirthDate", "StudyDate", "SeriesDate", "ContentDate")
_SNAPSHOT_KEYWORDS = ("SpecificCharacterSet", *_NAME_KEYWORDS, *_ID_KEYWORDS, *_DATE_KEYWORDS)
CLEAN_PIXEL_DATA = MethodCode("113101", "Clean Pixel Data Option")


@dataclass(frozen=True)
class DeidResult:
    """What happened to one input; ``temp_path`` still has to be committed."""

    input_path: Path
    sha256: str
    outcome: Outcome
    reason: str = ""  # PHI-free, groups the summary
    detail: str = ""  # for the private store only
    output_relpath: str | None = None
    temp_path: Path | None = None
    link: LinkRecord | None = None
    carried: tuple[str, ...] = ()
    output_sha256: str = ""
    pixels: str = ""  # with --clean-pixels: untouched, cleaned, held back, not cleaned (kept)


def classify(ds: Dataset, profile: Profile, *, keep_burned_in: bool) -> None:
    """Raise if the object may not be released (quarantine) or must wait (held back)."""
    sop_class = str(ds.SOPClassUID).strip("\0 ")
    policy = profile.sop
    allowed = sop_class in policy.allowed or any(
        sop_class in uids
        for option, uids in policy.allowed_with_option.items()
        if option in profile.options
    )
    if not allowed:
        name = UID(sop_class).name if UID(sop_class).is_valid else sop_class
        known = name != sop_class
        raise UnsupportedObject(
            f"SOP class {sop_class} ({name if known else 'unknown or private'}) is not on the "
            f"allowlist ({policy.origin}); header rules cannot clean such objects. Allow it in "
            "a site file only after checking what its content can hold."
        )
    if keep_burned_in:
        return
    signals = burned_in_signals(ds, policy)
    if signals:
        raise HeldBack(
            "may carry burned-in text (" + ", ".join(signals) + "); held back until the pixel "
            "scan cleans it, or pass --keep-burned-in to write it for later review"
        )


def _snapshot(ds: Dataset, keywords: tuple[str, ...]) -> Dataset:
    """The identifying elements as read, undecoded: cheap now, decoded only if needed."""
    tags = [t for t in (tag_for_keyword(k) for k in keywords) if t is not None and t in ds]
    return Dataset({BaseTag(t): ds.get_item(t) for t in tags})


def build_context(
    ds: Dataset, key: SecretKey, profile: Profile, uids: UidMapper, *, explain: bool = False
) -> tuple[FileContext, str]:
    """The per-file context and the subject's normalised identity."""
    subject = subject_key(
        str(ds.get("PatientID", "") or ""),
        str(ds.get("IssuerOfPatientID", "") or ""),
        str(ds.get("PatientName", "") or ""),
        str(ds.get("StudyInstanceUID", "") or ""),
    )
    ctx = FileContext(
        key=key,
        profile=profile,
        uids=uids,
        subject=subject_pseudonym(key, subject),
        days=subject_day_offset(key, subject, profile.date_shift_days),
        originals=_snapshot(ds, _SNAPSHOT_KEYWORDS),
        changes=[] if explain else None,
    )
    return ctx, subject


def mark_deidentified(ds: Dataset, ctx: FileContext) -> None:
    """Record what was actually done (PS3.15 E.1.1 and CID 7050)."""
    profile = ctx.profile
    codes = tuple(
        c for c in profile.codes if not c.only_when_applied or c.value in ctx.applied_options
    )
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"mricurate {__version__} profile {profile.name}"[:64]
    ds.DeidentificationMethodCodeSequence = _code_sequence(codes)
    options = profile.options
    if "retain_long_full_dates" in options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif "retain_long_modified_dates" in options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _code_sequence(codes: tuple[MethodCode, ...]) -> Sequence:
    """A fresh sequence built from cached items (the items are never modified)."""
    return Sequence(list(_code_items(codes)))


@lru_cache(maxsize=64)
def _code_items(codes: tuple[MethodCode, ...]) -> tuple[Dataset, ...]:
    items = []
    for code in codes:
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = code.meaning
        items.append(item)
    return tuple(items)


def _transfer_syntax(ds: Dataset) -> UID:
    """The syntax to write in: the file's own, unless its dataset contradicts it.

    Some exporters label an implicit VR dataset as explicit VR.  Elements read
    that way carry no VR, so a native file is written back as Implicit VR
    Little Endian (a lossless relabelling); a compressed one cannot be, and is
    refused rather than written inconsistent.
    """
    implicit, little = ds.original_encoding
    # pydicom reports the encoding the meta promised; raw elements without a VR
    # show what it actually found.
    first_raw = next((e for e in ds.elements() if isinstance(e, RawDataElement)), None)
    implicit = implicit or (first_raw is not None and first_raw.VR is None)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        syntax = UID(meta.TransferSyntaxUID)
        if not (implicit and not syntax.is_implicit_VR):
            return syntax
        if syntax.is_compressed:
            raise UnreadableInput(
                f"dataset is implicit VR but its transfer syntax ({syntax.name}) is explicit VR: "
                "a damaged export; export it again"
            )
        return ImplicitVRLittleEndian
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def rebuild_file_meta(ds: Dataset, syntax: UID) -> None:
    """Our own file meta: no source AE title, no original implementation identity."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    ds.preamble = b"\0" * 128


def output_relpath(key: SecretKey, subject: str, study: str, series: str, sop: str) -> str:
    """``<subject>/<study>/<series>/<instance>.dcm``, built from keyed tokens only."""
    return "/".join(
        (
            subject_pseudonym(key, subject),
            key.pseudonym("study", study, prefix="ST-"),
            key.pseudonym("series", series, prefix="SE-"),
            key.pseudonym("instance", sop, length=16) + ".dcm",
        )
    )


def deidentify_dataset(
    ds: Dataset, key: SecretKey, profile: Profile, uids: UidMapper, *, explain: bool = False
) -> tuple[FileContext, LinkRecord, str, tuple[str, ...]]:
    """Apply ``profile`` to ``ds`` in place; return context, link record, output path, carried."""
    ctx, subject = build_context(ds, key, profile, uids, explain=explain)
    original = {k: str(ds.get(k, "") or "").strip("\0 ") for k in (
        "PatientID", "IssuerOfPatientID", "PatientName",
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    )}  # fmt: skip
    syntax = _transfer_syntax(ds)
    carried = tuple(carry_diffusion(ds))
    apply_profile(ds, ctx)
    mark_deidentified(ds, ctx)
    rebuild_file_meta(ds, syntax)
    link = LinkRecord(
        patient_id=original["PatientID"],
        issuer=original["IssuerOfPatientID"],
        patient_name=original["PatientName"],
        subject=ctx.subject,
        day_offset=ctx.days,
        study_uid=original["StudyInstanceUID"],
        new_study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=original["SeriesInstanceUID"],
        new_series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=original["SOPInstanceUID"],
        new_sop_uid=str(ds.get("SOPInstanceUID", "")),
        frame_of_reference_uid=original["FrameOfReferenceUID"],
    )
    relpath = output_relpath(
        key, subject, original["StudyInstanceUID"], original["SeriesInstanceUID"],
        original["SOPInstanceUID"],
    )  # fmt: skip
    return ctx, link, relpath, carried


def deidentify_file(
    path: Path,
    data: bytes,
    sha256: str,
    output: Path,
    key: SecretKey,
    profile: Profile,
    uids: UidMapper,
    *,
    keep_burned_in: bool = False,
    cleaning: PixelCleaning | None = None,
) -> DeidResult:
    """De-identify one input into a temporary file in ``output`` (committed by the runner).

    With ``cleaning`` (``deid --clean-pixels``) every input's pixels are
    scanned and its burned-in text blanked (:mod:`pipeline.pixels.blank`);
    header signals no longer hold a file back by themselves, only text that
    could not be located or blanked does.
    """
    label = f"input {sha256[:12]}"
    pixels = ""
    plan: PixelPlan | None = None
    try:
        ds = read_dicom(data, label)
        if is_dicomdir(ds):
            return DeidResult(
                path, sha256, Outcome.NOT_COPIED, "DICOMDIR index (names patients; never copied)"
            )
        classify(ds, profile, keep_burned_in=keep_burned_in or cleaning is not None)
        original = None
        if cleaning is not None:
            # The scan and the rules read a copy of their own: decoding touches
            # the dataset, and an untouched file must be written byte for byte.
            original = read_dicom(data, label)
            plan = plan_pixels(original, label, cleaning, profile)
            pixels = plan.action.value
            if plan.reason:
                if not keep_burned_in:
                    held = HeldBack(plan.reason)
                    held.reason = plan.summary or held.reason
                    raise held
                # --keep-burned-in: written as it is, for a person to review.
                pixels = "not cleaned (kept for review)"
        _, link, relpath, carried = deidentify_dataset(ds, key, profile, uids)
        if plan is not None and original is not None:
            _apply_pixel_plan(ds, original, plan, label)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        written = buffer.getvalue()
        # Written in OUTPUT's top folder; the runner syncs and renames it into place.
        tmp = write_temp(output, written)
    except HeldBack as exc:
        return DeidResult(path, sha256, Outcome.HELD_BACK, exc.reason, exc.detail, pixels=pixels)
    except InputError as exc:
        return DeidResult(path, sha256, Outcome.QUARANTINED, exc.reason, exc.detail)
    except Exception as exc:
        return DeidResult(
            path,
            sha256,
            Outcome.QUARANTINED,
            f"processing error ({type(exc).__name__})",
            f"{label}: {type(exc).__name__}: {exc}",
        )
    return DeidResult(
        path, sha256, Outcome.WRITTEN, output_relpath=relpath, temp_path=tmp, link=link,
        carried=carried, output_sha256=sha256_of(written), pixels=pixels,
        detail=_pixel_account(plan),
    )  # fmt: skip


def _pixel_account(plan: PixelPlan | None) -> str:
    """For the private run record: what cleaning did (counts and rule names, no PHI)."""
    from pipeline.pixels.blank import PixelAction

    if plan is None or plan.action is not PixelAction.CLEANED:
        return ""
    filled = sum(len(areas) for areas in plan.frame_areas)
    rules = "; ".join(plan.rules) or "none"
    return (
        f"pixels cleaned: {plan.words_blanked} OCR word box(es) blanked, {plan.words_kept} left "
        f"in keep areas, {filled} rectangle(s) filled over {len(plan.frame_areas)} frame(s); "
        f"overlays and icons removed; region rules: {rules}"
    )


def plan_pixels(ds: Dataset, label: str, cleaning: PixelCleaning, profile: Profile) -> PixelPlan:
    """Scan ``ds`` (the original file) and decide what to blank.

    A file whose header signals burned-in text is read whole (no pre-filter):
    the header already says there is text to find.

    Raises
    ------
    UnreadableInput
        The pixel data, an overlay or an icon cannot be decoded.
    """
    from pipeline.pixels.blank import plan_cleaning
    from pipeline.pixels.scan import header_signals, scan_dataset

    signals = header_signals(ds, profile.sop)
    finding = scan_dataset(
        ds, label, cleaning.engine, policy=profile.sop,
        prefilter=cleaning.prefilter and not signals,
    )  # fmt: skip
    return plan_cleaning(
        ds,
        finding,
        cleaning.rules.matching(ds),
        max_text_fraction=cleaning.max_text_fraction,
        margin=cleaning.margin,
    )


def _apply_pixel_plan(ds: Dataset, original: Dataset, plan: PixelPlan, label: str) -> None:
    """Blank, re-encode and mark the de-identified ``ds`` as ``plan`` says.

    Only a cleaned plan changes anything; an untouched or held (but kept with
    --keep-burned-in) file is written as without --clean-pixels.
    """
    from pipeline.pixels.blank import PixelAction, blank_pixels
    from pipeline.pixels.encode import remove_overlays_and_icons, store_pixels

    if plan.action is not PixelAction.CLEANED:
        return
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if plan.rewrite_pixels:
        syntax = store_pixels(ds, blank_pixels(original, plan, label), syntax)
    if plan.remove_overlays:
        remove_overlays_and_icons(ds)
    # Every text found was blanked or left in a keep area as not PHI, and
    # every header signal was explained: PS3.3 C.7.6.1.1.7 allows NO.
    ds.BurnedInAnnotation = "NO"
    items = list(ds.get("DeidentificationMethodCodeSequence") or [])
    if not any(item.get("CodeValue") == CLEAN_PIXEL_DATA.value for item in items):
        ds.DeidentificationMethodCodeSequence = Sequence(
            items + list(_code_items((CLEAN_PIXEL_DATA,)))
        )
    rebuild_file_meta(ds, syntax)


def explain(data: bytes, key: SecretKey, profile: Profile) -> list[Change]:
    """The dry run: every element's before -> after and the rule that decided it."""
    ds = read_dicom(data, "input")
    uids = UidMapper(key)
    ctx, _, _, _ = deidentify_dataset(ds, key, profile, uids, explain=True)
    return ctx.changes or []
