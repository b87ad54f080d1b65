from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.dicom.profile import Action, DateMode, load_profile
from pipeline.errors import RuleError
from pipeline.rulefiles import rules_root
from tests.reference import needs_reference, reference_path

RULES = rules_root() / "dicom"


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def site(tmp_path: Path, rules: str) -> Path:
    return write(tmp_path, f"name: site\ninclude:\n  - {RULES / 'research.yaml'}\nrules:\n{rules}")


def test_basic_profile_has_every_attribute_of_table_e1_1() -> None:
    text = (RULES / "basic_profile.yaml").read_text()
    assert text.count("\n  - {") == 621
    profile = load_profile(RULES / "research.yaml")
    assert profile.exact[0x00100010].action is Action.PSEUDONYM  # research's own rule wins
    assert profile.exact[0x00080020].action is Action.SHIFT  # the modified-dates option
    assert profile.private_all is not None and profile.private_all.action is Action.REMOVE
    assert any(r.whole_group for r in profile.masks)  # (60xx,3000) removes whole groups


def test_compound_actions_are_resolved_to_choices_valid_in_any_iod() -> None:
    profile = load_profile(RULES / "research.yaml")
    basic = {r.selector.describe(): r for r in profile.all_rules()}
    assert basic["(0008,1140)"].action is Action.UID  # X/Z/U*: Referenced Image Sequence
    assert basic["(0040,0555)"].action is Action.EMPTY  # X/Z: Acquisition Context Sequence
    assert basic["(0018,1000)"].action is Action.DUMMY  # X/Z/D: Device Serial Number


def test_ready_profiles_say_what_they_meet() -> None:
    research = load_profile("research")
    harbor = load_profile("safe-harbor")
    assert "Annex E" in research.meets and "limited data set" in research.meets
    assert "Safe Harbor" in harbor.meets
    assert harbor.date_mode is DateMode.YEAR and harbor.age_limit == 89
    assert {c.value for c in research.codes} == {"113100", "113107", "113108", "113105", "113111"}
    assert "retain_safe_private" in research.options and "retain_safe_private" not in harbor.options


def test_site_file_overrides_a_single_tag(tmp_path: Path) -> None:
    path = site(tmp_path, "  - {keyword: StationName, action: keep}\n")
    profile = load_profile(path)
    assert profile.exact[0x00081010].action is Action.KEEP
    assert profile.exact[0x00081010].origin == "site.yaml:5"
    assert profile.exact[0x00100020].action is Action.PSEUDONYM  # everything else inherited


def test_selectors_by_mask_and_private_creator(tmp_path: Path) -> None:
    path = site(
        tmp_path,
        '  - {tag: "(60xx,0022)", action: keep}\n'
        "  - {private: '(0029,\"SIEMENS CSA HEADER\",10)', action: keep}\n",
    )
    profile = load_profile(path)
    assert profile.private[(0x0029, "SIEMENS CSA HEADER", 0x10)].action is Action.KEEP
    assert any(r.selector.describe() == "(60xx,0022)" for r in profile.masks)


@pytest.mark.parametrize(
    ("rules", "line", "message"),
    [
        ("  - {keyword: PatientNme, action: keep}\n", 5, "not a DICOM keyword"),
        ("  - {keyword: PatientName, action: scramble}\n", 5, "unknown action 'scramble'"),
        ('  - {tag: "(0010,001G)", action: keep}\n', 5, "not a tag"),
        ('  - {tag: "(0010,0010)", keyword: PatientName, action: keep}\n', 5, "exactly one of"),
        ("  - {keyword: PatientName}\n", 5, "missing key(s): action"),
        ("  - {keyword: PatientName, action: keep, colour: red}\n", 5, "unknown key(s): colour"),
        ("  - {private: '(0010,\"X\",10)', action: keep}\n", 5, "is even"),
        ("  - {keyword: PatientName, action: keep, scope: group}\n", 5, "only meaningful"),
        ("  - {keyword: PatientName, action: [keep\n", 6, "YAML syntax"),  # seen at the end
    ],
)
def test_malformed_rule_fails_at_load_with_file_line_and_reason(
    tmp_path: Path, rules: str, line: int, message: str
) -> None:
    path = site(tmp_path, rules)
    with pytest.raises(RuleError) as info:
        load_profile(path)
    assert info.value.path.name == "site.yaml"
    assert info.value.line == line
    assert message in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_unknown_top_level_key_and_missing_include(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="unknown key"):
        load_profile(write(tmp_path, "name: x\nrulez: []\n"))
    with pytest.raises(RuleError, match="not found"):
        load_profile(write(tmp_path, "name: x\ninclude: [nowhere.yaml]\n"))


def test_include_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "include: [b.yaml]\n", "a.yaml")
    write(tmp_path, "include: [a.yaml]\n", "b.yaml")
    with pytest.raises(RuleError, match="include cycle"):
        load_profile(tmp_path / "a.yaml")


@needs_reference("confidentiality_profile_attributes.json")
def test_generated_rules_are_up_to_date(tmp_path: Path) -> None:
    """The committed rule files are exactly what the generator writes.

    Written into a folder of the test's own: rewriting ``rules/dicom`` in place
    made another worker's test read a half-written basic_profile.yaml.
    """
    import subprocess
    import sys

    source = reference_path("confidentiality_profile_attributes.json")
    out = tmp_path / "dicom"
    script = Path(__file__).resolve().parents[2] / "scripts" / "generate_dicom_rules.py"
    subprocess.run(
        [sys.executable, str(script), str(source), str(out)], check=True, capture_output=True
    )
    generated = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.yaml")}
    assert len(generated) > 5 and Path("basic_profile.yaml") in generated
    assert generated == {name: (RULES / name).read_bytes() for name in generated}
