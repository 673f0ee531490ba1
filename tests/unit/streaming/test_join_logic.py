from __future__ import annotations

import dataclasses

from feedrank.core import codecs
from feedrank.core.arms import position_segment
from feedrank.streaming.join_logic import (
    JoinConfig,
    JoinOutput,
    RewardRecord,
    inline_decision,
    on_decision,
    on_reward,
    on_timer,
)
from feedrank.streaming.label_state import LabelState
from feedrank.v1 import events_pb2

T0 = 1_764_000_000_000
CONFIG = JoinConfig(
    reward_window_ms=10_000,
    max_skew_ms=1_000,
    dangling_wait_ms=5_000,
    tombstone_ms=20_000,
    prompt_horizon_ms=2_000,
)


def decision(items: int = 3) -> events_pb2.Decision:
    return events_pb2.Decision(
        decision_id="d1",
        user_id="u1",
        event_time_ms=T0,
        model_version="v1",
        arm="stable",
        items=[
            events_pb2.ShownItem(post_id=f"p{i}", position=i, score=0.5, propensity=0.9)
            for i in range(items)
        ],
    )


def reward(post: str, kind: str, ts: int, value: float = 1.0) -> RewardRecord:
    return RewardRecord("d1", post, "u1", kind, value, ts)


def examples(outputs: list[JoinOutput]) -> list[events_pb2.LabelledExample]:
    """Every example in ``outputs``: a positive's own, a window close's batch."""
    payloads = [
        payload
        for output in outputs
        for payload in ((output.payload,) if output.kind == "example" else output.payloads)
    ]
    return [codecs.decode(events_pb2.LabelledExample, payload) for payload in payloads]


def test_engagement_inside_the_window_makes_one_positive_at_once() -> None:
    state = LabelState()
    outputs, timers = on_decision(state, decision(), CONFIG)
    assert [o.kind for o in outputs] == ["impressions"]
    assert outputs[0].impressions == 3
    assert timers.at_ms == (T0 + 10_000,)  # the close; the tombstone's timer comes then
    outputs, _ = on_reward(state, reward("p1", "like", T0 + 500), CONFIG, inline_decision)
    [positive] = examples(outputs)
    assert (positive.post_id, positive.reward, positive.engaged) == ("p1", 1.0, True)
    assert positive.label_time_ms == T0 + 500
    assert positive.position == 1
    # A second engagement for the same item never makes a second example.
    outputs, _ = on_reward(state, reward("p1", "share", T0 + 700), CONFIG, inline_decision)
    assert examples(outputs) == []


def test_rewards_within_the_prompt_horizon_are_marked_prompt() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    rewards = {
        "early like": reward("p0", "like", T0 + 2_000),  # at the horizon: prompt
        "late like": reward("p1", "like", T0 + 2_001),
        "early report": reward("p2", "report", T0 + 100),
    }
    attributed = {
        name: next(
            o for o in on_reward(state, record, CONFIG, inline_decision)[0] if o.kind == "reward"
        )
        for name, record in rewards.items()
    }
    assert [attributed[name].engagements for name in rewards] == [1, 1, 0]
    assert [attributed[name].reports for name in rewards] == [0, 0, 1]
    assert [attributed[name].prompt for name in rewards] == [1, 0, 1]


def test_impressions_and_rewards_carry_the_users_segment_under_the_salt() -> None:
    segmented = dataclasses.replace(CONFIG, segment_salt="feedrank-arms-1")
    state = LabelState()
    [impressions], _ = on_decision(state, decision(), segmented)
    outputs, _ = on_reward(state, reward("p1", "like", T0 + 500), segmented, inline_decision)
    [attributed] = [output for output in outputs if output.kind == "reward"]
    expected = position_segment("feedrank-arms-1", "u1")
    assert impressions.segment == attributed.segment == expected
    # Without a salt, no segment: the segment aggregates skip -1.
    [unsegmented], _ = on_decision(LabelState(), decision(), CONFIG)
    assert unsegmented.segment == -1


def test_window_close_makes_negatives_for_the_rest() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    on_reward(state, reward("p0", "comment", T0 + 100), CONFIG, inline_decision)
    on_reward(state, reward("p2", "report", T0 + 200), CONFIG, inline_decision)
    outputs, clear, timers = on_timer(state, T0 + 10_000, CONFIG, inline_decision)
    assert timers.at_ms == (T0 + 30_000,)
    negatives = examples(outputs)
    assert sorted(n.post_id for n in negatives) == ["p1", "p2"]
    assert all(n.reward == 0.0 and not n.engaged for n in negatives)
    assert next(n for n in negatives if n.post_id == "p2").breakdown.reports == 1
    assert not clear
    assert on_timer(state, T0 + 30_000, CONFIG, inline_decision)[1]


def test_two_rewards_combine_in_one_example() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    on_reward(state, reward("p0", "view", T0 + 10), CONFIG, inline_decision)
    on_reward(state, reward("p0", "dwell", T0 + 20, value=12.5), CONFIG, inline_decision)
    outputs, _ = on_reward(state, reward("p0", "like", T0 + 30), CONFIG, inline_decision)
    [positive] = examples(outputs)
    assert (positive.breakdown.views, positive.breakdown.likes) == (1, 1)
    assert positive.breakdown.dwell_seconds == 12.5


def test_reward_after_the_window_is_late_and_never_labelled() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    on_timer(state, T0 + 10_000, CONFIG, inline_decision)
    outputs, _ = on_reward(state, reward("p0", "like", T0 + 10_500), CONFIG, inline_decision)
    assert [o.kind for o in outputs] == ["late"]
    letter = codecs.decode(events_pb2.DeadLetter, outputs[0].payload)
    assert "late reward" in letter.error
    assert codecs.decode_reward(letter.value).post_id == "p0"


def test_reward_slightly_before_its_decision_still_joins() -> None:
    state = LabelState()
    outputs, timers = on_reward(state, reward("p2", "save", T0 - 500), CONFIG, inline_decision)
    assert outputs == []
    assert timers.at_ms == (T0 - 500 + 5_000,)
    outputs, _ = on_decision(state, decision(), CONFIG)
    [positive] = examples(outputs)
    assert positive.post_id == "p2"


def test_reward_for_an_unknown_decision_is_dangling() -> None:
    state = LabelState()
    on_reward(state, reward("p0", "like", T0), CONFIG, inline_decision)
    outputs, clear, _ = on_timer(state, T0 + 5_000, CONFIG, inline_decision)
    assert [o.kind for o in outputs] == ["dangling"]
    assert clear


def test_reward_for_a_post_the_decision_did_not_show_is_dangling() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    outputs, _ = on_reward(state, reward("p99", "like", T0 + 1), CONFIG, inline_decision)
    assert [o.kind for o in outputs] == ["dangling"]


def test_state_survives_a_bytes_round_trip() -> None:
    state = LabelState()
    on_decision(state, decision(), CONFIG)
    on_reward(state, reward("p0", "like", T0 + 1), CONFIG, inline_decision)
    on_reward(state, reward("p1", "dwell", T0 + 1, value=3.5), CONFIG, inline_decision)
    restored = LabelState.from_bytes(state.to_bytes())
    assert restored == state
    outputs, _ = on_reward(restored, reward("p0", "like", T0 + 2), CONFIG, inline_decision)
    assert examples(outputs) == []


def test_every_output_row_has_a_value_per_declared_field() -> None:
    """A Row shorter than OUTPUT_ROW crashed PyFlink's Python worker (SIGSEGV)."""
    from feedrank.streaming.join_logic import JoinOutput  # noqa: PLC0415
    from feedrank.streaming.join_operator import OUTPUT_FIELDS, output_row  # noqa: PLC0415

    row = output_row(JoinOutput("examples", b"u", b"", "v1", "a", 1, payloads=(b"x", b"y")))
    assert len(row) == len(OUTPUT_FIELDS)
    assert row[len(OUTPUT_FIELDS) - 1] == [b"x", b"y"]


def test_a_calls_examples_leave_the_operator_as_one_row() -> None:
    from feedrank.streaming.join_operator import OUTPUT_NAMES, output_rows  # noqa: PLC0415

    state = LabelState()
    on_decision(state, decision(items=4), CONFIG)
    on_reward(state, reward("p1", "like", T0 + 1), CONFIG, inline_decision)
    outputs, _, _ = on_timer(state, T0 + 10_000, CONFIG, inline_decision)
    rows = list(output_rows(outputs))
    [batch] = rows
    assert batch[OUTPUT_NAMES.index("kind")] == "examples"
    [close] = outputs  # the window close labels its negatives in one output already
    assert close.kind == "examples"
    assert batch[OUTPUT_NAMES.index("payloads")] == list(close.payloads)
    assert sorted(e.post_id for e in examples(outputs)) == ["p0", "p2", "p3"]


def test_positives_and_a_close_in_one_call_leave_as_one_row() -> None:
    from feedrank.streaming.join_operator import OUTPUT_NAMES, output_rows  # noqa: PLC0415

    state = LabelState()
    on_decision(state, decision(items=3), CONFIG)
    positive, _ = on_reward(state, reward("p1", "like", T0 + 1), CONFIG, inline_decision)
    close, _, _ = on_timer(state, T0 + 10_000, CONFIG, inline_decision)
    rows = list(output_rows(positive + close))
    assert [row[OUTPUT_NAMES.index("kind")] for row in rows] == ["reward", "examples"]
    payloads = rows[-1][OUTPUT_NAMES.index("payloads")]
    posts = [codecs.decode(events_pb2.LabelledExample, payload).post_id for payload in payloads]
    assert posts == ["p1", "p0", "p2"]


def test_a_repeated_post_is_labelled_once_for_all_its_showings() -> None:
    repeated = decision(items=3)
    repeated.items.add(post_id="p1", position=3, score=0.1, propensity=0.5)
    state = LabelState()
    on_decision(state, repeated, CONFIG)
    assert state.first_showings() == [0, 1, 2, 1]
    on_reward(state, reward("p1", "view", T0 + 5), CONFIG, inline_decision)
    outputs, _, _ = on_timer(state, T0 + 10_000, CONFIG, inline_decision)
    negatives = examples(outputs)
    # Both showings of p1 are labelled as its first, with the view both carry.
    assert [n.post_id for n in negatives] == ["p0", "p1", "p2", "p1"]
    assert [n.position for n in negatives] == [0, 1, 2, 1]
    assert [n.breakdown.views for n in negatives] == [0, 1, 0, 1]
