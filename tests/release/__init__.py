"""What a run released: every file under an output folder but the run's own state folder."""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".mricurate"  # pipeline.batch.runner.STATE_DIR


def released(output: Path, pattern: str = "*") -> list[Path]:
    """Files under ``output`` matching ``pattern``, outside ``.mricurate/`` (locks, temps)."""
    return sorted(
        p
        for p in output.rglob(pattern)
        if p.is_file() and STATE_DIR not in p.relative_to(output).parts
    )
