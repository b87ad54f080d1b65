"""The rule-set version: one short hash of every rule file that decides an output.

Recorded with each run and output, with each reviewer's decision, and keyed
into the review's scan cache.  Here, below the ingest and the review, so both
compute it the one way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.deface.rules import DefaceRules, load_deface_rules
from pipeline.dicom.csa import load_csa_allowlist
from pipeline.dicom.profile import Profile, load_profile
from pipeline.pixels.regions import RegionRules, load_region_rules
from pipeline.raw.header_rules import HeaderRules, load_header_rules
from pipeline.rulefiles import rules_root
from pipeline.workspace.layout import Workspace


def ruleset_version(
    profile: Profile, header: HeaderRules, regions_digest: str, deface: DefaceRules | None = None
) -> str:
    """One short hash of every rule file that decides an output (recorded with each output)."""
    digest = hashlib.sha256()
    for part in (profile.digest, header.digest, regions_digest, load_csa_allowlist().digest):
        digest.update(part.encode() + b"\0")
    if deface is not None:  # defacing on: its rules decide the pixels of head volumes
        digest.update(b"deface\0" + deface.digest.encode())
    return digest.hexdigest()[:16]


def deface_rules_of(workspace: Workspace) -> DefaceRules | None:
    """The defacing rules ``workspace``'s config asks for; None when defacing is off."""
    config = workspace.config
    if not config.deface:
        return None
    return load_deface_rules(Path(config.deface_rules) if config.deface_rules else None)


def workspace_ruleset_version(workspace: Workspace) -> str:
    """The version of the rules ``workspace``'s next run would apply."""
    return ruleset_version(
        load_profile(workspace.config.profile),
        load_header_rules(),
        load_region_rules().digest,
        deface_rules_of(workspace),
    )


def rule_file_hashes(
    profile: Profile, header: HeaderRules, regions: RegionRules, deface: DefaceRules | None = None
) -> dict[str, str]:
    """The sha256 of every rule file the rule-set version stands for, by name.

    A file under the shipped ``rules/`` is named by its path there
    (``dicom/research.yaml``), a site's own file by its name only: the audit
    report lists them, and a site path says nothing an IRB needs.
    """
    files: list[Path] = [*profile.files, header.path, *regions.files, load_csa_allowlist().path]
    if deface is not None:
        files.append(deface.path)
    for vocabulary in (profile.vocabulary, header.vocabulary):
        if vocabulary is not None:
            files += vocabulary.files
    root = rules_root().resolve()
    hashes: dict[str, str] = {}
    for path in dict.fromkeys(p.resolve() for p in files):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(hashes.items()))
