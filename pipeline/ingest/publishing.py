"""Publish what is verified as a new immutable release version, or nothing if nothing changed.

The new version holds everything already released (less withdrawn
subjects) plus the items verified since; :func:`pipeline.release.publish`
writes it in one rename.  The catalog records the version and moves the
items to ``RELEASED`` after the version exists: a crash in between leaves
a version on disk that the next run recognises (same content) and records.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalog import Catalog, ReleaseFile, StateChange
from pipeline.catalog.states import ItemState
from pipeline.ingest.process import Processing
from pipeline.release import DataArea, Publishable, SplitRatios, latest_version, publish
from pipeline.workspace import Workspace


@dataclass(frozen=True)
class PublishReport:
    version: str  # the new version, or "" when nothing changed
    latest: str  # the latest version after this run ("" before the first)
    files: int
    added: int
    changed: int
    removed: int
    withdrawn_subjects: int
    items_released: int


def publish_verified(
    workspace: Workspace, catalog: Catalog, run_id: int, processing: Processing
) -> PublishReport:
    withdrawn = catalog.withdrawn_subjects()
    released = [i.sha256 for i in catalog.items([ItemState.RELEASED])]
    verified = [i.sha256 for i in catalog.items([ItemState.VERIFIED])]
    outputs = [o for o in catalog.outputs_of(released + verified) if o.subject not in withdrawn]
    files = [
        Publishable(
            staged=processing.staging / o.area / o.relpath,
            area=DataArea(o.area),
            relpath=o.relpath,
            subject=o.subject,
            item=o.input_sha256,
        )
        for o in outputs
    ]
    ratios = SplitRatios(*workspace.config.splits)
    result = publish(
        workspace.release, files, key=processing.key, ratios=ratios,
        ruleset_version=processing.ruleset_version, withdrawn=withdrawn,
        dataset_name=workspace.config.release_name,
    )  # fmt: skip
    on_disk = latest_version(workspace.release) or ""
    recorded = catalog.latest_release()
    if result is not None:
        catalog.record_release(
            result.version, run_id,
            [ReleaseFile(f.relpath, f.sha256, f.size, f.item, f.subject) for f in result.files],
            {"added": result.added, "changed": result.changed, "removed": result.removed,
             "withdrawn_subjects": result.withdrawn_subjects},
        )  # fmt: skip
    elif on_disk and (recorded is None or recorded.version != on_disk):
        # Published by a run killed before it could record it: same content as now.
        catalog.record_release(
            on_disk, run_id,
            [ReleaseFile(f"{o.area}/{o.relpath}", o.sha256, o.size, o.input_sha256, o.subject)
             for o in outputs],
            {"recorded_after_interruption": True},
        )  # fmt: skip
    if verified and on_disk:
        catalog.transition([StateChange(sha, ItemState.RELEASED) for sha in verified], run_id)
    return PublishReport(
        version=result.version if result else "", latest=on_disk, files=len(files),
        added=result.added if result else 0, changed=result.changed if result else 0,
        removed=result.removed if result else 0,
        withdrawn_subjects=result.withdrawn_subjects if result else 0,
        items_released=len(verified) if on_disk else 0,
    )  # fmt: skip
