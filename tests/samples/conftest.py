from __future__ import annotations

import pytest

from pipeline.samples import Subject, make_subjects


@pytest.fixture(scope="module")
def subjects() -> list[Subject]:
    return make_subjects(4, seed=3)
