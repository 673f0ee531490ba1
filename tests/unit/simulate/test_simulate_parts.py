"""Pending rewards, the engagement ledger and the baselines, without a server."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from feedrank.core.time_units import HOUR_MS
from feedrank.simulate.baselines import (
    SeenPosts,
    expected_rate,
    fresh_posts,
    oracle_feed,
    random_feed,
)
from feedrank.simulate.engagement import ORACLE_ARM, REPEATING_ORACLE_ARM, EngagementLedger
from feedrank.simulate.pending_rewards import PendingRewards
from feedrank.simulate.report import (
    CSV_COLUMNS,
    holdout_summary,
    pooled_paired_ratios,
    totals_table,
    write_csv,
    write_plot,
)
from feedrank.simulate.world import BehaviourModel, WorldConfig, generate_world
from feedrank.v1 import events_pb2

START_MS = 1_764_000_000_000


def reward(
    ts_ms: int,
    kind: events_pb2.RewardType.ValueType = events_pb2.REWARD_TYPE_LIKE,
    post: str = "p1",
) -> events_pb2.Reward:
    return events_pb2.Reward(decision_id="d", post_id=post, user_id="u1", type=kind, ts_ms=ts_ms)


def test_pending_rewards_come_out_when_due_in_time_order() -> None:
    pending = PendingRewards()
    pending.push([reward(30), reward(10), reward(20), reward(10, post="p2")])

    assert pending.pop_due(5) == []
    due = pending.pop_due(20)
    assert [(r.ts_ms, r.post_id) for r in due] == [(10, "p1"), (10, "p2"), (20, "p1")]
    assert len(pending) == 1


def test_ledger_counts_an_item_engaged_once_and_only_inside_the_window() -> None:
    ledger = EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=10 * HOUR_MS)
    rewards = [
        reward(START_MS + 1, post="p1"),
        reward(START_MS + 2, events_pb2.REWARD_TYPE_COMMENT, post="p1"),  # same item again
        reward(START_MS + 11 * HOUR_MS, post="p2"),  # after the window
        reward(START_MS + 3, events_pb2.REWARD_TYPE_VIEW, post="p3"),  # not an engagement
        reward(START_MS + 4, events_pb2.REWARD_TYPE_REPORT, post="p4"),
    ]
    ledger.record_feed("stable/v1", START_MS, 10, rewards)
    ledger.record_feed("stable/v1", START_MS + HOUR_MS, 10, [])

    totals = ledger.totals()["stable/v1"]
    assert (totals.impressions, totals.engagements, totals.safeguards) == (20, 1, 1)
    series = ledger.series()["stable/v1"]
    assert [start for start, _ in series] == [
        START_MS - START_MS % HOUR_MS,
        START_MS + HOUR_MS - START_MS % HOUR_MS,
    ]
    assert series[0][1].rate == 0.1


def test_the_oracle_beats_a_random_feed_on_average() -> None:
    world = generate_world(
        WorldConfig(num_users=200, num_creators=50, num_posts=3_000, seed=3, start_ms=START_MS)
    )
    behaviour = BehaviourModel(world, seed=1)
    eligible = fresh_posts(world, START_MS, max_age_days=30)
    created = np.asarray(world.posts.created_ms)[eligible]
    assert len(eligible) > 0
    assert created.max() <= START_MS

    rng = np.random.default_rng(0)
    users = range(0, 200, 10)
    oracle = [
        expected_rate(behaviour, u, oracle_feed(behaviour, u, eligible, 20, START_MS), START_MS)
        for u in users
    ]
    random = [expected_rate(behaviour, u, random_feed(eligible, 20, rng), START_MS) for u in users]
    assert np.mean(oracle) > 2 * np.mean(random)


def test_seen_posts_leave_the_eligible_posts_of_that_user_only() -> None:
    seen = SeenPosts()
    eligible = np.arange(10, dtype=np.int64)
    assert seen.unseen(7, eligible) is eligible  # nobody served yet

    seen.add(7, np.array([3, 8], dtype=np.int64))

    assert seen.unseen(7, eligible).tolist() == [0, 1, 2, 4, 5, 6, 7, 9]
    assert seen.unseen(8, eligible).tolist() == list(range(10))


def test_seen_posts_keep_the_latest_per_user_as_the_store_does() -> None:
    seen = SeenPosts(per_user=3)
    seen.add(1, np.array([0, 1, 2], dtype=np.int64))
    seen.add(1, np.array([0], dtype=np.int64))  # shown again: now the newest
    seen.add(1, np.array([5], dtype=np.int64))  # evicts 1, the oldest

    assert seen.unseen(1, np.arange(6, dtype=np.int64)).tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="per_user"):
        SeenPosts(per_user=0)


def test_the_oracle_of_a_returning_user_shows_the_next_best_unseen_posts() -> None:
    world = generate_world(
        WorldConfig(num_users=50, num_creators=20, num_posts=1_000, seed=3, start_ms=START_MS)
    )
    behaviour = BehaviourModel(world, seed=1)
    fresh = fresh_posts(world, START_MS, max_age_days=30)
    seen = SeenPosts()
    first = oracle_feed(behaviour, 4, seen.unseen(4, fresh), 20, START_MS)
    seen.add(4, first)

    second = oracle_feed(behaviour, 4, seen.unseen(4, fresh), 20, START_MS)

    assert not set(first.tolist()) & set(second.tolist())
    assert second.tolist() == oracle_feed(behaviour, 4, fresh, 40, START_MS)[20:].tolist()
    rate_first = expected_rate(behaviour, 4, first, START_MS)
    assert expected_rate(behaviour, 4, second, START_MS) <= rate_first


def likes(count: int, at_ms: int) -> list[events_pb2.Reward]:
    """``count`` posts of a feed liked at ``at_ms``."""
    return [
        events_pb2.Reward(post_id=f"p{post}", type=events_pb2.REWARD_TYPE_LIKE, ts_ms=at_ms)
        for post in range(count)
    ]


def test_versus_oracle_compares_each_arm_with_the_oracle_at_the_same_times() -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_feed(ORACLE_ARM, 0, 100, likes(20, 0))  # the oracle earns 0.20 early ...
    ledger.record_feed(ORACLE_ARM, 10, 40, likes(2, 10))  # ... and 0.05 once the world tires
    ledger.record_feed("early", 0, 100, likes(10, 0))  # half the oracle, early
    ledger.record_feed("late", 10, 100, likes(2, 10) + likes(1, 500))  # 2.5 % in the window
    ledger.record_feed("unmatched", 20, 100, likes(1, 20))  # no oracle in that bucket
    versus = ledger.versus_oracle()
    assert versus["early"] == pytest.approx(0.5)
    assert versus["late"] == pytest.approx(0.4)  # a whole-run ratio would say about 0.13
    assert "unmatched" not in versus
    assert versus[ORACLE_ARM] == pytest.approx(1.0)


def test_paired_versus_oracle_divides_expected_counts_of_the_same_feeds() -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_feed("stable/v1", 0, 20, likes(1, 0), expected=2.0)
    ledger.record_pair("stable/v1", 0, expected=2.0, oracle_expected=4.0)
    ledger.record_feed("stable/v1", 15, 20, [], expected=3.0)  # not beside the oracle
    ledger.record_pair("stable/v1", 25, expected=3.0, oracle_expected=4.0)
    ledger.record_feed("canary/v2", 0, 20, [], expected=1.0)  # never beside the oracle

    paired = ledger.paired_versus_oracle()
    assert paired == {"stable/v1": pytest.approx(5.0 / 8.0)}
    assert ledger.paired_versus_oracle(since_ms=20) == {"stable/v1": pytest.approx(0.75)}
    totals = ledger.totals()
    assert totals["stable/v1"].expected == 5.0
    assert totals["stable/v1"].engagements == 1
    series = dict(ledger.series()["stable/v1"])
    assert series[0].paired_ratio == pytest.approx(0.5)
    assert series[10].paired_ratio is None


def test_versus_holdout_compares_the_served_arms_with_the_holdout_on_the_same_days() -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_pair("stable/v0001", 0, expected=4.0, oracle_expected=5.0)  # no holdout yet
    ledger.record_pair("stable/v0002", 10, expected=3.0, oracle_expected=4.0)
    ledger.record_pair("canary/v0003", 10, expected=1.0, oracle_expected=2.0)
    ledger.record_pair("holdout/v0001", 10, expected=1.0, oracle_expected=2.0)
    ledger.record_pair(ORACLE_ARM, 10, expected=2.0, oracle_expected=2.0)  # baselines: out
    ledger.record_pair("stable/v0002", 20, expected=4.0, oracle_expected=5.0)
    ledger.record_pair("holdout/v0001", 20, expected=2.0, oracle_expected=5.0)
    ledger.record_feed("holdout/v0001", 20, 20, [], expected=2.0)

    whole = ledger.versus_holdout()
    assert whole is not None
    assert whole.served_versus_oracle == pytest.approx(8.0 / 11.0)  # bucket 0 left out
    assert whole.holdout_versus_oracle == pytest.approx(3.0 / 7.0)
    assert whole.ratio == pytest.approx((8.0 / 11.0) / (3.0 / 7.0))
    assert whole.holdout.impressions == 20
    later = ledger.versus_holdout(since_ms=20)
    assert later is not None
    assert later.ratio == pytest.approx(2.0)
    summary = holdout_summary(ledger)
    assert summary is not None  # its second half: buckets from 10 on (0 to 20)
    assert f"{whole.ratio:.3f}x over the run" in summary
    assert f"{whole.ratio:.3f}x over its second half" in summary


def test_pooled_ratios_sum_the_served_arms_or_the_holdout_over_a_rolling_window() -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_pair("stable/v0001", 0, expected=4.0, oracle_expected=5.0)
    ledger.record_pair("canary/v0002", 10, expected=1.0, oracle_expected=5.0)
    ledger.record_pair("stable/v0001", 10, expected=2.0, oracle_expected=5.0)
    ledger.record_pair(ORACLE_ARM, 10, expected=5.0, oracle_expected=5.0)  # left out
    ledger.record_pair("holdout/v0001", 10, expected=1.0, oracle_expected=4.0)
    ledger.record_pair("stable/v0001", 20, expected=3.0, oracle_expected=5.0)

    served = pooled_paired_ratios(ledger, holdout=False, window=2)
    assert [start for start, _ in served] == [0, 10, 20]
    assert [ratio for _, ratio in served] == pytest.approx(
        [0.8, 7.0 / 15.0, 6.0 / 15.0]  # bucket 10 rolls in 0, bucket 20 rolls in 10
    )
    holdout = pooled_paired_ratios(ledger, holdout=True, window=2)
    assert [start for start, _ in holdout] == [10]
    assert [ratio for _, ratio in holdout] == pytest.approx([0.25])


def test_no_holdout_comparison_without_a_holdout_arm() -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_pair("stable/v0001", 0, expected=4.0, oracle_expected=5.0)
    ledger.record_feed("holdout/v0001", 0, 20, [], expected=2.0)  # never paired
    assert ledger.versus_holdout() is None
    assert holdout_summary(ledger) is None


def test_the_oracle_expects_more_than_random_on_the_same_users() -> None:
    world = generate_world(
        WorldConfig(num_users=200, num_creators=50, num_posts=3_000, seed=3, start_ms=START_MS)
    )
    behaviour = BehaviourModel(world, seed=1)
    eligible = fresh_posts(world, START_MS, max_age_days=30)
    rng = np.random.default_rng(0)
    window_ms = 2 * 24 * HOUR_MS
    ledger = EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=window_ms)
    for user in range(0, 200, 10):
        feeds = {
            "random": random_feed(eligible, 20, rng),
            ORACLE_ARM: oracle_feed(behaviour, user, eligible, 20, START_MS),
        }
        expected = {
            arm: float(behaviour.expected_engaged_within(user, feed, START_MS, window_ms).sum())
            for arm, feed in feeds.items()
        }
        ledger.record_pair("random", START_MS, expected["random"], expected[ORACLE_ARM])
        ledger.record_pair(ORACLE_ARM, START_MS, expected[ORACLE_ARM], expected[ORACLE_ARM])
    paired = ledger.paired_versus_oracle()
    assert paired[ORACLE_ARM] == pytest.approx(1.0)
    assert 0.0 < paired["random"] < 0.5


def test_the_csv_carries_drawn_expected_and_paired_counts(tmp_path: Path) -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_feed("stable/v1", 0, 20, likes(2, 0), expected=2.5)
    ledger.record_pair("stable/v1", 0, expected=2.5, oracle_expected=5.0)
    ledger.record_feed("stable/v1", 10, 20, [], expected=1.0)
    path = tmp_path / "engagement.csv"
    write_csv(ledger, path)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["engagements"] == "2.00"
    assert rows[0]["expected_engagements"] == "2.500"
    assert rows[0]["paired_ratio"] == "0.5000"
    assert rows[1]["paired_ratio"] == ""  # no feed beside the oracle in that bucket


def test_a_paired_only_baseline_is_tabled_without_a_rate_and_left_out_of_the_rates_plot(
    tmp_path: Path,
) -> None:
    ledger = EngagementLedger(bucket_ms=10, reward_window_ms=100)
    ledger.record_feed("stable/v1", 0, 20, likes(2, 0), expected=2.0)
    ledger.record_pair("stable/v1", 0, expected=2.0, oracle_expected=2.5)
    ledger.record_pair(REPEATING_ORACLE_ARM, 0, expected=3.0, oracle_expected=2.5)

    console = Console(width=200, record=True)
    console.print(totals_table(ledger, "demo"))
    cells = {  # the first line of each arm's row: its name and its five numbers
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in console.export_text().splitlines()
        if "x │" in line
    }
    repeating = next(cell for name, cell in cells.items() if REPEATING_ORACLE_ARM.startswith(name))
    assert repeating == ["0", "-", "-", "1.20x", "0"]
    assert cells["stable/v1"][3] == "0.80x"
    write_plot(ledger, tmp_path / "engagement.png", "demo")
    assert (tmp_path / "engagement.png").stat().st_size > 1_000
