#!/usr/bin/env python3
"""Generate rules/dicom/basic_profile.yaml and rules/dicom/options/*.yaml.

Source: DICOM PS3.15 Table E.1-1 as JSON (the innolitics dicom-standard
export), passed as the first argument; the product never needs it at run
time, only this script does.  Run::

    python scripts/generate_dicom_rules.py ../shared/reference/confidentiality_profile_attributes.json

and commit the result.  A second argument, a folder, is written instead of
``rules/dicom``: the test that the committed files are up to date uses one of
its own, so that it never rewrites files other tests are reading.  Compound
actions (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) depend on the attribute's type in each
IOD, which the table does not give; they are resolved here to the choice
that is valid in every IOD (see ``resolve``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "rules" / "dicom"

LETTER = {"X": "remove", "Z": "empty", "D": "dummy", "K": "keep", "C": "clean", "U": "uid"}

# Column -> (file stem, CID 7050 code, code meaning, how its "C" is carried out)
OPTIONS = {
    "rtnSafePrivOpt": ("retain_safe_private", "113111", "Retain Safe Private Option", "keep"),
    "rtnUIDsOpt": ("retain_uids", "113110", "Retain UIDs Option", "clean"),
    "rtnDevIdOpt": ("retain_device_identity", "113109", "Retain Device Identity Option", "clean"),
    "rtnInstIdOpt": (
        "retain_institution_identity",
        "113112",
        "Retain Institution Identity Option",
        "clean",
    ),
    "rtnPatCharsOpt": (
        "retain_patient_characteristics",
        "113108",
        "Retain Patient Characteristics Option",
        "clean",
    ),
    "rtnLongFullDatesOpt": (
        "retain_long_full_dates",
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
        "keep",
    ),
    "rtnLongModifDatesOpt": (
        "retain_long_modified_dates",
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
        "shift",
    ),
    "cleanDescOpt": ("clean_descriptors", "113105", "Clean Descriptors Option", "clean"),
    "cleanStructContOpt": (
        "clean_structured_content",
        "113104",
        "Clean Structured Content Option",
        "clean",
    ),
    "cleanGraphOpt": ("clean_graphics", "113103", "Clean Graphics Option", "clean"),
}

# Compound actions on sequences, resolved one by one with PS3.3's types: an
# empty sequence is only valid where the sequence is Type 2 (a Type 3 sequence
# that is present needs one or more items), so a Type 3 sequence is removed and
# a reference sequence keeps its items with every UID inside remapped.
SEQUENCE_RESOLUTION = {
    "(0008,0082)": ("remove", "Institution Code Sequence is Type 3 wherever it appears"),
    "(0008,1072)": ("remove", "Operator Identification Sequence is Type 3 wherever it appears"),
    "(0008,1110)": (
        "dummy",
        "Referenced Study Sequence is Type 3 (1-n items) or Type 2: keep the items, remap their UIDs",
    ),
    "(0008,1111)": (
        "dummy",
        "Referenced Performed Procedure Step Sequence can be Type 1C: keep the item, remap its UIDs",
    ),
    "(0040,0555)": (
        "empty",
        "Acquisition Context Sequence is Type 2 in the Acquisition Context Module",
    ),
}


# Attributes the table does not list but that an option must reach to do what
# PS3.15 E.3 says it does: cleaning structured content means cleaning the
# free text of its content items, which lives in Text Value.
OPTION_EXTRAS = {
    "cleanStructContOpt": [
        ("(0040,A160)", "clean", "Text Value", "E.3.5: the free text of SR content items"),
        ("(0070,0006)", "clean", "Unformatted Text Value", "E.3.5: text of graphic annotations"),
    ],
}


def resolve(tag: str, code: str, vr: str) -> tuple[str, str]:
    """Resolve a Basic Profile action to one valid in every IOD, with the reason.

    Z (zero length) is valid for Type 2 and 3; D (dummy) is valid for Type 1,
    2 and 3; X is valid only for Type 3.  A compound code lists what the
    standard allows from least to most retentive, so the safe choice is the
    most conservative letter that every type accepts.
    """
    if "/" not in code:
        return LETTER[code], ""
    if vr == "SQ" and tag in SEQUENCE_RESOLUTION:
        action, why = SEQUENCE_RESOLUTION[tag]
        return action, f"{code}: {why}"
    letters = code.replace("*", "").split("/")
    if "U" in letters:
        return "uid", f"{code}: keep the sequence and remap the instance UIDs it references"
    if vr == "SQ":
        raise SystemExit(f"{tag} {code}: a compound action on a sequence needs a resolution")
    if "D" in letters:
        return "dummy", f"{code}: D is valid even where the attribute is Type 1"
    return "empty", f"{code}: Z is valid where the attribute is Type 2 (never Type 1 here)"


def selector(entry: dict[str, str]) -> tuple[str, str]:
    tag = entry["tag"]
    if tag.upper().startswith("(GGGG,EEEE)"):
        return "private", "all"
    return "tag", tag.upper().replace("X", "x")


def vr_of(tag: str) -> str:
    if "x" in tag.lower() or not tag.startswith("("):
        return "mask"
    try:
        return str(dictionary_VR(int(tag[1:5] + tag[6:10], 16)))
    except KeyError:
        return "?"


def keyword_of(tag: str) -> str:
    if "x" in tag.lower() or not tag.startswith("("):
        return ""
    return keyword_for_tag(int(tag[1:5] + tag[6:10], 16)) or ""


def rule_line(entry: dict[str, str], action: str, source: str, note: str = "") -> str:
    kind, value = selector(entry)
    parts = [f'{kind}: "{value}"', f"action: {action}"]
    if kind == "tag" and value.upper() in ("(60XX,3000)", "(50XX,XXXX)"):
        # Removing only Overlay Data leaves an overlay module dciodvfy rejects:
        # graphics go a whole repeating group at a time.
        parts.append("scope: group")
    parts.append(f'name: "{entry["name"]}"')
    kw = keyword_of(value) if kind == "tag" else ""
    comment = f"  # {source}"
    if kw:
        comment += f" {kw}"
    if note:
        comment += f"; {note}"
    return "  - {" + ", ".join(parts) + "}" + comment


def header(title: str, lines: list[str]) -> str:
    body = "\n".join(f"# {line}" if line else "#" for line in lines)
    return f"# {title}\n#\n# GENERATED by scripts/generate_dicom_rules.py: edit the script, not this file.\n{body}\n"


def main(source: Path, folder: Path = OUT) -> None:
    table = json.loads(source.read_text(encoding="utf-8"))
    table.sort(key=lambda e: e["tag"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "options").mkdir(exist_ok=True)

    lines = [
        header(
            "DICOM PS3.15 Annex E: Basic Application Level Confidentiality Profile",
            [
                f"All {len(table)} attributes of Table E.1-1, with compound actions resolved so",
                "the output stays valid in any IOD (the reason is on each such line).",
                "Attributes the table does not name are kept (PS3.15 E.3), except where a",
                "profile's `defaults` say otherwise by value representation.",
            ],
        ),
        "name: basic",
        'title: "Basic Application Level Confidentiality Profile"',
        'code: {value: "113100", meaning: "Basic Application Confidentiality Profile"}',
        "rules:",
    ]
    for entry in table:
        tag = selector(entry)[1]
        action, note = resolve(tag, entry["basicProfile"], vr_of(tag))
        lines.append(rule_line(entry, action, entry["basicProfile"], note))
    (folder / "basic_profile.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    for column, (stem, code, meaning, c_action) in OPTIONS.items():
        rows = [e for e in table if column in e]
        out = [
            header(
                f"DICOM PS3.15 Annex E option: {meaning}",
                [
                    f"The {len(rows)} attributes of Table E.1-1's column for this option.",
                    f'"C" is carried out as `{c_action}`; "K" as `keep`.',
                ],
            ),
            f"name: {stem}",
            f'title: "{meaning}"',
            f'code: {{value: "{code}", meaning: "{meaning}"}}',
        ]
        if column == "rtnSafePrivOpt":
            out.append("safe_private: ../safe_private.yaml")
        if column == "cleanGraphOpt":
            # Overlay and curve bitmaps can only be cleaned by the pixel scan;
            # until that runs, "clean" on them removes the group and the code is
            # recorded only if a cleaning actually happened.
            out.append("record_code: when_applied")
        out.append("rules:")
        for entry in rows:
            letter = entry[column]
            action = c_action if letter == "C" else LETTER[letter]
            if selector(entry)[0] == "private":
                out.append(
                    '  - {private: "safe", action: keep, name: "Safe private attributes"}'
                    "  # C: kept where rules/dicom/safe_private.yaml lists them"
                )
                continue
            out.append(rule_line(entry, action, letter))
        for tag, action, name, why in OPTION_EXTRAS.get(column, []):
            out.append(
                f'  - {{tag: "{tag}", action: {action}, name: "{name}"}}  # not in E.1-1; {why}'
            )
        (folder / "options" / f"{stem}.yaml").write_text("\n".join(out) + "\n", encoding="utf-8")
    write_sop_classes(folder)
    print(
        f"wrote {folder / 'basic_profile.yaml'}, {len(OPTIONS)} option files and sop_classes.yaml"
    )


# Photographs and video can show a face or a tattoo: no header rule cleans that.
_PHOTOGRAPHIC = ("Photograph", "Video", "VL ", "Dermoscopic", "Ophthalmic")
# Storage classes whose pixels are, by construction, captures of screens or documents.
_CAPTURE = ("Secondary Capture",)
# Objects that are not images but that an MRI release carries: their header is
# de-identified like an image's, and they have no pixels to carry burned-in text.
_RELEASED_NON_IMAGE = ("MR Spectroscopy Storage",)


def write_sop_classes(folder: Path = OUT) -> None:
    """The SOP-class allowlist, from pydicom's copy of PS3.6 Annex A."""
    current = [
        (uid, entry[0])
        for uid, entry in UID_dictionary.items()
        if entry[1] == "SOP Class" and entry[3] != "Retired"
    ]
    images = [
        (u, n)
        for u, n in current
        if n.endswith("Image Storage") and not n.startswith(_PHOTOGRAPHIC)
    ]
    reports = [(u, n) for u, n in current if n.endswith("SR Storage")]
    captures = [(u, n) for u, n in images if any(c in n for c in _CAPTURE)]
    non_images = [(u, n) for u, n in current if n in _RELEASED_NON_IMAGE]
    out = [
        header(
            "SOP classes that may be released",
            [
                "Image storage classes pass, and MR Spectroscopy.  Everything else (encapsulated",
                "PDF/CDA, structured reports unless clean_structured_content is on, key objects,",
                "presentation states, waveforms, raw data, unknown or private classes such as",
                "Siemens CSA Non-Image) goes to quarantine, because header rules cannot clean a",
                "document's bytes or a vendor's blobs.  Photographic and video classes are left",
                "out on purpose: their pixels can show a face.",
            ],
        ),
        "name: sop_classes",
        "allow:",
        *[f'  - {{uid: "{u}", name: "{n}"}}' for u, n in sorted(images, key=lambda x: x[1])],
        "  # Not an image: its header is de-identified like an image's, and its",
        "  # Spectroscopy Data (spectra, not pixels: no burned-in text) is kept byte for byte.",
        *[f'  - {{uid: "{u}", name: "{n}"}}' for u, n in non_images],
        "allow_with_option:",
        "  clean_structured_content:",
        *[f'    - {{uid: "{u}", name: "{n}"}}' for u, n in sorted(reports, key=lambda x: x[1])],
        "# Header signals that the pixels may carry burned-in text: such files are held",
        "# back (listed in the run summary) until the pixel scan can clean them.",
        "# BurnedInAnnotation YES and a ConversionType always count as well.",
        "burned_in:",
        "  sop_classes:",
        *[f'    - {{uid: "{u}", name: "{n}"}}' for u, n in captures],
        "  modalities: [OT, SC, US]",
        "  image_types: [[DERIVED, SECONDARY]]",
    ]
    (folder / "sop_classes.yaml").write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), *(Path(a) for a in sys.argv[2:3]))
