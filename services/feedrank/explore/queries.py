"""A Rank request in transport-neutral form, and the rules it must satisfy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from feedrank.core.features.schema import COUNTRIES, LANGUAGES
from feedrank.core.settings import ExploreSettings
from feedrank.explore.errors import FieldViolation, InvalidRankRequest

MAX_USER_ID_LENGTH = 256


@dataclass(frozen=True)
class RankQuery:
    """What the pipeline needs from a request, already validated."""

    user_id: str
    limit: int
    request_time_ms: int
    language: int | None  # index into LANGUAGES
    country: int | None  # index into COUNTRIES
    surface: str
    numeric_context: Mapping[str, float] = field(default_factory=dict)


def build_query(
    *,
    user_id: str,
    limit: int,
    request_time_ms: int,
    language: str,
    country: str,
    surface: str,
    numeric_context: Mapping[str, float],
    settings: ExploreSettings,
    now_ms: int,
) -> RankQuery:
    """Validate raw request fields; every problem is reported at once, per field."""
    violations: list[FieldViolation] = []
    if not user_id.strip():
        violations.append(FieldViolation("user_id", "must be a non-empty string"))
    elif len(user_id) > MAX_USER_ID_LENGTH:
        violations.append(
            FieldViolation("user_id", f"must be at most {MAX_USER_ID_LENGTH} characters")
        )
    if limit < 0 or limit > settings.max_limit:
        violations.append(
            FieldViolation(
                "limit",
                f"is {limit}; must be 0 (default {settings.default_limit}) to {settings.max_limit}",
            )
        )
    if request_time_ms < 0:
        violations.append(
            FieldViolation("context.request_time_ms", "must be >= 0 (0 means server time)")
        )
    language_index = _index_of(language, LANGUAGES, "context.language", violations)
    country_index = _index_of(country.upper(), COUNTRIES, "context.country", violations)
    for name, value in numeric_context.items():
        if not math.isfinite(value):
            violations.append(
                FieldViolation(f"context.numeric[{name}]", f"is {value}; must be finite")
            )
    if violations:
        raise InvalidRankRequest(tuple(violations))
    return RankQuery(
        user_id=user_id,
        limit=limit or min(settings.default_limit, settings.max_limit),
        request_time_ms=request_time_ms or now_ms,
        language=language_index,
        country=country_index,
        surface=surface or "explore",
        numeric_context=dict(numeric_context),
    )


def _index_of(
    code: str, known: tuple[str, ...], field_name: str, violations: list[FieldViolation]
) -> int | None:
    if not code:
        return None
    if code in known:
        return known.index(code)
    violations.append(FieldViolation(field_name, f"{code!r} is not one of {', '.join(known)}"))
    return None


@dataclass(frozen=True)
class RankedPost:
    post_id: str
    position: int
    score: float
    propensity: float


@dataclass(frozen=True)
class RankResult:
    """What a Rank call returns, whatever the transport."""

    decision_id: str
    model_version: str
    arm: str
    items: tuple[RankedPost, ...]
