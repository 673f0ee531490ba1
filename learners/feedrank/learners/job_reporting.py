"""How a learner job (``feedrank train``, ``feedrank learn``) tells its user what it is
doing, without the learners knowing how it is shown.

The CLI fills a :class:`JobReporter` with its console (messages, warnings in colour,
spinners, progress bars); by default messages go to the log and nothing else is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

log = logging.getLogger("feedrank.learners")

Advance = Callable[[int], None]  # the steps done since the last call


def _nothing_shown(message: str) -> AbstractContextManager[object]:
    return nullcontext()


@contextmanager
def _no_bar(description: str, total: int) -> Iterator[Advance]:
    yield lambda done: None


@dataclass(frozen=True)
class JobReporter:
    """Where a job's messages go.

    ``say`` and ``warn`` take a finished message; ``working(message)`` is held while a
    step that shows no count runs (a spinner); ``counting(description, total)`` is held
    while ``total`` steps run and yields the callable that advances it (a progress bar).
    """

    say: Callable[[str], None] = log.info
    warn: Callable[[str], None] = log.warning
    working: Callable[[str], AbstractContextManager[object]] = _nothing_shown
    counting: Callable[[str, int], AbstractContextManager[Advance]] = _no_bar
