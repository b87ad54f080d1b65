"""De-identify one DICOM dataset's header: classify it, apply the profile, mark it.

Every expected failure becomes an :class:`~pipeline.errors.InputError` with
a PHI-free reason.  Reading the file is :mod:`pipeline.read.dicom`'s;
composing this with pixel cleaning, writing and committing is the step's
(:mod:`pipeline.steps.dicom_file`).
"""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pipeline import __version__
from pipeline.dicom.burned_in import burned_in_signals
from pipeline.dicom.csa import rebuild_csa_headers
from pipeline.dicom.engine import Change, FileContext, apply_profile
from pipeline.dicom.profile import MethodCode, Profile
from pipeline.dicom.vendor import carry_diffusion
from pipeline.errors import HeldBack, UnreadableInput, UnsupportedObject
from pipeline.identity.links import LinkRecord
from pipeline.identity.subjects import subject_day_offset, subject_key, subject_pseudonym
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.read.dicom import read_dicom
from pipeline.read.peek import peek_value, tag_object
from pipeline.reasons import Reason

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


_MEDIA_SOP_CLASS = BaseTag(0x00020002)
_MEDIA_SOP_INSTANCE = BaseTag(0x00020003)
_TRANSFER_SYNTAX = BaseTag(0x00020010)
_IMPLEMENTATION_CLASS = BaseTag(0x00020012)
_IMPLEMENTATION_VERSION = BaseTag(0x00020013)
_PATIENT_IDENTITY_REMOVED = 0x00120062
_DEIDENTIFICATION_METHOD = 0x00120063
_METHOD_CODES = 0x00120064  # DeidentificationMethodCodeSequence
_LONGITUDINAL = 0x00280303  # LongitudinalTemporalInformationModified

# Siemens "CSA Non-Image Storage": spectroscopy, raw and protocol data of older syngo systems.
SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"

# What an object of a refused class is and why its content keeps it out, by
# words of its SOP class name (PS3.6): the first match says it.
_KINDS = (
    ("SR Storage", "a structured report: its content items hold free text, which only the "
     "Clean Structured Content option (clean_structured_content.yaml) cleans"),
    ("Encapsulated", "an encapsulated document (PDF, CDA, STL, ...): its bytes can name the "
     "patient, and no header rule reads them"),
    ("Waveform", "a waveform (ECG, pressure, audio, ...): signal channels an MRI release does "
     "not carry, with annotations header rules were not written for"),
    ("Presentation State", "a presentation state: display settings and free-text annotations "
     "for other images"),
    ("Key Object Selection", "a key object selection: a note on other images, in free text"),
    ("Raw Data", "raw data: vendor measurement data in private elements no rule can clean"),
    ("Photograph", "a photograph: its pixels can show a face"),
    ("Video", "a video: its pixels can show a face"),
    ("VL ", "a visible-light image: its pixels can show a face"),
    ("RT ", "a radiotherapy object: plans, structures and records with free text and "
     "references an MRI release does not carry"),
)  # fmt: skip


def _refused_kind(name: str) -> str:
    for words, kind in _KINDS:
        if words in name:
            return kind
    return "an object this release does not carry: the rules were not written for its content"


def classify(ds: Dataset, profile: Profile, *, keep_burned_in: bool) -> None:
    """Raise if the object may not be released (quarantine) or must wait (held back).

    A refusal says what the object is and why it stays out.
    """
    sop_class = str(peek_value(ds, "SOPClassUID")).strip("\0 ")
    policy = profile.sop
    allowed = sop_class in policy.allowed or any(
        sop_class in uids
        for option, uids in policy.allowed_with_option.items()
        if option in profile.options
    )
    if not allowed:
        where = f"not on the allowlist ({policy.origin})"
        if sop_class == SIEMENS_CSA_NON_IMAGE:
            raise UnsupportedObject(
                f"a Siemens CSA Non-Image object (private SOP class {sop_class}), which older "
                "syngo MR systems write for spectroscopy, raw and protocol data: its content is "
                'vendor binary data in private elements (spectra in (7FE1,"SIEMENS CSA '
                "NON-IMAGE\",10)) and CSA headers, which can hold the patient's name and the "
                "protocol's free text and which no rule can clean; removing them would leave "
                f"nothing to release. It is {where}; export spectroscopy as DICOM MR "
                "Spectroscopy Storage instead, which is released.",
                Reason.SIEMENS_CSA_NON_IMAGE,
            )
        uid = UID(sop_class)
        name = uid.name if uid.is_valid and uid.name != sop_class else ""
        what = (
            _refused_kind(name)
            if name
            else "a private or unknown SOP class: no standard says what it holds"
        )
        raise UnsupportedObject(
            f"SOP class {sop_class} ({name or 'unknown or private'}) is {what}; it is {where}. "
            "Allow it in a site file only after checking what its content can hold."
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
    present = ds._dict
    found: dict[BaseTag, RawDataElement | DataElement] = {}
    for tag in _tags_of(keywords):
        element = present.get(tag)
        if element is not None:
            if isinstance(element, RawDataElement) and element.value is None:
                element = ds.get_item(tag)  # what get_item does with a deferred value
            found[tag] = element
    return Dataset(found)


@lru_cache(maxsize=8)
def _tags_of(keywords: tuple[str, ...]) -> tuple[BaseTag, ...]:
    # The shared tag objects: the stream reader's data sets are keyed by them.
    return tuple(tag_object(t) for t in map(tag_for_keyword, keywords) if t is not None)


def build_context(
    ds: Dataset, key: SecretKey, profile: Profile, uids: UidMapper, *, explain: bool = False
) -> tuple[FileContext, str]:
    """The per-file context and the subject's normalised identity."""
    # Peeked, not decoded in place: what the rules keep is then copied as read.
    subject = subject_key(
        str(peek_value(ds, "PatientID", "") or ""),
        str(peek_value(ds, "IssuerOfPatientID", "") or ""),
        str(peek_value(ds, "PatientName", "") or ""),
        str(peek_value(ds, "StudyInstanceUID", "") or ""),
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
    method = f"mricurate {__version__} profile {profile.name}"[:64]
    options = profile.options
    if "retain_long_full_dates" in options:
        longitudinal = "UNMODIFIED"
    elif "retain_long_modified_dates" in options:
        longitudinal = "MODIFIED"
    else:
        longitudinal = "REMOVED"
    implicit, little = ds.original_encoding
    if implicit is None or little is not True or not method.isascii():
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = method
        ds.DeidentificationMethodCodeSequence = _code_sequence(codes)
        ds.LongitudinalTemporalInformationModified = longitudinal
        return
    # A data set read from a file gets the marks as raw elements, encoded as
    # pydicom's writer encodes them: both writers then copy their bytes.
    for tag, vr, text in (
        (_PATIENT_IDENTITY_REMOVED, "CS", "YES"),
        (_DEIDENTIFICATION_METHOD, "LO", method),
        (_LONGITUDINAL, "CS", longitudinal),
    ):
        data = text.encode("ascii")
        data += b" " * (len(data) % 2)
        ds[tag] = RawDataElement(BaseTag(tag), vr, len(data), data, 0, implicit, True)
    ds[_METHOD_CODES] = _encoded_codes(codes, implicit)


@lru_cache(maxsize=64)
def _encoded_codes(codes: tuple[MethodCode, ...], implicit: bool) -> RawDataElement:
    """DeidentificationMethodCodeSequence as the raw element pydicom's writer makes of it."""
    encoder = DicomBytesIO()
    encoder.is_little_endian = True
    encoder.is_implicit_VR = implicit
    write_data_element(encoder, DataElement(_METHOD_CODES, "SQ", _code_sequence(codes)))
    data = encoder.getvalue()
    value = data[8:] if implicit else data[12:]
    return RawDataElement(
        BaseTag(_METHOD_CODES), None if implicit else "SQ", len(value), value, 0, implicit, True
    )


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
    first_raw = None
    for tag in sorted(ds._dict, key=int):  # ds.elements(), without BaseTag's Python __lt__
        element = ds.get_item(tag)
        if isinstance(element, RawDataElement):
            first_raw = element
            break
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
    # The elements ``meta.MediaStorageSOPClassUID = ...`` and the rest would
    # set, made directly (group 0002, their dictionary VRs, in tag order).
    elements = meta._dict
    for tag, vr, value in (
        (_MEDIA_SOP_CLASS, "UI", peek_value(ds, "SOPClassUID")),
        (_MEDIA_SOP_INSTANCE, "UI", peek_value(ds, "SOPInstanceUID")),
        (_TRANSFER_SYNTAX, "UI", syntax),
        (_IMPLEMENTATION_CLASS, "UI", IMPLEMENTATION_CLASS_UID),
        (_IMPLEMENTATION_VERSION, "SH", IMPLEMENTATION_VERSION),
    ):
        elements[tag] = DataElement(tag, vr, value)
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
) -> tuple[FileContext, LinkRecord, str, tuple[tuple[str, int], ...]]:
    """Apply ``profile`` to ``ds`` in place.

    The vendor pre-steps run first, on the file as read: diffusion values
    are copied from private elements to standard attributes
    (:func:`~pipeline.dicom.vendor.carry_diffusion`), and a Siemens CSA image
    header the profile keeps is rebuilt from its allowlist
    (:func:`~pipeline.dicom.csa.rebuild_csa_headers`).

    Returns
    -------
    tuple
        The file's context, its link record, its output path and the
        pre-steps' PHI-free facts for the run summary.
    """
    ctx, subject = build_context(ds, key, profile, uids, explain=explain)
    original = {k: str(peek_value(ds, k, "") or "").strip("\0 ") for k in (
        "PatientID", "IssuerOfPatientID", "PatientName",
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    )}  # fmt: skip
    syntax = _transfer_syntax(ds)
    facts = [(f"carried {name} from vendor private elements", 1) for name in carry_diffusion(ds)]
    facts += rebuild_csa_headers(ds, profile, changes=ctx.changes)
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
        new_study_uid=str(peek_value(ds, "StudyInstanceUID", "")),
        series_uid=original["SeriesInstanceUID"],
        new_series_uid=str(peek_value(ds, "SeriesInstanceUID", "")),
        sop_uid=original["SOPInstanceUID"],
        new_sop_uid=str(peek_value(ds, "SOPInstanceUID", "")),
        frame_of_reference_uid=original["FrameOfReferenceUID"],
    )
    relpath = output_relpath(
        key, subject, original["StudyInstanceUID"], original["SeriesInstanceUID"],
        original["SOPInstanceUID"],
    )  # fmt: skip
    return ctx, link, relpath, tuple(facts)


def add_method_code(ds: Dataset, code: MethodCode) -> None:
    """Add ``code`` to DeidentificationMethodCodeSequence unless it is there."""
    items = list(ds.get("DeidentificationMethodCodeSequence") or [])
    if not any(item.get("CodeValue") == code.value for item in items):
        ds.DeidentificationMethodCodeSequence = Sequence(items + list(_code_items((code,))))


def explain(data: bytes, key: SecretKey, profile: Profile) -> list[Change]:
    """The dry run: every element's before -> after and the rule that decided it."""
    ds = read_dicom(data, "input")
    uids = UidMapper(key)
    ctx, _, _, _ = deidentify_dataset(ds, key, profile, uids, explain=True)
    return ctx.changes or []
