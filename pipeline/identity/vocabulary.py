"""The words a description may keep: the second line of defence of ``clean``.

Removing the file's own names and IDs from a description catches what the
header knows; a name it does not know ("MRI KNEE for Dr Smith") needs the
other direction: keep the words a vocabulary knows, drop the rest.  The
vocabulary is data (``rules/vocabulary/*.txt``): the standard's own words
(generated) and the words descriptions use (curated), which a site extends
with a file of its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import RuleError
from pipeline.identity.names import fold

# Shorter alphabetic words are kept without asking (L, R, AX, PD, SE, MR).
MIN_CHECKED_LETTERS = 3
_ENTRY = re.compile(r"^[^\W\d_]+$")


@dataclass(frozen=True)
class Vocabulary:
    """Known words, folded (upper case, no accents), and where they came from."""

    words: frozenset[str]
    files: tuple[Path, ...] = ()
    digest: str = ""

    def knows(self, word: str) -> bool:
        return len(word) < MIN_CHECKED_LETTERS or fold(word) in self.words


def load_vocabulary(paths: list[Path]) -> Vocabulary:
    """Read vocabulary files: words separated by spaces or lines, ``#`` to the end of a line.

    Raises
    ------
    RuleError
        A file is missing, or an entry is not a word (letters only), with its line.
    """
    words: set[str] = set()
    digest = hashlib.sha256()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleError(
                path, None, f"cannot read the vocabulary file: {exc.strerror}"
            ) from None
        digest.update(path.name.encode() + b"\0" + text.encode())
        for number, line in enumerate(text.splitlines(), start=1):
            for entry in line.split("#", 1)[0].split():
                if not _ENTRY.match(entry):
                    raise RuleError(
                        path, number, f"{entry!r} is not a word: letters only, one word per entry"
                    )
                words.add(fold(entry))
    return Vocabulary(frozenset(words), tuple(paths), digest.hexdigest())
