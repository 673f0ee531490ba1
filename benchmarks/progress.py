"""Progress lines of a benchmark run: timestamped, on stderr, so stdout keeps the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress(benchmark: str) -> Callable[[str], None]:
    """A ``say(message)`` that prints ``[<benchmark> HH:MM:SS] message`` to stderr."""

    def say(message: str) -> None:
        print(f"[{benchmark} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return say
