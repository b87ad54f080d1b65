"""Convert one raw input (Siemens twix, or another converter's ISMRMRD) into temp files.

The header is anonymized by conversion: the protocol becomes a full ISMRMRD
header, which passes through the allowlist in ``rules/ismrmrd/header.yaml``
and is validated against the ISMRMRD XSD before anything is written.  The
subject's pseudonym, date shift and UID map are the DICOM side's, so one key
links a subject's raw and DICOM data in the release.

Every measurement of the input is written (ISMRMRD, and a fastMRI file for
image measurements when asked) under a temp name, or none is: the runner
commits them together.  Bad input raises :class:`~pipeline.errors.InputError`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.atomic import TEMP_PREFIX
from pipeline.errors import UnreadableInput
from pipeline.identity.links import LinkRecord
from pipeline.identity.subjects import subject_day_offset, subject_pseudonym
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.raw.blocks import AcquisitionBlock, WaveformBlock
from pipeline.raw.fastmri import HEADER_FIELDS as FASTMRI_HEADER_FIELDS
from pipeline.raw.fastmri import FastmriUnsupported, export_fastmri
from pipeline.raw.header_rules import HeaderContext, HeaderRules, anonymize_header
from pipeline.raw.input_hash import InputHash
from pipeline.raw.ismrmrd_in import is_ismrmrd_file, ismrmrd_blocks, ismrmrd_groups, noise_only
from pipeline.raw.ismrmrd_out import durable_sha256, write_ismrmrd_temp
from pipeline.raw.protocol import ismrmrd_header, parse_protocol, subject_hints
from pipeline.raw.subject_lookup import RawIdentity, SubjectLookup, SubjectMatch, SubjectSource
from pipeline.raw.twix import measurement_blocks, open_twix
from pipeline.raw.xsd import validate_header
from pipeline.reasons import Reason

_TEMP_NUMBERS = itertools.count()

Blocks = Iterator[AcquisitionBlock | WaveformBlock]


@dataclass(frozen=True)
class ConvertedMeasurement:
    """One measurement written to temporary files, waiting to be committed."""

    relpath: str
    temp_path: Path
    link: LinkRecord
    acquisitions: int
    waveforms: int
    noise: bool
    sha256: str  # of the ISMRMRD temp file, hashed by its writer as it was made durable
    fastmri_relpath: str | None = None
    fastmri_temp: Path | None = None
    fastmri_skipped: str = ""  # why an image measurement has no fastMRI file (PHI-free)
    fastmri_sha256: str = ""  # of the fastMRI temp file, hashed as it was made durable

    def discard(self) -> None:
        self.temp_path.unlink(missing_ok=True)
        if self.fastmri_temp is not None:
            self.fastmri_temp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Conversion:
    """An input converted: what it was, whose it is, and its measurements."""

    kind: str  # "twix VB", "twix VD", "ismrmrd"
    source: SubjectSource
    measurements: tuple[ConvertedMeasurement, ...]


@dataclass(frozen=True)
class Converter:
    """What converting needs, set up once per worker.

    Parameters
    ----------
    key : SecretKey
    rules : HeaderRules
        The ISMRMRD header allowlist.
    span : (int, int)
        The DICOM profile's date-shift range (the same range gives a subject
        the same shift on both sides).
    lookup : SubjectLookup
    output, fastmri : Path
        Temp folders for the ISMRMRD and (optionally) the fastMRI files.
    progress : callable
        Called for every block read (the stall watchdog's heartbeat).
    """

    key: SecretKey
    rules: HeaderRules
    span: tuple[int, int]
    lookup: SubjectLookup
    output: Path
    fastmri: Path | None
    progress: Callable[[], None]

    @property
    def uids(self) -> UidMapper:
        return UidMapper(self.key)


@dataclass(frozen=True)
class _Plan:
    """One measurement of an input before conversion: its full header (PHI) and data."""

    index: int
    header: str
    noise: bool
    blocks: Callable[[], Blocks]  # opened only when the measurement is written


def _temp(folder: Path) -> Path:
    return folder / f"{TEMP_PREFIX}{os.getpid()}-{next(_TEMP_NUMBERS)}.h5"


def _identity(header: str) -> RawIdentity:
    hints = subject_hints(header)
    return RawIdentity(
        patient_id=hints.patient_id or "",
        study_uid=hints.study_uid or "",
        frame_of_reference_uid=hints.frame_of_reference_uid or "",
        measurement_id=hints.measurement_id or "",
        study_id=hints.study_id or "",
    )


def convert_input(path: Path, digest: InputHash, converter: Converter) -> Conversion:
    """Convert every measurement of ``path`` into temp files.

    ``digest`` is the input's SHA-256, taken on another thread from the
    bytes the twix reader reads (an ISMRMRD input, read by h5py, is hashed
    meanwhile on that thread); it seeds the output names and the
    ``--subjects`` lookup.

    Raises
    ------
    InputError
        Bad input; no temp file is left behind.
    """
    written: list[ConvertedMeasurement] = []
    sha = digest.hexdigest
    try:
        if is_ismrmrd_file(path):
            kind = "ismrmrd"
            digest.in_background()
            # One plan per dataset group: a converter may write each measurement
            # (its noise scan too) as a group of its own.
            plans = [
                _Plan(index, group.xml, noise_only(group), partial(ismrmrd_blocks, group))
                for index, group in enumerate(ismrmrd_groups(path))
            ]
        else:
            twix = open_twix(path)
            kind = f"twix {twix.version}"
            plans = [
                _Plan(
                    meas.index,
                    ismrmrd_header(
                        parse_protocol(meas.header_bytes),
                        noise=meas.is_noise,
                        waveforms=meas.syncdata > 0,
                    ),
                    meas.is_noise,
                    partial(measurement_blocks, twix, meas, digest=digest),
                )
                for meas in twix.measurements
            ]
        if not plans:
            raise UnreadableInput("the file holds no measurement: nothing to convert")
        identities = [_identity(plan.header) for plan in plans]
        match = _subject_of(converter.lookup, identities, sha)
        uids = converter.uids
        for plan, identity in zip(plans, identities, strict=True):
            written.append(_write_measurement(converter, uids, sha, plan, identity, match))
    except BaseException:
        for measurement in written:
            measurement.discard()
        raise
    return Conversion(kind, match.source, tuple(written))


def _subject_of(
    lookup: SubjectLookup, identities: list[RawIdentity], sha: Callable[[], str]
) -> SubjectMatch:
    """One subject for all measurements of an input (they were one session)."""
    matches = {lookup.find(identity, sha) for identity in identities}
    subjects = {m.subject for m in matches}
    if len(subjects) > 1:
        raise UnreadableInput(
            "the measurements of this file name different subjects; split the file or "
            "convert its measurements separately",
            Reason.SUBJECTS_DISAGREE,
        )
    # Prefer the strongest evidence when measurements found it differently.
    order = list(SubjectSource)
    return min(matches, key=lambda m: order.index(m.source))


def _write_measurement(
    converter: Converter,
    uids: UidMapper,
    digest: Callable[[], str],
    plan: _Plan,
    identity: RawIdentity,
    match: SubjectMatch,
) -> ConvertedMeasurement:
    """Anonymize, validate and write one measurement (and its fastMRI file) to temp names."""
    key = converter.key
    header, noise, index = plan.header, plan.noise, plan.index
    pseudonym = subject_pseudonym(key, match.subject)
    days = subject_day_offset(key, match.subject, converter.span)
    anonymous = anonymize_header(header, converter.rules, HeaderContext(key, pseudonym, days, uids))
    validate_header(anonymous)
    # Written under a temp name the runner renames: made durable (and hashed) on
    # another thread while the fastMRI export reads it.
    fastmri = converter.fastmri is not None and not noise
    written = write_ismrmrd_temp(
        converter.output, anonymous, _progressing(plan.blocks(), converter.progress),
        keep_headers=FASTMRI_HEADER_FIELDS if fastmri else (),  # the export's plan: no read-back
    )  # fmt: skip
    temp = written.path
    fastmri_temp = None
    try:
        with ThreadPoolExecutor(1) as syncing:
            durable = syncing.submit(durable_sha256, temp)
            fastmri_skipped = fastmri_sha256 = ""
            if fastmri and converter.fastmri is not None:
                fastmri_temp = _temp(converter.fastmri)
                try:
                    fastmri_sha256 = export_fastmri(
                        temp, fastmri_temp, headers=written.headers
                    ).sha256
                except FastmriUnsupported as exc:
                    # A valid measurement (undersampled, non-Cartesian, ...) is still
                    # released as ISMRMRD; it only has no training file.
                    fastmri_temp = None
                    fastmri_skipped = exc.detail
            ismrmrd_sha256 = durable.result()
        # Names come last: they need the input's hash, computed meanwhile.
        sha = digest()
    except BaseException:
        temp.unlink(missing_ok=True)
        if fastmri_temp is not None:
            fastmri_temp.unlink(missing_ok=True)
        raise
    # The DICOM side names study folders by the Study Instance UID: raw data that
    # carries one lands beside its images.  Twix has none, but its study ID (the
    # exam's LOID) still groups the measurements of one exam.
    study_source = identity.study_uid or (f"id:{identity.study_id}" if identity.study_id else "")
    study = key.pseudonym("study", study_source or f"raw:{sha}", prefix="ST-")
    name = key.pseudonym("measurement", f"{sha}#{index}", prefix="MEAS-")
    relpath = f"{pseudonym}/{study}/{name}{'-noise' if noise else ''}.h5"
    fastmri_relpath = f"{pseudonym}/{study}/{name}.h5" if fastmri_temp is not None else None
    link = LinkRecord(
        patient_id=match.patient_id or identity.patient_id,
        issuer=match.issuer,
        patient_name="",
        subject=pseudonym,  # as on the DICOM side: the link table's subject is the pseudonym
        day_offset=days,
        study_uid=identity.study_uid,
        new_study_uid=uids.remap(identity.study_uid) if identity.study_uid else "",
        series_uid="",
        new_series_uid="",
        sop_uid=identity.measurement_id,
        new_sop_uid="",
        frame_of_reference_uid=identity.frame_of_reference_uid,
    )
    return ConvertedMeasurement(
        relpath, temp, link, written.acquisitions, written.waveforms, noise, ismrmrd_sha256,
        fastmri_relpath, fastmri_temp, fastmri_skipped, fastmri_sha256,
    )  # fmt: skip


def _progressing(blocks: Blocks, progress: Callable[[], None]) -> Blocks:
    """Tell the watchdog about every block read: a stalled read is one that yields none."""
    for block in blocks:
        progress()
        yield block
