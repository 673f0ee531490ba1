"""A Rank request in transport-neutral form, and the rules it must satisfy."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from feedrank.core.feature_schema import COUNTRY_VOCABULARY, LANGUAGE_VOCABULARY
from feedrank.core.settings import ExploreSettings
from feedrank.explore.errors import FieldViolation, InvalidRankRequest

MAX_USER_ID_LENGTH = 256
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")  # BCP-47, as the catalogue
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class RankQuery:
    """What the pipeline needs from a request, already validated."""

    user_id: str
    limit: int
    request_time_ms: int
    language: int | None  # index into LANGUAGE_VOCABULARY; None: the user's own only
    country: int | None  # index into COUNTRY_VOCABULARY
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
    language_index = _language_of(language, violations)
    country_index = _country_of(country.upper(), violations)
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


def _language_of(tag: str, violations: list[FieldViolation]) -> int | None:
    """The interned language of a BCP-47 tag. A well-formed tag that no post or user of
    the catalogue has is None: it adds no candidates (nothing is in that language yet),
    and requests cannot grow the vocabulary."""
    if not tag:
        return None
    if not _LANGUAGE_TAG.fullmatch(tag):
        violations.append(
            FieldViolation(
                "context.language",
                f"{tag[:40]!r} is not a BCP-47 tag: 2-8 letters, then '-'-separated "
                "parts of 1-8 letters or digits (such as 'en' or 'pt-BR')",
            )
        )
        return None
    return LANGUAGE_VOCABULARY.get(tag.lower())


def _country_of(code: str, violations: list[FieldViolation]) -> int | None:
    """The interned country of an ISO 3166-1 alpha-2 code (two letters, any of them)."""
    if not code:
        return None
    if not _COUNTRY_CODE.fullmatch(code):
        violations.append(
            FieldViolation(
                "context.country", f"{code[:40]!r} is not a two-letter country code such as 'US'"
            )
        )
        return None
    return COUNTRY_VOCABULARY.intern(code)  # at most 26 * 26 codes


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
