"""How the learner jobs' commands (``feedrank train``, ``feedrank learn``) show what the
job reports: a :class:`Reporter` over a rich console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from feedrank.core.reporting import Advance, Reporter


def console_reporter(console: Console, *, show_work: bool = True) -> Reporter:
    """Messages printed, warnings in yellow; with ``show_work``, a spinner while a step
    runs and a transient progress bar while steps are counted."""

    def warn(message: str) -> None:
        console.print(f"[yellow]{message}[/]")

    if not show_work:
        return Reporter(say=console.print, warn=warn)
    return Reporter(
        say=console.print, warn=warn, working=console.status, counting=_progress_bar(console)
    )


def _progress_bar(console: Console) -> Callable[[str, int], AbstractContextManager[Advance]]:
    @contextmanager
    def counting(description: str, total: int) -> Iterator[Advance]:
        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.advance(task, done)

    return counting
