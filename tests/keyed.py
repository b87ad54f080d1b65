"""The keyed derivations recomputed from ``hmac`` and ``hashlib`` alone, for the tests.

The README promises that every pseudonym, new UID and date shift is an
HMAC-SHA256 of the original value under the site key.  These functions say
exactly which message is signed and how the digest becomes the output,
without calling :mod:`pipeline.keys`, so a test can hold the product to them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def digest(key: bytes, domain: str, value: str) -> bytes:
    """HMAC-SHA256 of ``domain``, a NUL byte and ``value`` (UTF-8) under ``key``."""
    return hmac.new(key, domain.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, kind: str, value: str, length: int = 10, prefix: str = "") -> str:
    """Base32 (Crockford) digits of the digest read as a big-endian integer, lowest first."""
    number = int.from_bytes(digest(key, kind, value), "big")
    return prefix + "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in range(length))


def uid(key: bytes, original: str) -> str:
    """``2.25.`` and the first 16 digest bytes as a version-8, RFC-variant UUID integer."""
    raw = bytearray(digest(key, "uid", original)[:16])
    raw[6] = 0x80 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return f"2.25.{int.from_bytes(raw, 'big')}"


def day_offset(key: bytes, subject: str, low: int, high: int) -> int:
    """``low`` plus the digest, as a big-endian integer, modulo the number of days in the range."""
    return low + int.from_bytes(digest(key, "date-shift", subject), "big") % (high - low + 1)


def shifted(date: str, days: int) -> str:
    """A DA value ``YYYYMMDD`` moved by ``days``."""
    moved = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) + dt.timedelta(days=days)
    return moved.strftime("%Y%m%d")
