"""Post-processing rules over the ranked candidates of one request.

The rules run between ranking and exploration, in a fixed order:

1. **filters** drop candidates the user must not see: blocked creators, hidden,
   reported and already-seen posts, sensitive posts for users with the sensitive
   filter, posts in none of the user's languages, region-locked posts from another
   country;
2. **freshness** boosts newer posts: ``score * (1 + weight * 2 ** (-age_hours /
   half_life_hours))``, so a brand-new post gets ``1 + weight`` times its score and a
   post one half-life old ``1 + weight / 2``; the list is then sorted by the boosted
   score;
3. **diversity**: optionally MMR over the content embeddings picks the top N, then a
   per-creator cap moves a creator's posts beyond ``max_per_creator`` below the top N
   (never drops them);
4. **fairness** for small creators within the top N: an exposure floor (at least a
   share of the top N when eligible small-creator posts exist) and a cap (at most a
   share).

Every rule is deterministic given the candidates, their scores and the user context,
so the whole pass is part of the logging policy (see ``docs/exploration.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from feedrank.core.feature_schema import BoolArray, FloatArray, IntArray, PostFeatureBatch
from feedrank.core.settings import RULE_FILTERS, RuleSettings

FILTER_NAMES: tuple[str, ...] = RULE_FILTERS
"""The filters, in the order they run; ``RuleOutcome.dropped`` uses these keys."""

REORDER_NAMES: tuple[str, ...] = (
    "freshness",
    "mmr",
    "creator_cap",
    "fairness_floor",
    "fairness_cap",
)
"""The reordering rules, in the order they run; ``RuleOutcome.reordered`` uses these keys."""


@dataclass(frozen=True)
class UserRuleContext:
    """What the rules know of the user at impression time.

    Post ids are catalogue rows (``PostFeatureBatch.post_index`` values); creators are
    ``creator_index`` values; languages and the country index ``LANGUAGES`` and
    ``COUNTRIES``. An empty ``languages`` set turns the language filter off for this
    user; ``country=None`` turns the region filter off.
    """

    blocked_creators: frozenset[int] = frozenset()
    hidden_posts: frozenset[int] = frozenset()
    reported_posts: frozenset[int] = frozenset()
    seen_posts: frozenset[int] = frozenset()
    languages: frozenset[int] = frozenset()
    sensitive_filter: bool = False
    country: int | None = None


@dataclass(frozen=True)
class RuleOutcome:
    """The post-processed list and what each rule did to it.

    ``dropped[name]`` counts the candidates filter ``name`` removed (filters run in
    order, so a candidate is counted once, by the first filter that removes it).
    ``reordered[name]`` counts the top-N slots whose occupant that rule changed (0:
    the rule had no effect on the top N). Only enabled rules have keys.
    """

    rows: IntArray  # positions into the input batch, in final order
    adjusted_scores: FloatArray  # aligned with rows (after the freshness boost)
    dropped: dict[str, int]
    reordered: dict[str, int]


def apply_rules(
    batch: PostFeatureBatch,
    scores: FloatArray,
    context: UserRuleContext,
    settings: RuleSettings,
) -> RuleOutcome:
    """Filter, boost and reorder the candidates of one request."""
    if scores.shape != (len(batch),):
        raise ValueError(f"scores must have shape ({len(batch)},), got {scores.shape}")
    keep, dropped = _filter(batch, context, settings.filters)
    kept = np.flatnonzero(keep)
    raw = np.asarray(scores, dtype=np.float32)
    order = kept[np.argsort(-raw[kept], kind="stable")]
    adjusted = raw
    reordered: dict[str, int] = {}
    n = min(settings.top_n, len(order))
    if settings.freshness:
        adjusted = _freshness_boost(raw, batch.age_hours, settings)
        boosted = kept[np.argsort(-adjusted[kept], kind="stable")]
        order = _record("freshness", order, boosted, n, reordered)
    if settings.mmr:
        picked = _mmr_order(order, adjusted, batch.content, n, settings)
        order = _record("mmr", order, picked, n, reordered)
    cap = settings.max_per_creator if settings.creator_cap else len(order)
    if settings.creator_cap:
        order = _record("creator_cap", order, _cap_creators(order, batch, n, cap), n, reordered)
    if settings.fairness:
        small = batch.creator_followers < np.float32(math.log1p(settings.small_creator_followers))
        floor, ceiling = _fairness_counts(n, settings)
        floored = _promote(order, small, batch=batch, n=n, cap=cap, minimum=floor)
        order = _record("fairness_floor", order, floored, n, reordered)
        capped = _promote(order, ~small, batch=batch, n=n, cap=cap, minimum=n - ceiling)
        order = _record("fairness_cap", order, capped, n, reordered)
    return RuleOutcome(
        rows=order, adjusted_scores=adjusted[order], dropped=dropped, reordered=reordered
    )


def _filter(
    batch: PostFeatureBatch, context: UserRuleContext, enabled: frozenset[str]
) -> tuple[BoolArray, dict[str, int]]:
    """Keep mask over the batch and, per enabled filter, how many it removed."""
    removers: dict[str, Callable[[], BoolArray | None]] = {
        "blocked_creator": lambda: _member(batch.creator_index, context.blocked_creators),
        "hidden": lambda: _member(batch.post_index, context.hidden_posts),
        "reported": lambda: _member(batch.post_index, context.reported_posts),
        "seen": lambda: _member(batch.post_index, context.seen_posts),
        "sensitive": lambda: batch.sensitive if context.sensitive_filter else None,
        "language": lambda: (
            ~_member(batch.language, context.languages) if context.languages else None
        ),
        "region": lambda: (
            batch.region_locked & (batch.country != context.country)
            if context.country is not None
            else None
        ),
    }
    keep = np.ones(len(batch), dtype=np.bool_)
    dropped: dict[str, int] = {}
    for name in FILTER_NAMES:
        if name not in enabled:
            continue
        removes = removers[name]()
        if removes is None:
            dropped[name] = 0
            continue
        removed = keep & removes
        dropped[name] = int(np.count_nonzero(removed))
        keep &= ~removed
    return keep, dropped


def _member(values: IntArray, members: frozenset[int]) -> BoolArray:
    if not members:
        return np.zeros(values.shape[0], dtype=np.bool_)
    wanted = np.fromiter(members, dtype=np.int64, count=len(members))
    return np.isin(values, wanted)


def _freshness_boost(
    scores: FloatArray, age_hours: FloatArray, settings: RuleSettings
) -> FloatArray:
    half_lives = np.maximum(age_hours, np.float32(0.0)) / np.float32(
        settings.freshness_half_life_hours
    )
    boost = np.float32(1.0) + np.float32(settings.freshness_weight) * np.exp2(-half_lives)
    boosted: FloatArray = (scores * boost).astype(np.float32)
    return boosted


def _record(
    name: str, before: IntArray, after: IntArray, n: int, counts: dict[str, int]
) -> IntArray:
    counts[name] = int(np.count_nonzero(before[:n] != after[:n]))
    return after


def _mmr_order(
    order: IntArray, scores: FloatArray, content: FloatArray, n: int, settings: RuleSettings
) -> IntArray:
    """The top N by greedy MMR over the best ``mmr_pool_size``, then the rest in order.

    MMR picks ``argmax λ·rel - (1 - λ)·max cosine(item, picked)``, with relevance the
    score over the pool's best score so it is on the cosine's scale.
    """
    pool_size = max(n, min(settings.mmr_pool_size, len(order)))
    pool = order[:pool_size]
    relevance = scores[pool].astype(np.float64)
    relevance /= max(float(relevance.max(initial=0.0)), 1e-12)
    vectors = content[pool].astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors @ vectors.T
    lam = settings.mmr_lambda
    # Cosine >= -1, so starting at -1 adds the same constant to all and is exact.
    max_similarity = np.full(pool_size, -1.0)
    picked = np.zeros(pool_size, dtype=np.bool_)
    chosen = np.empty(n, dtype=np.int64)
    for slot in range(n):
        value = lam * relevance - (1.0 - lam) * max_similarity
        value[picked] = -np.inf
        best = int(np.argmax(value))
        chosen[slot] = best
        picked[best] = True
        np.maximum(max_similarity, similarity[best], out=max_similarity)
    return np.concatenate([pool[chosen], pool[~picked], order[pool_size:]])


def _occurrence_rank(keys: IntArray) -> IntArray:
    """For each position, how many earlier positions hold the same key."""
    count = keys.shape[0]
    by_key = np.argsort(keys, kind="stable")
    sorted_keys = keys[by_key]
    starts = np.ones(count, dtype=np.bool_)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    positions = np.arange(count, dtype=np.int64)
    group_start = np.maximum.accumulate(np.where(starts, positions, 0))
    rank = np.empty(count, dtype=np.int64)
    rank[by_key] = positions - group_start
    return rank


def _cap_creators(order: IntArray, batch: PostFeatureBatch, n: int, cap: int) -> IntArray:
    """The first N posts within their creator's cap, then everything else in order."""
    within_cap = _occurrence_rank(batch.creator_index[order]) < cap
    top = np.flatnonzero(within_cap)[:n]
    rest = np.ones(len(order), dtype=np.bool_)
    rest[top] = False
    return np.concatenate([order[top], order[rest]])


def _fairness_counts(n: int, settings: RuleSettings) -> tuple[int, int]:
    """(floor, cap) in slots of the top N; the cap wins where rounding makes them cross."""
    ceiling = math.floor(settings.small_creator_cap * n + 1e-9)
    floor = min(math.ceil(settings.small_creator_floor * n - 1e-9), ceiling)
    return floor, ceiling


def _promote(
    order: IntArray,
    wanted: BoolArray,
    *,
    batch: PostFeatureBatch,
    n: int,
    cap: int,
    minimum: int,
) -> IntArray:
    """Ensure at least ``minimum`` of the top N are ``wanted`` posts, where possible.

    The best wanted posts below the top N take the slots of the worst unwanted posts in
    the top N, which move to just below it. A post is only promoted when fewer than
    ``cap`` posts of its creator stand above it, so the creator cap still holds after.
    """
    is_wanted = wanted[order]
    missing = minimum - int(np.count_nonzero(is_wanted[:n]))
    if missing <= 0:
        return order
    within_cap = _occurrence_rank(batch.creator_index[order]) < cap
    promoted = np.flatnonzero(is_wanted[n:] & within_cap[n:])[:missing] + n
    if promoted.size == 0:
        return order
    demoted = np.flatnonzero(~is_wanted[:n])[-promoted.size :]
    stays = np.ones(n, dtype=np.bool_)
    stays[demoted] = False
    below = np.ones(len(order) - n, dtype=np.bool_)
    below[promoted - n] = False
    top = order[:n]
    return np.concatenate([top[stays], order[promoted], top[demoted], order[n:][below]])
