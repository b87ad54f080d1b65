"""Measure the vocabulary's trade-off: clinical words lost on real files, planted names caught.

``clean`` keeps the words ``rules/vocabulary`` knows and drops the other
alphabetic words of a description.  Two figures decide whether that is the
right trade:

* **lost**: on the descriptions of real files none of us wrote (pydicom's
  bundled files and pydicom-data, ``../shared/reference`` when present), the
  words the vocabulary drops that the header's own PHI and the patterns would
  have kept; each is listed, so a person can see whether it was a clinical
  word or a name;
* **caught**: common surnames of many countries planted into descriptions
  the way operators type them ("MRI KNEE for Dr X", "X t2_tse_sag"), and how
  many of them no longer appear after cleaning.

Run: ``.venv/bin/python bench/clean_vocabulary.py [--show]``.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_files  # noqa: E402

from pipeline.dicom.profile import load_profile  # noqa: E402
from pipeline.identity.clean import PhiTerms, clean_text  # noqa: E402

DESCRIPTIONS = (
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription",
    "DerivationDescription", "AcquisitionComments", "StudyComments", "ReasonForStudy",
)  # fmt: skip
# The most common surnames of the populations our users scan (US census, Germany,
# France, the Netherlands, Spain, Italy, China, Japan, Korea, India, Turkey, Poland...).
SURNAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schroeder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krueger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Jansen",
    "Visser",
    "Smit",
    "Bakker",
    "Janssen",
    "Meijer",
    "Boer",
    "Mulder",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "Fernandez",
    "Gonzales",
    "Ruiz",
    "Jimenez",
    "Moreno",
    "Munoz",
    "Alonso",
    "Romero",
    "Navarro",
    "Dominguez",
    "Gutierrez",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "Wang",
    "Zhang",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Zhou",
    "Wu",
    "Sun",
    "Zhu",
    "Ma",
    "Hu",
    "Guo",
    "Lin",
    "He",
    "Gao",
    "Luo",
    "Sato",
    "Suzuki",
    "Takahashi",
    "Tanaka",
    "Watanabe",
    "Ito",
    "Yamamoto",
    "Nakamura",
    "Kobayashi",
    "Kato",
    "Yoshida",
    "Yamada",
    "Kim",
    "Park",
    "Choi",
    "Jung",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Han",
    "Singh",
    "Kumar",
    "Sharma",
    "Patel",
    "Shah",
    "Gupta",
    "Reddy",
    "Khan",
    "Ali",
    "Ahmed",
    "Hussain",
    "Rahman",
    "Yilmaz",
    "Kaya",
    "Demir",
    "Sahin",
    "Celik",
    "Yildiz",
    "Aydin",
    "Ozturk",
    "Arslan",
    "Dogan",
    "Nowak",
    "Kowalski",
    "Wisniewski",
    "Wojcik",
    "Kowalczyk",
    "Kaminski",
    "Lewandowski",
    "Zielinski",
    "Szymanski",
    "Ivanov",
    "Petrov",
    "Sidorov",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Sokolov",
    "Novak",
    "Horvat",
    "Kovacs",
    "Nagy",
    "Szabo",
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsen",
    "Hansen",
    "Nielsen",
    "Jensen",
    "Pedersen",
]
TEMPLATES = ("MRI KNEE for Dr {}", "{} KNEE LEFT", "t2_tse_sag {}", "AX T2 FLAIR {} post",
             "reviewed by {}", "Schulter rechts {}")  # fmt: skip
_WORD = re.compile(r"(?<![\w])[^\W\d_]{3,}(?![\w])")


def real_descriptions() -> list[tuple[str, PhiTerms]]:
    files = [Path(p) for p in get_testdata_files("*")]
    reference = REPO.parent / "shared" / "reference"
    if reference.is_dir():
        files += [p for p in reference.rglob("*") if p.is_file()]
    found: list[tuple[str, PhiTerms]] = []
    seen: set[str] = set()
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True, force=True)
            values = [str(ds.get(k) or "") for k in DESCRIPTIONS]
            names = [str(ds.get("PatientName") or "")]
            ids = [str(ds.get("PatientID") or ""), str(ds.get("AccessionNumber") or "")]
        except Exception:  # not DICOM, or damaged: not a description source
            continue
        terms = PhiTerms.build(names, ids, [str(ds.get("PatientBirthDate") or "")])
        for value in values:
            if value and value not in seen:
                seen.add(value)
                found.append((value, terms))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--show", action="store_true", help="print every lost word")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    vocabulary = load_profile("research").vocabulary
    assert vocabulary is not None
    descriptions = real_descriptions()
    lost: Counter[str] = Counter()
    total = 0
    for text, terms in descriptions:
        without = clean_text(text, terms)
        with_vocabulary = clean_text(text, terms, vocabulary)
        kept = Counter(w.lower() for w in _WORD.findall(with_vocabulary))
        for word in _WORD.findall(without):
            total += 1
            if kept[word.lower()] > 0:
                kept[word.lower()] -= 1
            else:
                lost[word.lower()] += 1
    print(f"real descriptions: {len(descriptions)} distinct values, {total} words of 3+ letters")
    print(
        f"  lost to the vocabulary: {sum(lost.values())} ({sum(lost.values()) / max(total, 1):.1%})"
    )
    print(f"  distinct lost words: {', '.join(sorted(lost)) if args.show else len(lost)}")
    caught = missed = 0
    missed_names: set[str] = set()
    for name in SURNAMES:
        for template in TEMPLATES:
            cleaned = clean_text(template.format(name), PhiTerms.build([], [], []), vocabulary)
            if name.upper() in cleaned.upper():
                missed += 1
                missed_names.add(name)
            else:
                caught += 1
    print(
        f"planted surnames: {len(SURNAMES)} names x {len(TEMPLATES)} templates = {caught + missed}"
    )
    print(f"  caught: {caught} ({caught / (caught + missed):.1%})")
    print(f"  missed (the vocabulary knows them as words): {', '.join(sorted(missed_names))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
