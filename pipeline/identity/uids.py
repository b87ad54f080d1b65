"""Which UIDs are well known (never remapped) and how the rest are remapped."""

from __future__ import annotations

from functools import lru_cache

from pydicom._uid_dict import UID_dictionary

from pipeline.keys import SecretKey

# Everything under the standard's own root: SOP classes, transfer syntaxes,
# coding schemes, context groups, frame-of-reference and LDAP OIDs.
_DICOM_ROOT = "1.2.840.10008."


def is_well_known(uid: str) -> bool:
    """True for UIDs that name a definition, not an instance."""
    uid = uid.strip().rstrip("\0")
    return uid.startswith(_DICOM_ROOT) or uid in UID_dictionary


class UidMapper:
    """Keyed remapping of instance UIDs, cached because one series repeats them."""

    def __init__(self, key: SecretKey) -> None:
        self._key = key
        self.remap = lru_cache(maxsize=65536)(self._remap)

    def _remap(self, uid: str) -> str:
        clean = uid.strip().rstrip("\0")
        if not clean or is_well_known(clean):
            return clean
        return self._key.uid(clean)
