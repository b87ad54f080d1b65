"""Validate an ISMRMRD header against the ISMRMRD schema before anything is written.

ismrmrd's own Python and C++ bindings serialize headers without checking
them, so a header with a misspelt element or a date in the wrong form would
reach the release and fail later in someone's reconstruction.  Here every
header is checked with a real XSD validator (xmlschema) against the schema
of the installed ismrmrd version, ``data_contracts/ismrmrd.xsd``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import xmlschema

from pipeline.errors import InputError
from pipeline.raw.protocol import NAMESPACE, parse_header_xml
from pipeline.reasons import Reason
from pipeline.rulefiles import data_contracts_root

# Enough to see what is wrong without flooding a run summary.
_MAX_REPORTED = 5


class InvalidHeader(InputError):
    """An ISMRMRD header that the ISMRMRD schema rejects."""

    reason = Reason.INVALID_ISMRMRD_HEADER


@lru_cache(maxsize=1)
def ismrmrd_schema() -> Any:
    """The compiled ISMRMRD schema (compiled once per process: about 0.1 s)."""
    return xmlschema.XMLSchema(data_contracts_root() / "ismrmrd.xsd")


def _plain(text: str) -> str:
    return text.replace(f"{{{NAMESPACE}}}", "")


def _describe(error: Any) -> str:
    """Where and what, never the value: reasons about simple values may quote it."""
    where = _plain(error.path or "/")
    if isinstance(error.validator, xmlschema.validators.XsdGroup):
        # Content-model errors name element tags only ("Unexpected child with tag ...").
        return f"{where}: {_plain(str(error.reason))}"
    if isinstance(error.validator, xmlschema.validators.XsdElement):
        return f"{where}: element not allowed or incomplete here"
    return f"{where}: value does not match its schema type"


def header_violations(xml: str) -> list[str]:
    """Every violation of the schema, described PHI-free (element paths, not values)."""
    root = parse_header_xml(xml)
    return [_describe(error) for error in ismrmrd_schema().iter_errors(root)]


def validate_header(xml: str) -> None:
    """Raise :class:`InvalidHeader` unless ``xml`` is a valid ISMRMRD header.

    Raises
    ------
    InvalidHeader
        Listing the first violations by element path (values are never quoted).
    UnreadableInput
        If ``xml`` is not well-formed XML.
    """
    violations = header_violations(xml)
    if violations:
        shown = "; ".join(violations[:_MAX_REPORTED])
        more = (
            f" (and {len(violations) - _MAX_REPORTED} more)"
            if len(violations) > _MAX_REPORTED
            else ""
        )
        raise InvalidHeader(
            f"the ISMRMRD header does not match the ISMRMRD schema: {shown}{more}; "
            "fix the converter or the header rules that produced it"
        )
