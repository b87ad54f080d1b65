"""The rule-set version: one short hash of every rule file that decides an output.

Recorded with each run and output, with each reviewer's decision, and keyed
into the review's scan cache.  Here, below the ingest and the review, so both
compute it the one way.
"""

from __future__ import annotations

import hashlib

from pipeline.dicom.csa import load_csa_allowlist
from pipeline.dicom.profile import Profile, load_profile
from pipeline.pixels.regions import load_region_rules
from pipeline.raw.header_rules import HeaderRules, load_header_rules
from pipeline.workspace.layout import Workspace


def ruleset_version(profile: Profile, header: HeaderRules, regions_digest: str) -> str:
    """One short hash of every rule file that decides an output (recorded with each output)."""
    digest = hashlib.sha256()
    for part in (profile.digest, header.digest, regions_digest, load_csa_allowlist().digest):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def workspace_ruleset_version(workspace: Workspace) -> str:
    """The version of the rules ``workspace``'s next run would apply."""
    return ruleset_version(
        load_profile(workspace.config.profile), load_header_rules(), load_region_rules().digest
    )
