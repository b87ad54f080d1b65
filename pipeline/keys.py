"""The secret key and every keyed derivation made from it.

One key gives one consistent set of pseudonyms, UIDs and date shifts, on any
machine and in any later run; a different key gives unrelated ones.  All
derivations are HMAC-SHA256 over a domain label and a normalised value, so
they are stateless (no table is needed to repeat them) and cannot be reversed
without the key.  The same functions serve the DICOM and the raw side, which is
what keeps a subject's raw and DICOM data linked in a release.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.atomic import atomic_write_text
from pipeline.errors import KeyFileError

_HEADER = "mricurate-key-v1"
_KEY_BYTES = 32
# Crockford's base32 without I, L, O, U: unambiguous when read aloud or typed.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class SecretKey:
    """A 256-bit secret; construct with :func:`load_key` or :func:`generate_key`."""

    material: bytes

    def __repr__(self) -> str:  # never print the key material
        return f"SecretKey(fingerprint={self.fingerprint!r})"

    @property
    def fingerprint(self) -> str:
        """A short public identifier of the key, safe to record in a release."""
        return self.mac("fingerprint", "").hex()[:16]

    def mac(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` in a named domain (so kinds never collide)."""
        message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
        return hmac.digest(self.material, message, "sha256")  # one C call (hmac.new is Python)

    def pseudonym(self, kind: str, value: str, *, length: int = 10, prefix: str = "") -> str:
        """A keyed, deterministic, opaque identifier such as ``SUBJ-4K9M2Q7XRT``.

        ``length`` base32 characters give 5 bits each: 10 characters are 50
        bits, enough that two subjects of one site never collide in practice.
        """
        return _pseudonym(self.material, kind, value, length, prefix)

    def uid(self, original: str) -> str:
        """A ``2.25.<integer>`` UID derived from ``original``.

        The integer is a UUID (RFC 9562 version 8, custom) made of 122 keyed
        bits, which is what PS3.5 B.2 asks of the 2.25 root; it never exceeds
        the 64-character UID limit.
        """
        raw = bytearray(self.mac("uid", original)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC variant
        return "2.25." + str(int.from_bytes(bytes(raw), "big"))

    def day_offset(self, subject: str, low: int, high: int) -> int:
        """A whole number of days in ``[low, high]``, fixed for one subject."""
        if low > high:
            raise ValueError(f"date shift range is empty: [{low}, {high}]")
        return _day_offset(self.material, subject, low, high)


@lru_cache(maxsize=1 << 12)
def _day_offset(material: bytes, subject: str, low: int, high: int) -> int:
    """:meth:`SecretKey.day_offset`, cached like :func:`_pseudonym` (keyed by the key material)."""
    message = b"date-shift\x00" + subject.encode("utf-8")
    return low + int.from_bytes(hmac.digest(material, message, "sha256"), "big") % (high - low + 1)


@lru_cache(maxsize=1 << 14)
def _pseudonym(material: bytes, kind: str, value: str, length: int, prefix: str) -> str:
    """:meth:`SecretKey.pseudonym`, cached: the slices of a series repeat their subject,
    study and series, so most derivations of a run are repeats.

    The cache lives in this process's memory only, where the key and the
    values already are; it is keyed by the key material, so two keys never
    share an entry.
    """
    message = kind.encode("utf-8") + b"\x00" + value.encode("utf-8")
    number = int.from_bytes(hmac.digest(material, message, "sha256"), "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, 32)
        chars.append(_ALPHABET[index])
    return prefix + "".join(chars)


def generate_key() -> SecretKey:
    """A new key from the operating system's cryptographic random source."""
    return SecretKey(secrets.token_bytes(_KEY_BYTES))


def write_key(path: Path, key: SecretKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600.

    Refuses to overwrite an existing key: replacing it would silently break
    the link between this release's pseudonyms and every later one.
    """
    if path.exists() and not overwrite:
        raise KeyFileError(
            f"{path} already exists; refusing to replace a key (pseudonyms made with it "
            "could no longer be repeated). Choose another path or move the old key first."
        )
    text = f"{_HEADER}\n{key.material.hex()}\n"
    atomic_write_text(path, text, mode=0o600)


def load_key(path: Path) -> SecretKey:
    """Read a key file, refusing one that group or others can read or write."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; create one with `mricurate keygen {path}`"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible to other users (mode {stat.filemode(info.st_mode)}); "
            f"restrict it with `chmod 600 {path}` before using it"
        )
    lines = path.read_text(encoding="ascii", errors="replace").split()
    if len(lines) != 2 or lines[0] != _HEADER:
        raise KeyFileError(f"{path} is not a mricurate key file (expected a '{_HEADER}' header)")
    try:
        material = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"{path}: the key line is not hexadecimal") from None
    if len(material) != _KEY_BYTES:
        raise KeyFileError(f"{path}: the key must be {_KEY_BYTES} bytes, found {len(material)}")
    return SecretKey(material)


def default_private_dir(key_path: Path) -> Path:
    """The private location used when none is given: beside the key file."""
    return key_path.resolve().parent / "private"


def ensure_private_dir(path: Path) -> Path:
    """Create the private location with mode 0700 (it holds the link table)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
