from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from feedrank.core.feature_schema import (
    CONTENT_DIM,
    NUM_TOPICS,
    FloatArray,
    IntArray,
    PostFeatureBatch,
    post_keys,
)
from feedrank.core.settings import RuleSettings, load_settings
from feedrank.explore.rules import (
    FILTER_NAMES,
    RuleOutcome,
    UserRuleContext,
    apply_rules,
)

NO_RULES = RuleSettings(
    filters=frozenset(), freshness=False, creator_cap=False, mmr=False, fairness=False
)
SMALL = math.log1p(100.0)  # creator_followers (log1p) of a small creator
BIG = math.log1p(1_000_000.0)


def make_batch(
    count: int,
    *,
    seed: int = 0,
    creators: IntArray | None = None,
    followers: FloatArray | None = None,
    content: FloatArray | None = None,
) -> PostFeatureBatch:
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.ones(NUM_TOPICS), size=count).astype(np.float32)
    return PostFeatureBatch(
        post_index=np.arange(1000, 1000 + count, dtype=np.int64),
        post_key=post_keys(f"post-{row}" for row in range(1000, 1000 + count)),
        language=np.zeros(count, dtype=np.int64),
        country=np.zeros(count, dtype=np.int64),
        region_locked=np.zeros(count, dtype=np.bool_),
        creator_index=np.arange(count, dtype=np.int64) if creators is None else creators,
        topics=topics,
        content=(
            rng.normal(size=(count, CONTENT_DIM)).astype(np.float32) if content is None else content
        ),
        age_hours=np.full(count, 10.0, dtype=np.float32),
        creator_followers=(
            np.full(count, BIG, dtype=np.float32) if followers is None else followers
        ),
        creator_engagement_rate=np.full(count, 0.05, dtype=np.float32),
        impressions=np.full(count, 5.0, dtype=np.float32),
        engagement_rate=np.full(count, 0.05, dtype=np.float32),
        sensitive=np.zeros(count, dtype=np.bool_),
        as_of_ms=1_764_000_000_000,
    )


def descending_scores(count: int) -> FloatArray:
    return np.linspace(0.9, 0.1, count).astype(np.float32)


def shown_posts(batch: PostFeatureBatch, outcome: RuleOutcome) -> set[int]:
    return {int(post) for post in batch.post_index[outcome.rows]}


FILTER_CASES: list[tuple[str, dict[str, object], UserRuleContext, set[int]]] = [
    (
        "blocked_creator",
        {"creator_index": np.array([7, 8, 7, 9, 10, 11], dtype=np.int64)},
        UserRuleContext(blocked_creators=frozenset({7, 42})),
        {1000, 1002},
    ),
    ("hidden", {}, UserRuleContext(hidden_posts=frozenset({1001, 5})), {1001}),
    ("reported", {}, UserRuleContext(reported_posts=frozenset({1003, 1004})), {1003, 1004}),
    ("seen", {}, UserRuleContext(seen_posts=frozenset({1005})), {1005}),
    (
        "sensitive",
        {"sensitive": np.array([False, True, False, False, True, False])},
        UserRuleContext(sensitive_filter=True),
        {1001, 1004},
    ),
    (
        "language",
        {"language": np.array([0, 1, 2, 0, 1, 3], dtype=np.int64)},
        UserRuleContext(languages=frozenset({0, 1})),
        {1002, 1005},
    ),
    (
        "region",
        {
            "region_locked": np.array([True, True, False, False, True, False]),
            "country": np.array([0, 1, 1, 2, 2, 0], dtype=np.int64),
        },
        UserRuleContext(country=2),
        {1000, 1001},
    ),
]


@pytest.mark.parametrize(
    ("name", "columns", "context", "removed"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_each_filter_removes_exactly_its_posts_and_counts_them(
    name: str, columns: dict[str, object], context: UserRuleContext, removed: set[int]
) -> None:
    batch = replace(make_batch(6), **columns)  # type: ignore[arg-type]
    settings = replace(NO_RULES, filters=frozenset(FILTER_NAMES))
    outcome = apply_rules(batch, descending_scores(6), context, settings)
    assert shown_posts(batch, outcome) == set(range(1000, 1006)) - removed
    assert outcome.dropped == {
        other: len(removed) if other == name else 0 for other in FILTER_NAMES
    }


def test_sensitive_and_language_filters_need_the_user_setting() -> None:
    batch = replace(make_batch(4), sensitive=np.array([True, True, False, False]))
    outcome = apply_rules(batch, descending_scores(4), UserRuleContext(), RuleSettings())
    assert len(outcome.rows) == 4
    assert sum(outcome.dropped.values()) == 0


def test_a_post_caught_by_several_filters_is_counted_once() -> None:
    batch = make_batch(5)
    context = UserRuleContext(hidden_posts=frozenset({1000, 1001}), seen_posts=frozenset({1001}))
    outcome = apply_rules(batch, descending_scores(5), context, RuleSettings())
    assert outcome.dropped["hidden"] == 2
    assert outcome.dropped["seen"] == 0
    assert len(outcome.rows) + sum(outcome.dropped.values()) == 5


def test_a_switched_off_filter_keeps_its_posts() -> None:
    batch = make_batch(5)
    context = UserRuleContext(hidden_posts=frozenset({1000}), seen_posts=frozenset({1001}))
    settings = replace(NO_RULES, filters=frozenset({"hidden"}))
    outcome = apply_rules(batch, descending_scores(5), context, settings)
    assert shown_posts(batch, outcome) == {1001, 1002, 1003, 1004}
    assert outcome.dropped == {"hidden": 1}


def test_freshness_boost_favours_newer_posts() -> None:
    ages = np.array([48.0, 0.0, 24.0], dtype=np.float32)
    batch = replace(make_batch(3), age_hours=ages)
    scores = np.array([0.52, 0.5, 0.5], dtype=np.float32)
    settings = replace(NO_RULES, freshness=True, freshness_weight=0.3)
    outcome = apply_rules(batch, scores, UserRuleContext(), settings)
    assert outcome.rows.tolist() == [1, 2, 0]
    expected = scores * (1 + 0.3 * 2.0 ** (-ages / 24.0))
    np.testing.assert_allclose(outcome.adjusted_scores, expected[outcome.rows], rtol=1e-6)
    assert outcome.reordered == {"freshness": 3}


def test_all_rules_off_is_a_plain_sort_by_score() -> None:
    batch = make_batch(50, seed=3)
    scores = np.random.default_rng(3).random(50).astype(np.float32)
    outcome = apply_rules(batch, scores, UserRuleContext(), NO_RULES)
    assert outcome.rows.tolist() == np.argsort(-scores, kind="stable").tolist()
    np.testing.assert_array_equal(outcome.adjusted_scores, scores[outcome.rows])
    assert outcome.dropped == {}
    assert outcome.reordered == {}


def test_creator_cap_holds_in_the_top_n_and_moves_the_rest_down() -> None:
    creators = np.random.default_rng(1).integers(0, 6, size=200).astype(np.int64)
    creators[:4] = 0  # the four best posts share a creator
    batch = make_batch(200, creators=creators)
    settings = replace(NO_RULES, creator_cap=True, max_per_creator=2, top_n=10)
    outcome = apply_rules(batch, descending_scores(200), UserRuleContext(), settings)
    top_creators = Counter(creators[outcome.rows[:10]].tolist())
    assert max(top_creators.values()) <= 2
    assert sorted(outcome.rows.tolist()) == list(range(200))  # nothing lost
    below = outcome.rows[10:]
    assert below.tolist() == sorted(below.tolist())  # the rest keep their order
    assert outcome.reordered["creator_cap"] > 0


def test_creator_cap_fills_the_top_n_when_one_creator_has_everything() -> None:
    batch = make_batch(8, creators=np.zeros(8, dtype=np.int64))
    settings = replace(NO_RULES, creator_cap=True, max_per_creator=2, top_n=5)
    outcome = apply_rules(batch, descending_scores(8), UserRuleContext(), settings)
    assert outcome.rows.tolist() == list(range(8))
    assert outcome.reordered == {"creator_cap": 0}


def fairness_batch(small_rows: list[int], count: int = 40) -> PostFeatureBatch:
    followers = np.full(count, BIG, dtype=np.float32)
    followers[small_rows] = SMALL
    return make_batch(count, followers=followers)


def test_fairness_floor_promotes_the_best_small_creators() -> None:
    batch = fairness_batch([25, 30, 35])
    settings = replace(NO_RULES, fairness=True, top_n=10, small_creator_floor=0.2)
    outcome = apply_rules(batch, descending_scores(40), UserRuleContext(), settings)
    top = outcome.rows[:10].tolist()
    assert top == [0, 1, 2, 3, 4, 5, 6, 7, 25, 30]
    assert outcome.rows[10:12].tolist() == [8, 9]  # demoted just below the top N
    assert sorted(outcome.rows.tolist()) == list(range(40))
    assert outcome.reordered == {"fairness_floor": 2, "fairness_cap": 0}


def test_fairness_floor_uses_what_exists() -> None:
    batch = fairness_batch([33])
    settings = replace(NO_RULES, fairness=True, top_n=10, small_creator_floor=0.3)
    outcome = apply_rules(batch, descending_scores(40), UserRuleContext(), settings)
    assert 33 in outcome.rows[:10].tolist()
    assert outcome.reordered["fairness_floor"] == 1


def test_fairness_cap_holds() -> None:
    batch = fairness_batch(list(range(8)))
    settings = replace(NO_RULES, fairness=True, top_n=10, small_creator_cap=0.3)
    outcome = apply_rules(batch, descending_scores(40), UserRuleContext(), settings)
    top = outcome.rows[:10]
    assert int(np.count_nonzero(top < 8)) == 3
    assert top.tolist() == [0, 1, 2, 8, 9, 10, 11, 12, 13, 14]
    assert outcome.reordered["fairness_cap"] > 0


def test_fairness_floor_respects_the_creator_cap() -> None:
    creators = np.arange(40, dtype=np.int64)
    creators[[20, 21, 22]] = 99  # one small creator with three posts
    followers = np.full(40, BIG, dtype=np.float32)
    followers[[20, 21, 22]] = SMALL
    batch = make_batch(40, creators=creators, followers=followers)
    settings = replace(NO_RULES, fairness=True, creator_cap=True, max_per_creator=2, top_n=10)
    settings = replace(settings, small_creator_floor=0.3)
    outcome = apply_rules(batch, descending_scores(40), UserRuleContext(), settings)
    top = outcome.rows[:10].tolist()
    assert {20, 21} <= set(top)
    assert 22 not in top


def test_mmr_spreads_similar_content() -> None:
    cluster = np.zeros((20, CONTENT_DIM), dtype=np.float32)
    cluster[:10, 0] = 1.0  # the ten best posts look alike
    cluster[10:, 1] = 1.0
    batch = make_batch(20, content=cluster)
    settings = replace(NO_RULES, mmr=True, mmr_lambda=0.5, top_n=4)
    outcome = apply_rules(batch, descending_scores(20), UserRuleContext(), settings)
    assert outcome.rows[0] == 0
    assert int(np.count_nonzero(outcome.rows[:4] >= 10)) >= 1
    assert sorted(outcome.rows.tolist()) == list(range(20))
    assert outcome.reordered["mmr"] > 0


def test_every_candidate_is_kept_or_counted_with_all_rules_on() -> None:
    rng = np.random.default_rng(7)
    creators = rng.integers(0, 50, size=1000).astype(np.int64)
    followers = rng.uniform(2.0, 12.0, size=1000).astype(np.float32)
    batch = make_batch(1000, creators=creators, followers=followers)
    context = UserRuleContext(
        blocked_creators=frozenset({1, 2}), seen_posts=frozenset(range(1000, 1100))
    )
    settings = replace(RuleSettings(), mmr=True)
    outcome = apply_rules(batch, rng.random(1000).astype(np.float32), context, settings)
    assert len(set(outcome.rows.tolist())) == len(outcome.rows)
    assert len(outcome.rows) + sum(outcome.dropped.values()) == 1000
    assert max(Counter(creators[outcome.rows[:50]].tolist()).values()) <= 2


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown filters"):
        RuleSettings(filters=frozenset({"nope"}))
    with pytest.raises(ValueError, match="small_creator_floor"):
        RuleSettings(small_creator_floor=0.6, small_creator_cap=0.5)
    with pytest.raises(ValueError, match="shape"):
        apply_rules(make_batch(3), descending_scores(4), UserRuleContext(), RuleSettings())


def test_the_configured_rules_default_to_the_rules_defaults() -> None:
    assert load_settings().explore.rules == RuleSettings()


def test_rules_come_from_the_explore_rules_table(tmp_path: Path) -> None:
    config = tmp_path / "feedrank.toml"
    config.write_text(
        "[explore.rules]\n"
        'filters = ["seen", "blocked_creator"]\n'
        "freshness_weight = 0.5\n"
        "fairness = false\n"
    )

    rules = load_settings(config).explore.rules

    assert rules.filters == {"seen", "blocked_creator"}
    assert (rules.freshness_weight, rules.fairness, rules.creator_cap) == (0.5, False, True)


@pytest.mark.parametrize(
    "line",
    [
        'filters = ["seen", "spam"]',
        "freshness_weight = -1",
        "small_creator_floor = 1.5",
        "small_creator_floor = 0.6",  # above the cap, 0.5
        "spam = 1",
    ],
)
def test_bad_rule_settings_are_refused_with_the_field(tmp_path: Path, line: str) -> None:
    config = tmp_path / "feedrank.toml"
    config.write_text(f"[explore.rules]\n{line}\n")

    with pytest.raises(ValidationError, match=line.split(" ", maxsplit=1)[0]):
        load_settings(config)
