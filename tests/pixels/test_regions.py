"""Region rules: loading with file and line, matching on header values, shipped rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydicom
import pytest
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
