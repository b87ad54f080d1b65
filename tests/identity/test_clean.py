from __future__ import annotations

import pytest

from pipeline.identity.clean import PhiTerms, clean_text

TERMS = PhiTerms.build(
    names=["MÜLLER^JOSÉ^A", "Smith^Anna"],
    identifiers=["MRN48213977", "ACC-2024-0042"],
    dates=["19580314"],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MRI KNEE LEFT MÜLLER", "MRI KNEE LEFT"),
        ("mri knee left muller", "mri knee left"),  # case and accents folded
        ("T2 FLAIR AX (ref. Dr Smith)", "T2 FLAIR AX (ref. Dr )"),
        ("KNEE 14.03.1958 PD FS", "KNEE PD FS"),
        ("Pt MRN48213977 knee", "Pt knee"),
        ("call 555-123-4567 or jose@example.org", "call or"),
        ("acc ACC-2024-0042 T1", "acc T1"),
        ("ep2d_diff_3scan_trace_p2", "ep2d_diff_3scan_trace_p2"),  # clinical words stay
        ("t1_mprage_sag_p2_iso 1.0mm", "t1_mprage_sag_p2_iso 1.0mm"),
        ("", ""),
    ],
)
def test_clean_removes_phi_keeps_clinical_words(text: str, expected: str) -> None:
    assert clean_text(text, TERMS) == expected
