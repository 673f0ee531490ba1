"""How a service or a job tells its user what it is doing, without knowing how it is shown.

``feedrank serve``, ``train`` and ``learn`` fill a :class:`Reporter` with their console
(messages, warnings in colour, spinners, progress bars); without one, messages go to a
log (:meth:`Reporter.logging_to`) and nothing else is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

log = logging.getLogger("feedrank")

Advance = Callable[[int], None]  # the steps done since the last call


def _nothing_shown(message: str) -> AbstractContextManager[object]:
    return nullcontext()


@contextmanager
def _no_bar(description: str, total: int) -> Iterator[Advance]:
    yield lambda done: None


@dataclass(frozen=True)
class Reporter:
    """Where a service's or a job's messages go.

    ``say`` and ``warn`` take a finished message; ``working(message)`` is held while a
    step that shows no count runs (a spinner); ``counting(description, total)`` is held
    while ``total`` steps run and yields the callable that advances it (a progress bar).
    """

    say: Callable[[str], None] = log.info
    warn: Callable[[str], None] = log.warning
    working: Callable[[str], AbstractContextManager[object]] = _nothing_shown
    counting: Callable[[str, int], AbstractContextManager[Advance]] = _no_bar

    @classmethod
    def logging_to(cls, logger: logging.Logger) -> Reporter:
        """Messages to ``logger`` (warnings as warnings), nothing else shown."""
        return cls(say=logger.info, warn=logger.warning)
