"""Region rules: loading with file and line, matching on header values, shipped rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from pipeline.errors import RuleError
from pipeline.pixels.regions import MatchOp, Rect, load_region_rules
from tests.reference import needs_reference

from .images import REFERENCE


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def _header(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_conditions_equals_contains_regex_present(tmp_path: Path) -> None:
    rules = load_region_rules(
        _write(
            tmp_path / "r",
            """
            rules:
              - name: acme
                when:
                  Modality: US
                  Manufacturer: {contains: acme}
                  Rows: {regex: "^(480|600)$"}
                  ImageType: {contains: "DERIVED\\\\SECONDARY"}
                  SequenceOfUltrasoundRegions: {present: false}
                blank: [[0, 0, 640, 40]]
                keep: [[600, 40, 40, 400]]
            """,
        )
    )
    (rule,) = rules.rules
    assert [c.op for c in rule.conditions] == [
        MatchOp.EQUALS, MatchOp.CONTAINS, MatchOp.REGEX, MatchOp.CONTAINS, MatchOp.PRESENT,
    ]  # fmt: skip
    assert rule.blank == (Rect(0, 0, 640, 40),) and rule.keep == (Rect(600, 40, 40, 400),)
    assert rule.origin.endswith("site.yaml:3")
    good = _header(
        Modality="US", Manufacturer="ACME Medical", Rows=480, ImageType=["DERIVED", "SECONDARY"]
    )
    assert rules.matching(good) == (rule,)
    for change in ({"Modality": "USX"}, {"Manufacturer": "Other"}, {"Rows": 481}):
        bad = _header(**{**_values(good), **change})
        assert rules.matching(bad) == ()
    with_regions = _header(**_values(good))
    with_regions.SequenceOfUltrasoundRegions = [Dataset()]
    assert rules.matching(with_regions) == ()


def _values(ds: Dataset) -> dict[str, object]:
    return {e.keyword: e.value for e in ds}


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("rules:\n  - name: x\n    when: {Modality: US}\n", 2, "blanks nothing"),
        ("rules:\n  - name: x\n    when: {Modality: US}\n    blank: [[0, 0, 5]]\n", 2, "rectangle"),
        (
            "rules:\n  - name: x\n    when: {Modality: US}\n    blank: [[0, 0, 0, 5]]\n",
            2,
            "above 0",
        ),
        ("rules:\n  - name: x\n    when: {Modalty: US}\n    blank: [[0, 0, 5, 5]]\n", 3, "keyword"),
        (
            "rules:\n  - name: x\n    when: {Rows: {regex: '('}}\n    blank: [[0,0,5,5]]\n",
            3,
            "regular",
        ),
        (
            "rules:\n  - name: x\n    when: {Rows: {near: 5}}\n    blank: [[0,0,5,5]]\n",
            3,
            "unknown test",
        ),
        ("rules:\n  - name: x\n    wen: {Rows: 5}\n    blank: [[0,0,5,5]]\n", 2, "when"),
        ("rules: 5\n", 1, "list"),
    ],
)
def test_malformed_rule_fails_with_file_line_and_reason(
    tmp_path: Path, body: str, line: int, words: str
) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "bad.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(RuleError) as caught:
        load_region_rules(folder)
    assert caught.value.path.name == "bad.yaml"
    assert caught.value.line == line
    assert words in caught.value.reason


def test_rect_clipping_and_holding() -> None:
    assert Rect(-5, 10, 20, 500).clipped(100, 50) == Rect(0, 10, 15, 90)
    assert Rect(60, 0, 5, 5).clipped(100, 50) is None
    assert Rect(10, 10, 20, 20).holds((10, 10, 20, 20))
    assert not Rect(10, 10, 20, 20).holds((9, 10, 20, 20))


def test_shipped_rules_load_and_example_is_inert() -> None:
    rules = load_region_rules()
    names = {path.name for path in rules.files}
    assert {"example.yaml", "ultrasound.yaml", "screens_and_dose.yaml"} <= names
    assert all("example.yaml" not in rule.origin for rule in rules.rules)
    assert all(rule.source for rule in rules.rules)  # every shipped rule says where it comes from
    assert len(rules.digest) == 64


# RSNA CTP's DicomPixelAnonymizer.script (github.com/johnperry/CTP,
# source/files/scripts/DicomPixelAnonymizer.script, as of commit 361e90f of
# 2025-05-13; the file last changed in 867f893, 2023-05-23), copied by hand:
# rule name -> (line of the entry's rectangles in that file, the rectangles
# (x, y, w, h), CTP's conditions as (attribute, op, value)).  CTP's
# containsIgnoreCase is `contains`, its equals `equals`.  A shipped rule may add
# conditions of its own (saying why in its file), never drop or change CTP's.
C, E = MatchOp.CONTAINS, MatchOp.EQUALS
CTP: dict[str, tuple[int, list[tuple[int, int, int, int]], list[tuple[str, MatchOp, str]]]] = {
    "GE CT dose report (series description)": (26, [(0, 0, 512, 110)], [
        ("SeriesDescription", C, "Dose Report")]),
    "GE CT dose series (DLP)": (30, [(0, 0, 512, 110)], [
        ("Manufacturer", C, "GE MEDICAL"), ("CommentsOnRadiationDose", C, "DLP")]),
    "GE AW electronic film": (37, [(0, 0, 512, 80)], [
        ("BurnedInAnnotation", C, "YES"), ("Manufacturer", C, "GE MEDICAL"),
        ("SeriesDescription", C, "AW electronic film")]),
    "GE 512 x 512 screen capture": (43, [(0, 0, 512, 25)], [
        ("BurnedInAnnotation", C, "YES"), ("Manufacturer", C, "GE MEDICAL"), ("Rows", E, "512")]),
    "GE 512 x 512 vessel analysis report": (50, [(0, 0, 200, 250)], [
        ("BurnedInAnnotation", C, "YES"), ("Manufacturer", C, "GE MEDICAL"),
        ("SeriesDescription", C, "AVA Report"), ("Rows", E, "512")]),
    "GE 1024 x 1024 screen capture": (62, [(0, 0, 300, 150), (724, 0, 300, 150)], [
        ("BurnedInAnnotation", C, "YES"), ("Manufacturer", C, "GE MEDICAL"), ("Rows", E, "1024")]),
    "Siemens CT dose series, 860 rows": (79, [(0, 0, 1132, 60)], [
        ("ImageType", C, "SECONDARY"), ("Modality", C, "CT"), ("Manufacturer", C, "SIEMENS"),
        ("Rows", E, "860")]),
    "Philips dose image": (85, [(0, 0, 512, 135)], [
        ("Manufacturer", C, "PHILIPS"), ("ImageType", C, "DOSE")]),
    "Toshiba Aquilion ONE dose series": (95, [(0, 0, 410, 240)], [
        ("Modality", E, "CT"), ("Manufacturer", C, "TOSHIBA"),
        ("ManufacturerModelName", C, "Aquilion ONE"), ("ImageType", C, "SECONDARY"),
        ("Columns", E, "512"), ("Rows", E, "512"), ("WindowWidth", E, "1")]),
    "Siemens PET/CT with MedCom object graphics": (103, [(0, 0, 512, 90)], [
        ("(6000,0022)", C, "Siemens MedCom Object Graphics")]),
    "GE LOGIQ 9 header bar": (139, [(0, 0, 640, 40)], [
        ("ManufacturerModelName", C, "LOGIQ9")]),
    "GE LOGIQ E9 header bar": (142, [(0, 0, 960, 70)], [
        ("ManufacturerModelName", C, "LOGIQE9")]),
    "Philips iU22, 480 rows": (152, [(0, 0, 640, 47)], [
        ("ManufacturerModelName", C, "iU22"), ("Rows", E, "480")]),
    "Philips iU22, 768 rows": (157, [(0, 0, 1024, 75)], [
        ("ManufacturerModelName", C, "iU22"), ("Rows", E, "768")]),
    "Philips iU22, 600 rows": (163, [(0, 0, 800, 59)], [
        ("ManufacturerModelName", C, "iU22"), ("Rows", E, "600")]),
    "Zonare z.one header bar": (195, [(0, 0, 800, 65)], [
        ("ManufacturerModelName", C, "Z_ONE")]),
    "ATL HDI 5000, 476 x 640": (203, [(40, 0, 200, 40), (240, 0, 190, 16)], [
        ("Modality", E, "US"), ("Manufacturer", C, "ATL"),
        ("ManufacturerModelName", C, "HDI 5000"), ("Rows", E, "476"), ("Columns", E, "640")]),
    "Siemens Antares, 768 x 1024": (219, [(0, 0, 1024, 60), (200, 60, 20, 20), (800, 65, 104, 14)], [
        ("Modality", E, "US"), ("Manufacturer", C, "SIEMENS"),
        ("ManufacturerModelName", C, "ANTARES"), ("Rows", E, "768"), ("Columns", E, "1024")]),
    "Siemens Acuson, 600 x 800": (226, [(0, 0, 800, 43), (128, 56, 16, 16)], [
        ("Modality", E, "US"), ("Manufacturer", C, "SIEMENS"),
        ("ManufacturerModelName", C, "ACUSON"), ("Rows", E, "600"), ("Columns", E, "800")]),
    "Acuson Sequoia, 480 x 640": (241, [(0, 0, 640, 30)], [
        ("Modality", E, "US"), ("Manufacturer", C, "ACUSON"),
        ("ManufacturerModelName", C, "SEQUOIA"), ("Rows", E, "480"), ("Columns", E, "640")]),
    "Toshiba Aplio 500, 720 x 960": (249, [(0, 0, 960, 60)], [
        ("Modality", E, "US"), ("Manufacturer", C, "TOSHIBA"),
        ("ManufacturerModelName", C, "A500"), ("Rows", E, "720"), ("Columns", E, "960")]),
    "SuperSonic Imagine Aixplorer, 1050 x 1400": (289, [(0, 0, 1400, 89)], [
        ("Modality", E, "US"), ("Manufacturer", C, "SuperSonic Imagine SA"),
        ("ManufacturerModelName", C, "Aixplorer"), ("Rows", E, "1050"), ("Columns", E, "1400")]),
    "Canon CXDI, 2592 rows": (331, [(0, 0, 2208, 80), (0, 2512, 2208, 80)], [
        ("Manufacturer", C, "Canon"), ("ManufacturerModelName", C, "CXDI"), ("Rows", E, "2592")]),
    "ADAC 832 x 1024": (364, [(0, 0, 1024, 80), (0, 762, 1024, 80)], [
        ("Manufacturer", C, "ADAC"), ("Rows", E, "832"), ("Columns", E, "1024")]),
    "MEDRAD injection profile": (376, [(0, 0, 750, 230)], [
        ("SeriesDescription", C, "MEDRAD"), ("Rows", E, "1077"), ("Columns", E, "750")]),
}  # fmt: skip


def _tag(attribute: str) -> int:
    if attribute.startswith("("):
        return int(attribute[1:5] + attribute[6:10], 16)
    tag = tag_for_keyword(attribute)
    assert tag is not None, attribute
    return tag


def test_shipped_rules_are_the_ctp_entries_they_cite() -> None:
    rules = load_region_rules()
    citing = {r.name: r for r in rules.rules if r.source.startswith("CTP DicomPixelAnonymizer")}
    assert sorted(citing) == sorted(CTP)
    differ = []
    for name, (line, rectangles, conditions) in CTP.items():
        rule = citing[name]
        blank = [(r.x, r.y, r.width, r.height) for r in rule.blank]
        if blank != rectangles:
            differ.append(f"{name}: blanks {blank}, CTP line {line}: {rectangles}")
        ours = {
            (c.tag, c.op, c.value.casefold() if c.op is C else c.value) for c in rule.conditions
        }
        for attribute, op, value in conditions:
            if (_tag(attribute), op, value.casefold() if op is C else value) not in ours:
                differ.append(f"{name}: no {attribute} {op.value} {value!r} (CTP, by line {line})")
    assert not differ, "\n".join(differ)
    # The one rule of our own says so.
    (own,) = [r for r in rules.rules if r.name not in CTP]
    assert own.source.startswith("SequenceOfUltrasoundRegions") and own.above_ultrasound_regions


def test_ultrasound_header_bar_comes_from_the_regions() -> None:
    ds = _header(Modality="US", Rows=480, Columns=640)
    region = Dataset()
    region.RegionLocationMinY0 = 52
    lower = Dataset()
    lower.RegionLocationMinY0 = 200
    ds.SequenceOfUltrasoundRegions = [lower, region]
    matched = load_region_rules().matching(ds)
    assert [rule.name for rule in matched] == ["Ultrasound header bar above the first region"]
    assert matched[0].blank_areas(ds) == (Rect(0, 0, 640, 52),)


@needs_reference("dicom")
def test_shipped_rules_on_the_reference_files() -> None:
    rules = load_region_rules()
    found = {
        name: [r.name for r in rules.matching(pydicom.dcmread(REFERENCE / name))]
        for name in (
            "MR-SIEMENS-DICOM-WithOverlays.dcm",
            "US-GE-4AICL142.dcm",
            "XA_GE_JPEG_02_with_Overlays.dcm",
        )
    }
    # The Siemens MedCom overlay rule is CTP's PET/CT entry: not for this MR.
    assert found == {
        "MR-SIEMENS-DICOM-WithOverlays.dcm": [],
        "US-GE-4AICL142.dcm": ["Ultrasound header bar above the first region"],
        "XA_GE_JPEG_02_with_Overlays.dcm": [],
    }
