"""One replay row, validated: raw cell values in, a :class:`LoggedRow` or a :class:`RowError` out.

Cells arrive as text (CSV) or as typed values (Parquet); both go through the same rules,
and a broken rule raises :class:`RowError` naming the line, the column and what is
accepted, so a user can fix the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from feedrank.core.codecs import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, REWARD_TYPES
from feedrank.learners.replay import columns

Cell = object
"""A raw cell: ``str`` from CSV; ``int``, ``float``, ``bool``, ``str``, ``datetime`` or
``None`` from Parquet. Empty text and ``None`` mean the cell is missing."""


class RowError(ValueError):
    """A row that cannot be loaded; ``line`` is 1-based (CSV: the physical line,
    header = line 1; Parquet: the row number)."""

    def __init__(self, line: int, column: str | None, message: str) -> None:
        where = f"line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column
        self.message = message


@dataclass(frozen=True)
class Features:
    """Feature values of a row: numbers and categories, by column name."""

    numeric: Mapping[str, float] = field(default_factory=dict)
    categorical: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedRow:
    """One logged (context, action, propensity, reward) row of a replay file."""

    line: int
    decision_id: str | None  # None: the file has no decision_id column (one decision per row)
    event_time_ms: int
    user_id: str
    post_id: str
    position: int
    propensity: float
    reward: float
    reward_type: str
    reward_time_ms: int
    score: float
    model_version: str
    arm: str
    context: Features
    item: Features


@dataclass(frozen=True)
class FeatureColumns:
    """Which feature columns hold numbers (the rest hold categories), and which belong to
    the row rather than the decision (``item_*`` columns always do)."""

    numeric: frozenset[str]
    categorical: frozenset[str]
    per_row: frozenset[str] = frozenset()

    def is_item(self, name: str) -> bool:
        return name.startswith(columns.ITEM_FEATURE_PREFIX) or name in self.per_row


def parse_row(line: int, record: Mapping[str, Cell], features: FeatureColumns) -> LoggedRow:
    """Validate one record (column name -> cell) and build its row; RowError if invalid."""
    event_time_ms = _timestamp(line, columns.TIMESTAMP, record.get(columns.TIMESTAMP))
    reward_time = record.get(columns.REWARD_TIMESTAMP)
    reward_time_ms = (
        event_time_ms
        if _missing(reward_time)
        else _timestamp(line, columns.REWARD_TIMESTAMP, reward_time)
    )
    if reward_time_ms < event_time_ms:
        raise RowError(line, columns.REWARD_TIMESTAMP, "is before the decision's timestamp")
    has_decision_column = columns.DECISION_ID in record
    return LoggedRow(
        line=line,
        decision_id=(
            _text(line, columns.DECISION_ID, record.get(columns.DECISION_ID))
            if has_decision_column
            else None
        ),
        event_time_ms=event_time_ms,
        user_id=_text(line, columns.USER_ID, record.get(columns.USER_ID)),
        post_id=_text(line, columns.POST_ID, record.get(columns.POST_ID)),
        position=_position(line, record.get(columns.POSITION)),
        propensity=_propensity(line, record.get(columns.PROPENSITY)),
        reward=_reward(line, record.get(columns.REWARD)),
        reward_type=_reward_type(line, record.get(columns.REWARD_TYPE)),
        reward_time_ms=reward_time_ms,
        score=_optional_number(line, columns.SCORE, record.get(columns.SCORE), 0.0),
        model_version=_optional_text(
            record.get(columns.MODEL_VERSION), columns.DEFAULT_MODEL_VERSION
        ),
        arm=_optional_text(record.get(columns.ARM), columns.DEFAULT_ARM),
        context=_features(line, record, features, item=False),
        item=_features(line, record, features, item=True),
    )


def is_number_text(value: str) -> bool:
    """True when a CSV cell reads as a float (``nan`` and ``inf`` included)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def _missing(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(line: int, column: str, value: Cell) -> str:
    if _missing(value):
        raise RowError(line, column, "is missing; a non-empty id is required")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RowError(line, column, f"must be text or a whole number, got {value!r}")


def _optional_text(value: Cell, default: str) -> str:
    return default if _missing(value) else str(value).strip()


def _number(line: int, column: str, value: Cell) -> float:
    if _missing(value):
        raise RowError(line, column, "is missing; a number is required")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) or (isinstance(value, str) and is_number_text(value)):
        number = float(value)
    else:
        raise RowError(line, column, f"must be a number, got {value!r}")
    if not math.isfinite(number):
        raise RowError(line, column, f"must be finite, got {number}")
    return number


def _optional_number(line: int, column: str, value: Cell, default: float) -> float:
    return default if _missing(value) else _number(line, column, value)


def _propensity(line: int, value: Cell) -> float:
    propensity = _number(line, columns.PROPENSITY, value)
    if not 0.0 < propensity <= 1.0:
        raise RowError(
            line,
            columns.PROPENSITY,
            f"is {propensity}; the logging probability must be in (0, 1]",
        )
    return propensity


def _reward(line: int, value: Cell) -> float:
    reward = _number(line, columns.REWARD, value)
    if reward < 0:
        raise RowError(line, columns.REWARD, f"is {reward}; rewards must be >= 0")
    return reward


def _position(line: int, value: Cell) -> int:
    number = _number(line, columns.POSITION, value)
    if not number.is_integer() or number < 0:
        raise RowError(line, columns.POSITION, f"must be a whole number >= 0, got {value!r}")
    if isinstance(value, str) and not value.strip().isdigit():
        raise RowError(line, columns.POSITION, f"must be written as digits, got {value!r}")
    return int(number)


def _reward_type(line: int, value: Cell) -> str:
    if _missing(value):
        return columns.DEFAULT_REWARD_TYPE
    name = str(value).strip().lower()
    if name not in REWARD_TYPES:
        raise RowError(
            line, columns.REWARD_TYPE, f"unknown type {value!r}; one of {sorted(REWARD_TYPES)}"
        )
    return name


def _timestamp(line: int, column: str, value: Cell) -> int:
    """Milliseconds since the epoch (whole number), an ISO 8601 text with a time zone, or
    (Parquet) a timezone-aware timestamp."""
    if _missing(value):
        raise RowError(line, column, "is missing; a timestamp is required")
    if isinstance(value, datetime):
        epoch_ms = _aware_ms(line, column, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        epoch_ms = value
    elif isinstance(value, str) and value.strip().isdigit():
        epoch_ms = int(value.strip())
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as error:
            raise RowError(
                line,
                column,
                f"{value!r} is not a timestamp; use epoch milliseconds or ISO 8601 with a "
                "time zone (2025-11-24T16:00:00Z)",
            ) from error
        epoch_ms = _aware_ms(line, column, parsed)
    else:
        raise RowError(line, column, f"must be a timestamp, got {value!r}")
    if not MIN_EVENT_TIME_MS <= epoch_ms < MAX_EVENT_TIME_MS:
        raise RowError(
            line,
            column,
            f"{epoch_ms} is not a plausible time (milliseconds since the epoch, 2000-2100)",
        )
    return epoch_ms


def _aware_ms(line: int, column: str, moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RowError(
            line, column, f"{moment.isoformat()} has no time zone; add one (e.g. 'Z' or +00:00)"
        )
    return round(moment.timestamp() * 1000)


def _features(
    line: int, record: Mapping[str, Cell], features: FeatureColumns, *, item: bool
) -> Features:
    def wanted(name: str) -> bool:
        return features.is_item(name) == item

    def key(name: str) -> str:
        return name.removeprefix(columns.ITEM_FEATURE_PREFIX)

    numeric = {
        key(name): _number(line, name, record[name])
        for name in sorted(features.numeric)
        if wanted(name) and not _missing(record.get(name))
    }
    categorical = {
        key(name): str(record[name]).strip()
        for name in sorted(features.categorical)
        if wanted(name) and not _missing(record.get(name))
    }
    return Features(numeric=numeric, categorical=categorical)
