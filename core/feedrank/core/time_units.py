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

_DURATION_UNITS = {"ms": 1, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}


def parse_duration_ms(text: str) -> int:
    """A duration as people write it, in milliseconds: ``500ms``, ``90s``, ``15m``,
    ``2h``, ``7d``, ``2w`` (a bare number is seconds). ValueError naming the forms."""
    value = text.strip().lower()
    unit = next(
        (unit for unit in sorted(_DURATION_UNITS, key=len, reverse=True) if value.endswith(unit)),
        "s",
    )
    number = value[: -len(unit)] if value.endswith(unit) else value
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration; write e.g. 90s, 15m, 2h, 7d (ms, s, m, h, d, w)"
        ) from None
    if not amount >= 0 or amount == float("inf"):
        raise ValueError(f"{text!r} is not a duration: it must be a finite number >= 0")
    return round(amount * _DURATION_UNITS[unit])
