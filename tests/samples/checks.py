"""Checks independent of the generators (a CSA decoder, a pydicom round trip, dciodvfy) for the sample tests."""

from __future__ import annotations

import shutil
import struct
import subprocess
import unicodedata
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def decode_csa(data: bytes) -> dict[str, list[str]]:
    """Just enough of a CSA2 reader (nibabel's rules) to check the encoder's layout."""
    assert data[:8] == b"SV10\x04\x03\x02\x01"
    n_tags, check = struct.unpack_from("<2I", data, 8)
    assert check == 77
    pos = 16
    tags: dict[str, list[str]] = {}
    for _ in range(n_tags):
        raw_name, vm, _vr, _syngodt, n_items, last = struct.unpack_from("<64si4s3i", data, pos)
        pos += 84
        assert last in (77, 205)
        name = raw_name.split(b"\x00")[0].decode("ascii")
        values: list[str] = []
        for index in range(n_items):
            lengths = struct.unpack_from("<4i", data, pos)
            pos += 16
            length = lengths[1]
            assert lengths[0] == lengths[1] == lengths[3]
            if index >= vm:
                assert length == 0, "items past the value multiplicity must be empty"
            values.append(data[pos : pos + length].split(b"\x00")[0].decode("latin-1"))
            pos += length + (-length % 4)
        tags[name] = values[:vm]
    assert pos == len(data)
    return tags


def roundtrip(ds: Dataset, path: Path) -> Dataset:
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def fold(name: str) -> str:
    """Upper case, accents removed, trailing empty components dropped."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper().rstrip("^")


def dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
