"""The vocabulary ``clean`` keeps words by: generated from the standard, curated, extensible."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.errors import RuleError
from pipeline.identity.clean import PhiTerms, clean_text
from pipeline.identity.vocabulary import load_vocabulary
from pipeline.rulefiles import rules_root

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_vocabulary.py"
FOLDER = rules_root() / "vocabulary"
NO_TERMS = PhiTerms.build([], [], [])


def test_the_generated_file_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate_vocabulary", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (FOLDER / "dicom_terms.txt").read_text(encoding="utf-8") == module.render()


def test_the_generated_words_leave_eponyms_out() -> None:
    words = set((FOLDER / "dicom_terms.txt").read_text().split())
    # Surnames that name syndromes and signs in SNOMED CT ("Miller Fisher syndrome"):
    # always capitalised there, so never taken as words.
    assert not {"miller", "fisher", "williams", "parkinson", "hodgkin"} & words
    assert {"knee", "sagittal", "diffusion", "contrast", "liver"} <= words


def test_known_words_stay_and_unknown_ones_go() -> None:
    vocabulary = load_vocabulary(sorted(FOLDER.glob("*.txt")))
    cases = {
        "MRI KNEE for Dr Smith": "MRI KNEE for Dr",
        "AX T2 FLAIR FS post gad": "AX T2 FLAIR FS post gad",
        "t2_tse_sag_320 Bellweather": "t2_tse_sag_320",
        "Dr. White reviewed": "Dr. reviewed",  # a word after a title goes, known or not
        "Non-ossifying fibroma of distal tibia": "Non-ossifying fibroma of distal tibia",
        "MRT oberes Abdomen links": "MRT oberes Abdomen links",
        "L SHOULDER 3D": "L SHOULDER 3D",
        # Capitals that are DICOM abbreviations, not titles: the next word stays.
        "MR KNEE LEFT": "MR KNEE LEFT",
        "DR CHEST PA": "DR CHEST PA",
        "MS lesions FLAIR": "MS lesions FLAIR",
        "Demonstration of SR Features": "Demonstration of SR Features",
        "Knie links Herr Lange": "Knie links",
    }
    for text, expected in cases.items():
        assert clean_text(text, NO_TERMS, vocabulary) == expected, text
    # Without a vocabulary, clean removes only the header's own PHI and the patterns.
    assert clean_text("MRI KNEE for Dr Smith", NO_TERMS) == "MRI KNEE for Dr Smith"


def test_a_site_vocabulary_with_a_typo_fails_with_file_and_line(tmp_path: Path) -> None:
    site = tmp_path / "site.txt"
    site.write_text("# our protocols\nknee2 # a digit\n")
    with pytest.raises(RuleError, match=r"site.txt:2: 'knee2' is not a word"):
        load_vocabulary([site])
    site.write_text("# our protocols\ngoliath  hamstring\n")
    vocabulary = load_vocabulary([site])
    assert vocabulary.knows("Goliath") and vocabulary.knows("HAMSTRING")
