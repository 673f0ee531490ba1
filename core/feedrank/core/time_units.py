"""Time units in milliseconds, the unit of every event time in feedrank.

One home for them, so no module writes ``24 * 3600 * 1000`` again::

    from feedrank.core.time_units import DAY_MS

    window_ms = 14 * DAY_MS
"""

from __future__ import annotations

SECOND_MS = 1_000
"""One second in milliseconds."""
MINUTE_MS = 60 * SECOND_MS
"""One minute in milliseconds."""
HOUR_MS = 60 * MINUTE_MS
"""One hour in milliseconds."""
DAY_MS = 24 * HOUR_MS
"""One day in milliseconds."""
WEEK_MS = 7 * DAY_MS
"""One week in milliseconds."""
