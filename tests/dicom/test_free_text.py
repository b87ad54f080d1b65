"""Free text no rule names: content items, graphic annotations, code meanings, patient notes.

Hypothesis plants random free text into elements of every text VR that no
rule names, into content items, graphic annotations and code meanings, at
random depths: none of it may survive, in the written bytes or in a decoded
value.  The examples pin what each of the shipped defaults does.
"""

from __future__ import annotations

import io
import itertools
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.datadict import DicomDictionary, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pipeline.dicom.deidentify import deidentify_dataset
from pipeline.dicom.profile import Profile, load_profile
from pipeline.identity.uids import UidMapper
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.rulefiles import rules_root
from pipeline.steps.dicom_file import deidentify_tree

from .conftest import tiny_mr

KEY = SecretKey(b"\x24" * 32)
RESEARCH = load_profile("research")
SAFE_HARBOR = load_profile("safe-harbor")
VOCABULARY = RESEARCH.vocabulary
assert VOCABULARY is not None
TEXT_VRS = ("LO", "SH", "LT", "ST", "UT", "UC", "PN")
MAX_LENGTH = {"SH": 16, "LO": 64, "PN": 64}


def _unnamed_text_keywords(profile: Profile) -> list[str]:
    """Public attributes of a text VR that no rule of the profile names (the defaults decide)."""
    found = []
    for tag, (vr, _, _, retired, keyword) in sorted(DicomDictionary.items()):
        text = vr in TEXT_VRS and keyword and not retired
        masked = any(m.selector.matches(tag) for m in profile.masks)  # type: ignore[union-attr]
        named = tag in profile.exact or masked
        if text and tag >> 16 not in (0x0000, 0x0002, 0x0004) and not named:
            found.append(keyword)
    return found


UNNAMED = _unnamed_text_keywords(RESEARCH)
VR_OF = {entry[4]: entry[0] for entry in DicomDictionary.values() if entry[4]}


def _written(ds: Dataset, profile: Profile = RESEARCH) -> tuple[bytes, Dataset]:
    deidentify_dataset(ds, KEY, profile, UidMapper(KEY))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data, dcmread(io.BytesIO(data))


def _values(ds: Dataset) -> list[str]:
    """Every decoded value at every depth, as text."""
    found: list[str] = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                found += _values(item)
        elif element.VR not in ("OB", "OW", "UN"):
            found.append(str(element.value))
    return found


def _content_item(text: str, meaning: str, children: list[Dataset] | None = None) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue = "121106"
    concept.CodingSchemeDesignator = "99LOCAL"
    concept.CodeMeaning = meaning
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = text
    if children:
        item.ContentSequence = Sequence(children)
    return item


def test_the_shipped_profiles_decide_every_text_vr_by_default() -> None:
    for profile in (RESEARCH, SAFE_HARBOR):
        defaults = {vr: rule.action.value for vr, rule in profile.defaults.items()}
        assert {defaults[vr] for vr in ("LT", "ST", "UT", "UC", "PN", "UN")} == {"remove"}
        assert defaults["LO"] == defaults["SH"] == "clean"
        assert profile.vocabulary is not None
    # rules show lists them (data, visible): every text VR with the file that decides it
    from mricurate.cli import main

    assert len(UNNAMED) > 200  # the defaults carry real weight: say so in a test
    assert main(["rules", "show", "--profile", "research"]) == 0


def test_content_items_annotations_and_code_meanings_lose_their_text(tmp_path: Path) -> None:
    ds = tiny_mr()
    deep = _content_item("Jane Qwerton phoned at home", "Qwerton follow-up")
    ds.ContentSequence = Sequence(
        [_content_item("spoke to Mr Zelinsky", "Zelinsky note", [_content_item("x", "y", [deep])])]
    )
    ds.TextValue = "Rhondrel Vasquez (mother)"
    annotation = Dataset()
    text_object = Dataset()
    text_object.UnformattedTextValue = "Dr Plimsoll marked this"
    annotation.TextObjectSequence = Sequence([text_object])
    annotation.GraphicLayer = "LAYER1"
    ds.GraphicAnnotationSequence = Sequence([annotation])
    region = Dataset()
    region.CodeValue = "T-15710"  # SNOMED RT: knee
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Knee of Mrs Fenwicke"
    ds.AnatomicRegionSequence = Sequence([region])
    written, back = _written(ds)
    for planted in ("QWERTON", "ZELINSKY", "RHONDREL", "VASQUEZ", "PLIMSOLL", "FENWICKE", "JANE"):
        assert planted.encode() not in written.upper(), planted
    assert "TextValue" not in back
    item = back.ContentSequence[0]
    assert item.ValueType == "TEXT" and "TextValue" not in item  # the structure stays
    # A standard code's meaning is the standard's own wording once the text is cleaned.
    (kept_region,) = back.AnatomicRegionSequence
    assert (kept_region.CodeValue, kept_region.CodingSchemeDesignator) == ("T-15710", "SRT")
    assert kept_region.CodeMeaning and "FENWICKE" not in kept_region.CodeMeaning.upper()
    assert back.GraphicAnnotationSequence[0].GraphicLayer == "LAYER1"


def test_patient_level_free_text_is_removed_and_operators_names_are_dropped() -> None:
    ds = tiny_mr()
    ds.Occupation = "FALCONER"
    ds.PatientComments = "daughter Jane Smith called"
    ds.AdditionalPatientHistory = "referred by Dr Hollings"
    ds.MedicalAlerts = "pacemaker, see Dr Hollings"
    ds.Allergies = "penicillin"
    ds.PatientState = "claustrophobic"
    ds.StudyDescription = "MRI KNEE for Dr Smith"
    ds.SeriesDescription = "t2_tse_sag Bellweather"
    ds.ImageComments = "reviewed by Falconer"
    ds.ProtocolName = "KNEE ROUTINE Ostrander"
    ds.SequenceName = "*tse2d1_15"
    ds.Manufacturer = "SIEMENS"
    _, back = _written(ds)
    for keyword in ("Occupation", "PatientComments", "AdditionalPatientHistory", "MedicalAlerts",
                    "Allergies", "PatientState"):  # fmt: skip
        assert keyword not in back, keyword
    assert back.StudyDescription == "MRI KNEE for Dr"
    assert back.SeriesDescription == "t2_tse_sag"
    assert back.ImageComments == "reviewed by"
    assert back.ProtocolName == "KNEE ROUTINE"
    assert back.SequenceName == "*tse2d1_15" and back.Manufacturer == "SIEMENS"


def test_a_site_keeps_a_field_by_naming_it(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "name: site\n"
        f"include:\n  - {rules_root() / 'dicom' / 'research.yaml'}\n"
        "rules:\n  - {keyword: AdditionalPatientHistory, action: clean}\n"
    )
    ds = tiny_mr()
    ds.AdditionalPatientHistory = "knee pain after fall"
    _, back = _written(ds, load_profile(site))
    assert back.AdditionalPatientHistory == "knee pain after fall"


def test_each_run_says_what_the_defaults_decided(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    ds = tiny_mr()
    ds.TextValue = "free text"
    ds.ContentSequence = Sequence([_content_item("more text", "note")])
    ds.save_as(source / "a.dcm", enforce_file_format=True)
    summary = deidentify_tree(
        source, tmp_path / "out", KEY, RESEARCH, PrivateStore(tmp_path / "private")
    )
    decided = {k.split(": ", 1)[1]: n for k, n in summary.facts.items() if "by default" in k}
    assert decided["UT remove"] == 2  # the two TextValues
    assert decided["kept: no rule names it"] > 0


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------


def _baseline() -> bytes:
    """What any de-identified file of this shape says anyway ("ANONYMIZED", "CONTAINS", the
    method, pseudonyms, standard code meanings)."""
    ds = tiny_mr()
    ds.ContentSequence = Sequence([_content_item("knee", "knee")])
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-15710", "SRT", "Qzqzq"
    ds.AnatomicRegionSequence = Sequence([region])
    return _written(ds)[0].upper()


BASELINE = _baseline()
# Name-like words no vocabulary knows (a word it knows is not a leak: "KNEE"),
# nor any text every output holds (a planted "ANONYM" would "survive" in "ANONYMIZED").
unknown_word = (
    st.text(string.ascii_uppercase, min_size=6, max_size=10)
    .map(str.capitalize)
    .filter(lambda w: not VOCABULARY.knows(w) and w.upper().encode() not in BASELINE)
)


@st.composite
def planted(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    ds = tiny_mr()
    secrets: list[str] = []

    def text(vr: str) -> str:
        words = draw(st.lists(unknown_word, min_size=1, max_size=3))
        secrets.extend(words)
        value = " ".join(words)
        return (
            value[: MAX_LENGTH.get(vr, 1024)].rsplit(" ", 1)[0]
            if len(value) > MAX_LENGTH.get(vr, 1024)
            else value
        )

    def fill(item: Dataset) -> None:
        for keyword in draw(
            st.lists(st.sampled_from(UNNAMED), min_size=1, max_size=4, unique=True)
        ):
            setattr(item, keyword, text(VR_OF[keyword]))

    fill(ds)
    # Content items at random depths, each with text and a local code's meaning.
    depth = draw(st.integers(1, 4))
    chain: list[Dataset] = []
    for _ in range(depth):
        item = _content_item(text("UT"), text("LO"))
        fill(item)
        chain.append(item)
    for parent, child in itertools.pairwise(chain):
        parent.ContentSequence = Sequence([child])
    ds.ContentSequence = Sequence([chain[0]])
    # A graphic annotation's text, and a standard code whose meaning was overwritten.
    annotation, text_object = Dataset(), Dataset()
    text_object.UnformattedTextValue = text("ST")
    annotation.TextObjectSequence = Sequence([text_object])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "T-15710", "SRT"
    region.CodeMeaning = text("LO")
    ds.AnatomicRegionSequence = Sequence([region])
    return ds, [s for s in secrets if s]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_planted_free_text_never_survives(case: tuple[Dataset, list[str]]) -> None:
    ds, secrets = case
    written, back = _written(ds)
    decoded = " ".join(_values(back)).upper()
    for secret in secrets:
        assert secret.upper().encode() not in written.upper(), f"{secret!r} survived in the bytes"
        assert secret.upper() not in decoded, f"{secret!r} survived in a value"


def test_the_property_plants_into_elements_no_rule_names() -> None:
    """The planted elements are decided by the defaults, not by a rule that happens to name them."""
    assert all(keyword_for_tag(t) not in UNNAMED for t in RESEARCH.exact)
