from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from pathlib import Path

import pytest

from pipeline.errors import KeyFileError
from pipeline.keys import SecretKey, generate_key, load_key, write_key
from tests import keyed


def test_keygen_writes_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    key = generate_key()
    write_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key


def test_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    write_key(path, generate_key())
    with pytest.raises(KeyFileError, match="refusing to replace"):
        write_key(path, generate_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_refuses_a_key_others_can_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "site.key"
    write_key(path, generate_key())
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)


def test_missing_and_malformed_keys_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="mricurate keygen"):
        load_key(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a mricurate key file"):
        load_key(bad)


def test_derivations_are_deterministic_and_keyed() -> None:
    a, b = SecretKey(b"\1" * 32), SecretKey(b"\2" * 32)
    assert a.pseudonym("subject", "X") == SecretKey(b"\1" * 32).pseudonym("subject", "X")
    assert a.pseudonym("subject", "X") != b.pseudonym("subject", "X")
    assert a.pseudonym("subject", "X") != a.pseudonym("person", "X")  # domains never collide
    assert a.uid("1.2.3") != b.uid("1.2.3")


FIXED = bytes(range(32))
VALUES = ("id::MRN48213977", "name:MULLER^JOSE", "", "Müller^José", "1.3.12.2.1107.5.2.30.25245")


@pytest.mark.parametrize("value", VALUES)
def test_every_derivation_is_hmac_sha256_of_the_value_under_the_key(value: str) -> None:
    """The README's promise, checked against hmac.new(key, message, sha256) computed here."""
    key = SecretKey(FIXED)
    assert (
        key.mac("subject", value)
        == hmac.new(FIXED, b"subject\x00" + value.encode(), hashlib.sha256).digest()
    )
    assert key.pseudonym("subject", value, prefix="SUBJ-") == keyed.pseudonym(
        FIXED, "subject", value, prefix="SUBJ-"
    )
    assert key.pseudonym("person", value, length=12) == keyed.pseudonym(FIXED, "person", value, 12)
    assert key.uid(value) == keyed.uid(FIXED, value)
    assert key.day_offset(value, -3652, -366) == keyed.day_offset(FIXED, value, -3652, -366)
    assert key.fingerprint == keyed.digest(FIXED, "fingerprint", "").hex()[:16]


def test_derivations_are_stable_across_releases() -> None:
    """Known answers for one key: a change here breaks every later release's links."""
    key = SecretKey(FIXED)
    assert key.pseudonym("subject", "id::X", prefix="SUBJ-") == "SUBJ-H6X734C7D1"
    assert key.uid("1.2.3") == "2.25.323208961630152450876443539203389659764"
    assert key.day_offset("s", -3652, -366) == -3525
    assert key.fingerprint == "34fa527b3d233f12"


def test_uid_is_a_valid_2_25_uuid_uid() -> None:
    key = generate_key()
    for original in ("1.2.3", "1.3.12.2.1107.5.2.30.25245.30000008012707233521800000011", ""):
        uid = key.uid(original)
        assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid)
        assert len(uid) <= 64
        assert int(uid[5:]) < 2**128
        assert (int(uid[5:]) >> 76) & 0xF == 8  # UUID version 8


def test_day_offsets_cover_the_range() -> None:
    key = generate_key()
    offsets = {key.day_offset(f"s{i}", -5, -1) for i in range(200)}
    assert offsets == {-5, -4, -3, -2, -1}


def test_repr_hides_the_material() -> None:
    key = SecretKey(b"\xab" * 32)
    assert "ab" * 4 not in repr(key)
