"""What a run shows a person: a progress bar on a terminal, the summary as a table.

Everything printed names inputs by opaque keys only (paths and header
values hold PHI).  The progress bar is drawn on standard error and only when
it is a terminal, so logs and pipes get the summary alone.  It refreshes
when the run reports progress, never from a thread of its own: the run
forks worker processes, and a forked copy of a drawing thread's lock is a
deadlock waiting to happen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.batch.runner import RunSummary
from pipeline.dicom.tally import for_people
from pipeline.reasons import Outcome

_MAX_KEYS = 5


def opaque_keys(keys: list[str]) -> str:
    """At most five opaque input keys (never paths: they can hold names)."""
    shown = ", ".join(keys[:_MAX_KEYS])
    return shown + (f", … {len(keys) - _MAX_KEYS} more" if len(keys) > _MAX_KEYS else "")


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A callback for :func:`pipeline.batch.runner.run_batch`, or None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn(f"{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        auto_refresh=False,
        transient=True,
    )
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        bar.refresh()

    with bar:
        yield update


def print_summary(summary: RunSummary, title: str, facts: bool = True) -> None:
    """The outcomes with their reasons and opaque keys, then the step's facts."""
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("outcome")
    table.add_column("inputs", justify="right")
    table.add_column("reason")
    table.add_column("opaque keys")
    by_outcome: dict[Outcome, list[tuple[str, list[str]]]] = {}
    for reason, keys in sorted(summary.reasons.items(), key=lambda kv: kv[0].value):
        by_outcome.setdefault(reason.outcome, []).append((reason.value, keys))
    for outcome in Outcome:
        number = summary.count(outcome)
        if not number:
            continue
        table.add_row(outcome.value, str(number), "", "")
        for reason, keys in by_outcome.get(outcome, []):
            table.add_row("", str(len(keys)), reason, opaque_keys(keys))
    console.print(table)
    if facts:
        for name, number in for_people(summary.facts):
            if number:
                console.print(f"  {name}: {number}")
