from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pipeline.errors import KeyFileError
from pipeline.keys import SecretKey, generate_key, load_key, write_key


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
    assert a.uid("1.2.3") == a.uid("1.2.3") != b.uid("1.2.3")
    assert a.day_offset("s", -10, -1) == a.day_offset("s", -10, -1)


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
