"""Durations as people write them (90s, 15m, 2h), read into milliseconds."""

from __future__ import annotations

import pytest

from feedrank.core.time_units import (
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    WEEK_MS,
    parse_duration_ms,
)


def test_durations_read_as_people_write_them() -> None:
    assert parse_duration_ms("500ms") == 500
    assert parse_duration_ms("90s") == 90 * SECOND_MS
    assert parse_duration_ms("15m") == 15 * MINUTE_MS
    assert parse_duration_ms("2H") == 2 * HOUR_MS
    assert parse_duration_ms("1.5d") == 36 * HOUR_MS
    assert parse_duration_ms("2w") == 2 * WEEK_MS
    assert parse_duration_ms("30") == 30 * SECOND_MS
    for bad in ("soon", "-5m", "inf", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_duration_ms(bad)
