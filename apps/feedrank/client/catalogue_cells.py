"""Reading one cell of a catalogue row: texts, times, flags, number lists, topics, features.

Cells come typed from JSON lines and Parquet, and as text from CSV; each reader accepts
both and raises :class:`~feedrank.client.errors.InvalidEvent` naming the column when a
cell cannot mean what its column says. ``present`` is a row's cells with the empty ones
(None or blank text) left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

from feedrank.client.errors import InvalidEvent

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
"""A decimal number as text (no nan, inf or digit separators)."""
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def is_missing(value: object) -> bool:
    """An empty cell: None (a JSON null, a Parquet null) or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def text(present: Mapping[str, object], field: str) -> str:
    """A text cell; whole numbers (an integer id column in Parquet) read as their digits."""
    value = present.get(field)
    if value is None:
        raise InvalidEvent(field, "is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidEvent(field, f"must be a text, got {value!r}")
    return value


def optional_text(present: Mapping[str, object], field: str) -> str | None:
    """A text cell with its surrounding blanks removed, or None when the cell is empty."""
    return text(present, field).strip() if field in present else None


def epoch_ms(present: Mapping[str, object], field: str) -> int:
    """Integer ms since the epoch, or ISO 8601 with a time zone (a text or a datetime)."""
    value = present.get(field)
    if value is None:
        raise InvalidEvent(field, "is missing; a time in ms since the epoch is required")
    if isinstance(value, str):
        stripped = value.strip()
        if re.fullmatch(r"[+-]?\d+", stripped):
            return int(stripped)
        try:
            value = datetime.fromisoformat(stripped)
        except ValueError:
            raise InvalidEvent(
                field, f"{value!r} is not a time: use ms since the epoch or ISO 8601 with a zone"
            ) from None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InvalidEvent(field, f"{value.isoformat()} has no time zone; add one (e.g. Z)")
        return round(value.timestamp() * 1000)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(field, f"must be a time in ms since the epoch, got {value!r}")
    return value


def flag(present: Mapping[str, object], field: str) -> bool:
    """A true/false cell (false when empty): a boolean, 0 or 1, or true/false/yes/no text."""
    value = present.get(field, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidEvent(field, f"must be true or false, got {value!r}")


def numbers(value: object, field: str, separator: str) -> list[float]:
    """A list of numbers: a real list, or a text of numbers split by ``separator``."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = [part for part in re.split(separator, value.strip().strip("[]")) if part]
        if not all(NUMBER.fullmatch(part) for part in parts):
            raise InvalidEvent(field, f"must be a list of numbers, got {value!r}")
        return [float(part) for part in parts]
    if isinstance(value, list | tuple) and all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    ):
        return [float(item) for item in value]
    raise InvalidEvent(field, f"must be a list of numbers, got {value!r}")


def topics(present: Mapping[str, object]) -> tuple[list[str], list[float]]:
    """Topic names (a list, ``|``-separated text, or an object of name: weight) and weights."""
    value = present.get("topics")
    weights = numbers(present.get("topic_weights"), "topic_weights", r"\|")
    if value is None:
        return [], weights
    if isinstance(value, dict):
        if weights:
            raise InvalidEvent("topic_weights", "topics given as name: weight take no weights")
        return [str(name) for name in value], numbers(list(value.values()), "topics", "")
    if isinstance(value, str):
        return [name.strip() for name in value.split("|") if name.strip()], weights
    if isinstance(value, list | tuple) and all(isinstance(name, str) for name in value):
        return list(value), weights
    raise InvalidEvent("topics", f"must be a list of names, got {value!r}")


def features(
    present: Mapping[str, object], known: frozenset[str], *, typed: bool
) -> dict[str, float | str]:
    """The ``features`` column (an object, a Parquet map or JSON text) and the extra columns:
    text cells of an untyped (CSV) file that read as numbers are numbers."""
    found = _feature_column(present.get("features"))
    for name, value in present.items():
        if name in known:
            continue
        if isinstance(value, str):
            stripped = value.strip()
            found[name] = float(stripped) if not typed and NUMBER.fullmatch(stripped) else value
        elif isinstance(value, int | float):  # bool included: true is 1, false 0
            found[name] = value
        else:
            raise InvalidEvent(name, f"a feature is a number or a text, got {value!r}")
    return found


def _feature_column(value: object) -> dict[str, float | str]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidEvent(
                "features", f"must be a JSON object of name: number or text, got {value!r}"
            ) from None
    if isinstance(value, list) and all(
        isinstance(pair, tuple) and len(pair) == 2 for pair in value
    ):
        value = dict(value)  # a Parquet map column
    if not isinstance(value, dict):
        raise InvalidEvent("features", f"must be an object of name: number or text, got {value!r}")
    found: dict[str, float | str] = {}
    for name, feature in value.items():
        if feature is None:
            continue
        if not isinstance(feature, str | int | float):
            raise InvalidEvent("features", f"feature {name!r} must be a number or a text")
        found[str(name)] = feature
    return found
