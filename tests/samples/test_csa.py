"""The CSA encoder must write the layout nibabel and dcm2niix read."""

from __future__ import annotations

import struct

import pytest

from pipeline.samples import encode_csa

from .checks import decode_csa


def test_encode_csa_layout() -> None:
    tags = {
        "B_value": ["1000"],
        "DiffusionGradientDirection": ["0.70710678", "0.00000000", "-0.70710678"],
        "ImaPATModeText": ["p2"],
        "Empty": [],
    }
    data = encode_csa(tags)
    assert len(data) % 4 == 0
    assert decode_csa(data) == tags
    assert struct.unpack_from("<I", data, 8)[0] == 4


def test_encode_csa_rejects_long_names() -> None:
    with pytest.raises(ValueError, match="63"):
        encode_csa({"X" * 64: ["1"]})
