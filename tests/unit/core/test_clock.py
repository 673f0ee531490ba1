from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedrank.core.clock import ManualClock, SystemClock, to_datetime


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start_ms=1_000)
    assert clock.now_ms() == 1_000
    assert clock.advance(14 * 24 * 3600 * 1000) == 1_000 + 1_209_600_000
    with pytest.raises(ValueError, match="back in time"):
        clock.advance(-1)


def test_system_clock_is_epoch_milliseconds() -> None:
    now = datetime.now(tz=UTC).timestamp() * 1000
    assert abs(SystemClock().now_ms() - now) < 5_000


def test_to_datetime_is_timezone_aware() -> None:
    moment = to_datetime(1_764_000_000_000)
    assert moment.tzinfo is UTC
    assert moment.year == 2025
