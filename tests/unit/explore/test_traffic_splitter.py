"""The traffic splitter: sticky, follows the weights, and moves only the users it must."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feedrank.explore.traffic_splitter import TrafficSplitter, user_position

USERS = [f"u{index}" for index in range(100_000)]


def arms(splitter: TrafficSplitter, users: list[str] = USERS) -> dict[str, str]:
    return {user: splitter.arm_of(user) for user in users}


def share(assignment: dict[str, str], arm: str) -> float:
    return sum(1 for value in assignment.values() if value == arm) / len(assignment)


def test_a_user_keeps_their_arm_across_requests_and_splitters() -> None:
    first = TrafficSplitter({"stable": 0.5, "canary": 0.5}, salt="s1")
    again = TrafficSplitter({"canary": 0.5, "stable": 0.5}, salt="s1")  # listed differently
    sample = USERS[:2_000]
    assert arms(first, sample) == arms(first, sample) == arms(again, sample)


def test_arms_are_the_same_in_another_process() -> None:
    """No per-process state (e.g. Python's randomised str hash) enters the assignment."""
    sample = USERS[:500]
    code = (
        "import sys\n"
        "from feedrank.explore.traffic_splitter import TrafficSplitter\n"
        "s = TrafficSplitter({'stable': 0.7, 'canary': 0.3}, salt='x')\n"
        "print(''.join(s.arm_of(f'u{i}')[0] for i in range(500)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    here = TrafficSplitter({"stable": 0.7, "canary": 0.3}, salt="x")
    assert output == "".join(here.arm_of(user)[0] for user in sample)


@pytest.mark.parametrize(
    "weights",
    [
        {"stable": 0.99, "canary": 0.01},
        {"stable": 0.95, "canary": 0.05},
        {"stable": 0.5, "canary": 0.5},
        {"stable": 3.0, "canary": 1.0},  # weights need not sum to 1
        {"a": 0.2, "b": 0.3, "c": 0.5},
    ],
)
def test_shares_follow_the_weights(weights: dict[str, float]) -> None:
    assignment = arms(TrafficSplitter(weights, salt="rollout-1"))
    total = sum(weights.values())
    for arm, weight in weights.items():
        expected = weight / total
        tolerance = 5 * (expected * (1 - expected) / len(USERS)) ** 0.5  # five sigma
        assert abs(share(assignment, arm) - expected) < tolerance, arm


def test_growing_the_canary_moves_only_stable_users_to_it() -> None:
    previous = arms(TrafficSplitter({"stable": 1.0, "canary": 0.0}, salt="r"))
    assert share(previous, "canary") == 0.0
    for step in (0.01, 0.05, 0.25, 0.5, 1.0):
        current = arms(TrafficSplitter({"stable": 1.0 - step, "canary": step}, salt="r"))
        moved = {user for user in USERS if previous[user] != current[user]}
        assert all(previous[user] == "stable" for user in moved)  # nobody left the canary
        assert all(current[user] == "canary" for user in moved)
        assert abs(len(moved) / len(USERS) - (step - share(previous, "canary"))) < 0.01
        previous = current
    assert share(previous, "stable") == 0.0


def test_shrinking_the_canary_returns_only_canary_users() -> None:
    wide = arms(TrafficSplitter({"stable": 0.75, "canary": 0.25}, salt="r"))
    narrow = arms(TrafficSplitter({"stable": 0.95, "canary": 0.05}, salt="r"))
    assert {u for u in USERS if narrow[u] == "canary"} <= {u for u in USERS if wide[u] == "canary"}


def test_a_new_salt_reshuffles_users() -> None:
    first = arms(TrafficSplitter({"stable": 0.5, "canary": 0.5}, salt="one"), USERS[:10_000])
    second = arms(TrafficSplitter({"stable": 0.5, "canary": 0.5}, salt="two"), USERS[:10_000])
    changed = sum(first[user] != second[user] for user in first) / len(first)
    assert 0.45 < changed < 0.55


def test_positions_are_in_the_unit_interval() -> None:
    positions = [user_position("s", user) for user in USERS[:10_000]]
    assert all(0.0 <= position < 1.0 for position in positions)
    assert abs(sum(positions) / len(positions) - 0.5) < 0.01


@pytest.mark.parametrize(
    "weights",
    [{}, {"stable": -0.1, "canary": 1.0}, {"stable": 0.0}, {"stable": float("nan")}, {"": 1.0}],
)
def test_invalid_weights_are_rejected(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"weight|arm"):
        TrafficSplitter(weights)


def test_the_holdout_is_laid_out_first_so_rollouts_never_move_its_users() -> None:
    holdout = 0.1

    def split(canary: float) -> dict[str, str]:
        rest = 1.0 - holdout
        weights = {"holdout": holdout, "stable": rest * (1 - canary), "canary": rest * canary}
        return arms(TrafficSplitter(weights, salt="r"))

    before = split(0.0)
    kept = {user for user in USERS if before[user] == "holdout"}
    assert abs(len(kept) / len(USERS) - holdout) < 0.01
    for canary in (0.1, 0.5, 1.0):  # "canary" sorts before "holdout" by name
        during = split(canary)
        assert {user for user in USERS if during[user] == "holdout"} == kept
