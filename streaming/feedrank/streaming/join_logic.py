"""What the decision ⋈ reward join does for one decision, free of Flink.

The Flink operator (``join_operator``) keys both streams by ``decision_id`` and calls
these functions with the decision's state; tests call them directly.

Reward semantics (in the spirit of Decision Service's reward functions):

* **Engaged** = a ``like``, ``comment``, ``share`` or ``save`` within the reward
  window. ``view`` and ``dwell`` are recorded in the breakdown but do not make an
  example positive; ``hide``, ``report`` and ``block`` are safeguard signals.
* Each shown item yields **exactly one** labelled example: **positive** (reward 1) as
  soon as its first engagement arrives, carrying the breakdown of every reward for
  that item seen until then (several rewards combine by counting per type and summing
  dwell seconds); or **negative** (reward 0) when the window closes without one,
  carrying everything seen in the window (views, dwell, safeguards).
* A reward up to ``max_skew_ms`` *before* its decision still joins (clock skew).
* A reward after the window closed is **late**; one whose decision never arrives
  within ``dangling_wait_ms``, or that names a post the decision did not show, is
  **dangling**. Both are routed to the dead-letter topic and counted, never labelled.
* Rewards after an item's label was decided are still counted in the 5-minute
  aggregates (as attributed rewards), but never change the example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from feedrank.core import codecs
from feedrank.core.arms import position_segment
from feedrank.streaming.example_wire import DecisionExamples, label_bytes
from feedrank.streaming.label_state import LabelState, LogPosition, post_hashes
from feedrank.v1 import events_pb2

ENGAGEMENT_TYPES = frozenset({"like", "comment", "share", "save"})
BREAKDOWN_FIELDS = {
    "view": "views",
    "like": "likes",
    "comment": "comments",
    "share": "shares",
    "save": "saves",
    "hide": "hides",
    "report": "reports",
    "block": "blocks",
}

OutputKind = Literal[
    "example", "examples", "late", "dangling", "malformed", "impressions", "reward"
]


@dataclass(frozen=True)
class JoinConfig:
    reward_window_ms: int
    max_skew_ms: int = 60_000
    # How long a reward waits for its decision before it is dangling.
    dangling_wait_ms: int = 300_000
    # How long a closed decision is remembered, to tell late rewards from dangling ones.
    tombstone_ms: int = 86_400_000
    # A reward this soon after its impression is prompt (see JoinOutput.prompt); the
    # deploy service's settle time.
    prompt_horizon_ms: int = 900_000
    # The deploy salt: impressions and rewards carry their user's position segment under
    # it, for the canary analysis's pre-period (segment aggregates); None: no segments.
    segment_salt: str | None = None

    def segment_of(self, user_id: str) -> int:
        """``user_id``'s position segment under ``segment_salt`` (-1 without one)."""
        return -1 if self.segment_salt is None else position_segment(self.segment_salt, user_id)


@dataclass(frozen=True)
class RewardRecord:
    decision_id: str
    post_id: str
    user_id: str
    reward_type: str
    value: float
    ts_ms: int


@dataclass(frozen=True)
class JoinOutput:
    """One record out of the join; ``payload`` is a serialised protobuf event."""

    kind: OutputKind
    key: bytes
    payload: bytes
    model_version: str
    arm: str
    event_time_ms: int
    impressions: int = 0
    engagements: int = 0
    dwell_seconds: float = 0.0
    reports: int = 0
    blocks: int = 0
    hides: int = 0
    # 1 for a joined reward within JoinConfig.prompt_horizon_ms of its impression.
    # Counted in event time, an arm's rewards also come from impressions made long
    # before (heavy-tailed delays); prompt ones after a split change come from that
    # split only, so the canary analysis compares prompt counts.
    prompt: int = 0
    detail: str = ""  # why, for late, dangling and malformed records
    post_id: str = ""  # examples and attributed rewards
    # Impressions and attributed rewards: the user's position segment under
    # JoinConfig.segment_salt (feedrank.core.arms.position_segment); -1 without a salt.
    segment: int = -1
    # "examples": the payloads of several examples of one decision, in one record
    # (join_operator.output_rows); the sink writes one Kafka record per payload.
    payloads: tuple[bytes, ...] = ()


DecisionFetch = Callable[[LabelState], DecisionExamples]
"""The decision of a label state, ready to write examples: re-read from the decision log
by its position (``decision_log.DecisionLog``), or from the bytes a state carries."""


class DecisionUnavailable(Exception):
    """The decision of a pending state can no longer be read (e.g. the decisions topic's
    retention is shorter than the reward window): its examples cannot be written."""


def inline_decision(state: LabelState) -> DecisionExamples:
    """A :data:`DecisionFetch` for states that carry their decision's bytes."""
    if state.inline is None:
        raise DecisionUnavailable("the state holds no decision bytes and no log to read")
    return DecisionExamples.from_decision_bytes(state.inline)


@dataclass(frozen=True)
class Timers:
    """Event-time timers the operator must register after a call."""

    at_ms: tuple[int, ...] = ()


def on_decision(
    state: LabelState,
    decision: events_pb2.Decision,
    config: JoinConfig,
    *,
    position: LogPosition | None = None,
    payload: bytes | None = None,
) -> tuple[list[JoinOutput], Timers]:
    """A decision arrives: keep its labels' state, replay early rewards, schedule the
    window close.

    ``position`` is where the decision is on the decisions topic: the state keeps it
    and the examples re-read the decision from there. Without one (tests, a decision
    read from elsewhere) the state keeps the decision's bytes, ``payload`` or encoded.
    """
    if state.has_decision:  # a duplicate delivery of the same decision
        return [], Timers()
    state.has_decision = True
    state.decision_time_ms = decision.event_time_ms
    state.user_id, state.model_version, state.arm = (
        decision.user_id,
        decision.model_version,
        decision.arm,
    )
    state.hash_width, state.hashes = post_hashes([item.post_id for item in decision.items])
    state.position = position
    payload = codecs.encode(decision) if payload is None else payload
    if position is None:
        state.inline = payload
    outputs = [
        JoinOutput(
            "impressions",
            decision.user_id.encode(),
            b"",
            decision.model_version,
            decision.arm,
            decision.event_time_ms,
            impressions=len(decision.items),
            segment=config.segment_of(decision.user_id),
        )
    ]
    early, state.early = state.early, []
    if early:
        examples = DecisionExamples.from_decision_bytes(payload)
        for reward in early:
            outputs += _apply_reward(state, lambda _: examples, _record(reward), config)
    close_at = decision.event_time_ms + config.reward_window_ms
    return outputs, Timers((close_at,))


def on_reward(
    state: LabelState, reward: RewardRecord, config: JoinConfig, fetch: DecisionFetch
) -> tuple[list[JoinOutput], Timers]:
    """A reward arrives: join it, hold it for its decision, or route it as late."""
    if not state.has_decision:
        state.early.append(_reward_proto(reward))
        return [], Timers((reward.ts_ms + config.dangling_wait_ms,))
    return _apply_reward(state, fetch, reward, config), Timers()


def on_timer(
    state: LabelState, timestamp_ms: int, config: JoinConfig, fetch: DecisionFetch
) -> tuple[list[JoinOutput], bool, Timers]:
    """Fire due work; returns the outputs, whether the state can be cleared and the
    timers to register (the tombstone's end, once the window closed)."""
    if not state.has_decision:
        due = [r for r in state.early if r.ts_ms + config.dangling_wait_ms <= timestamp_ms]
        state.early = [r for r in state.early if r.ts_ms + config.dangling_wait_ms > timestamp_ms]
        outputs = [_dead_letter("dangling", _record(r), "no decision arrived") for r in due]
        return outputs, not state.early, Timers()
    close_at = state.decision_time_ms + config.reward_window_ms
    if not state.closed and timestamp_ms >= close_at:
        outputs = _negatives(state, fetch, close_at)
        state.close()
        return outputs, False, Timers((close_at + config.tombstone_ms,))
    return [], state.closed and timestamp_ms >= close_at + config.tombstone_ms, Timers()


def _apply_reward(
    state: LabelState, fetch: DecisionFetch, reward: RewardRecord, config: JoinConfig
) -> list[JoinOutput]:
    window_end = state.decision_time_ms + config.reward_window_ms
    if state.closed or reward.ts_ms > window_end:
        return [_dead_letter("late", reward, f"after the reward window closed at {window_end}")]
    if reward.ts_ms < state.decision_time_ms - config.max_skew_ms:
        return [_dead_letter("dangling", reward, "too long before its decision")]
    index = state.item_index(reward.post_id)
    if index is None:
        return [_dead_letter("dangling", reward, "the decision did not show this post")]
    breakdown = state.breakdowns.setdefault(index, {})
    _add(breakdown, reward)
    prompt = reward.ts_ms - state.decision_time_ms <= config.prompt_horizon_ms
    outputs = [_attributed(state, reward, prompt=prompt, segment=config.segment_of(state.user_id))]
    if reward.reward_type in ENGAGEMENT_TYPES and not state.labelled >> index & 1:
        state.labelled |= 1 << index
        label_ms = max(reward.ts_ms, 0)
        try:
            examples = fetch(state)
        except DecisionUnavailable as gone:
            return [*outputs, _unavailable(state, str(gone), label_ms)]
        post_id = examples.shown[index]
        payload = examples.example(post_id, label_time_ms=label_ms, reward=1.0, breakdown=breakdown)
        outputs.append(_example(state, post_id, payload, label_ms))
    return outputs


def _negatives(state: LabelState, fetch: DecisionFetch, close_at: int) -> list[JoinOutput]:
    """The window closes: one "examples" output with a negative for every item no
    engagement labelled (one per post: a repeated post's first showing)."""
    firsts = state.first_showings()
    unlabelled = [index for index, first in enumerate(firsts) if not state.labelled >> first & 1]
    if not unlabelled:
        return []
    try:
        examples = fetch(state)
    except DecisionUnavailable as gone:
        return [_unavailable(state, str(gone), close_at)]
    quiet = label_bytes(close_at, 0.0, {})  # the label of every item nothing happened to
    breakdowns, shown, labelled = state.breakdowns, examples.shown, examples.labelled
    payloads = []
    for index in unlabelled:
        breakdown = breakdowns.get(firsts[index])
        label = label_bytes(close_at, 0.0, breakdown) if breakdown else quiet
        payloads.append(labelled(shown[index], label))
    return [
        JoinOutput(
            "examples",
            state.user_id.encode(),
            b"",
            state.model_version,
            state.arm,
            close_at,
            payloads=tuple(payloads),
        )
    ]


def _add(breakdown: dict[str, float], reward: RewardRecord) -> None:
    if reward.reward_type == "dwell":
        breakdown["dwell_seconds"] = breakdown.get("dwell_seconds", 0.0) + reward.value
    else:
        name = BREAKDOWN_FIELDS[reward.reward_type]
        breakdown[name] = breakdown.get(name, 0.0) + 1


def _example(state: LabelState, post_id: str, payload: bytes, label_ms: int) -> JoinOutput:
    """The item's labelled example, its ``payload`` spliced from the decision's bytes
    (example_wire): it parses to what :func:`feedrank.core.labelled.labelled_example`
    builds."""
    return JoinOutput(
        "example",
        state.user_id.encode(),
        payload,
        state.model_version,
        state.arm,
        label_ms,
        post_id=post_id,
    )


def _unavailable(state: LabelState, why: str, at_ms: int) -> JoinOutput:
    """A dead letter for examples that could not be written: their decision is gone."""
    position = state.position
    where = f" at partition {position.partition} offset {position.offset}" if position else ""
    error = f"decision{where} unavailable, its examples are lost: {why}"
    letter = events_pb2.DeadLetter(error=error, failed_at_ms=at_ms, stage="join")
    return JoinOutput(
        "malformed",
        state.user_id.encode(),
        codecs.encode(letter),
        state.model_version,
        state.arm,
        at_ms,
        detail=error,
    )


def _attributed(
    state: LabelState, reward: RewardRecord, *, prompt: bool, segment: int
) -> JoinOutput:
    """A joined reward, for the 5-minute aggregates of its model version and arm;
    ``prompt``: it came within the prompt horizon of its impression."""
    kind = reward.reward_type
    return JoinOutput(
        "reward",
        state.user_id.encode(),
        b"",
        state.model_version,
        state.arm,
        reward.ts_ms,
        engagements=int(kind in ENGAGEMENT_TYPES),
        dwell_seconds=reward.value if kind == "dwell" else 0.0,
        reports=int(kind == "report"),
        blocks=int(kind == "block"),
        hides=int(kind == "hide"),
        prompt=int(prompt),
        post_id=reward.post_id,
        segment=segment,
    )


def _dead_letter(kind: Literal["late", "dangling"], reward: RewardRecord, why: str) -> JoinOutput:
    letter = events_pb2.DeadLetter(
        source_topic="",
        key=reward.user_id.encode(),
        value=codecs.encode_reward_json(_reward_proto(reward)),
        error=f"{kind} reward: {why}",
        failed_at_ms=reward.ts_ms,
        stage="join",
    )
    return JoinOutput(
        kind,
        reward.user_id.encode(),
        codecs.encode(letter),
        "",
        "",
        reward.ts_ms,
        detail=letter.error,
    )


def _record(reward: events_pb2.Reward) -> RewardRecord:
    return RewardRecord(
        decision_id=reward.decision_id,
        post_id=reward.post_id,
        user_id=reward.user_id,
        reward_type=codecs.REWARD_TYPE_NAMES[reward.type],
        value=reward.value,
        ts_ms=reward.ts_ms,
    )


def _reward_proto(reward: RewardRecord) -> events_pb2.Reward:
    return events_pb2.Reward(
        decision_id=reward.decision_id,
        post_id=reward.post_id,
        user_id=reward.user_id,
        type=codecs.REWARD_TYPES[reward.reward_type],
        value=reward.value,
        ts_ms=reward.ts_ms,
    )
