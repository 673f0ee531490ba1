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

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

from feedrank.core import codecs
from feedrank.streaming.example_wire import DecisionExamples
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

OutputKind = Literal["example", "late", "dangling", "malformed", "impressions", "reward"]


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


@dataclass
class DecisionState:
    """All the join keeps for one decision (JSON-serialisable, no pickle)."""

    decision: str | None = None  # base64 of the Decision protobuf
    decision_time_ms: int = 0
    breakdowns: dict[str, dict[str, float]] = field(default_factory=dict)
    labelled: list[str] = field(default_factory=list)
    early_rewards: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "decision_time_ms": self.decision_time_ms,
            "breakdowns": self.breakdowns,
            "labelled": self.labelled,
            "early_rewards": self.early_rewards,
            "closed": self.closed,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> DecisionState:
        return cls(**document)

    def decision_examples(self) -> DecisionExamples | None:
        """The decision's bytes, ready to label its items (no protobuf parse)."""
        if self.decision is None:
            return None
        return DecisionExamples.from_decision_bytes(base64.b64decode(self.decision))


@dataclass(frozen=True)
class Timers:
    """Event-time timers the operator must register after a call."""

    at_ms: tuple[int, ...] = ()


def on_decision(
    state: DecisionState,
    decision: events_pb2.Decision,
    config: JoinConfig,
    payload: bytes | None = None,
) -> tuple[list[JoinOutput], Timers]:
    """A decision arrives: remember it, replay early rewards, schedule the window close.

    ``payload`` is the decision's bytes as they came (kept as they are, not serialised
    again); without it the decision is encoded."""
    if state.decision is not None:  # a duplicate delivery of the same decision
        return [], Timers()
    payload = codecs.encode(decision) if payload is None else payload
    state.decision = base64.b64encode(payload).decode()
    state.decision_time_ms = decision.event_time_ms
    state.breakdowns = {item.post_id: {} for item in decision.items}
    outputs = [
        JoinOutput(
            "impressions",
            decision.user_id.encode(),
            b"",
            decision.model_version,
            decision.arm,
            decision.event_time_ms,
            impressions=len(decision.items),
        )
    ]
    early, state.early_rewards = state.early_rewards, []
    if early:
        examples = DecisionExamples.from_decision_bytes(payload)
        for document in early:
            outputs += _apply_reward(state, examples, RewardRecord(**document), config)
    close_at = decision.event_time_ms + config.reward_window_ms
    return outputs, Timers((close_at, close_at + config.tombstone_ms))


def on_reward(
    state: DecisionState, reward: RewardRecord, config: JoinConfig
) -> tuple[list[JoinOutput], Timers]:
    """A reward arrives: join it, hold it for its decision, or route it as late."""
    examples = state.decision_examples()
    if examples is None:
        state.early_rewards.append(reward.__dict__)
        return [], Timers((reward.ts_ms + config.dangling_wait_ms,))
    return _apply_reward(state, examples, reward, config), Timers()


def on_timer(
    state: DecisionState, timestamp_ms: int, config: JoinConfig
) -> tuple[list[JoinOutput], bool]:
    """Fire due work; returns the outputs and whether the state can be cleared."""
    if state.decision is None:
        due = [
            r for r in state.early_rewards if r["ts_ms"] + config.dangling_wait_ms <= timestamp_ms
        ]
        state.early_rewards = [r for r in state.early_rewards if r not in due]
        outputs = [_dead_letter("dangling", RewardRecord(**r), "no decision arrived") for r in due]
        return outputs, not state.early_rewards
    close_at = state.decision_time_ms + config.reward_window_ms
    if not state.closed and timestamp_ms >= close_at:
        state.closed = True
        examples = state.decision_examples()
        assert examples is not None
        return _negatives(state, examples, close_at), False
    return [], timestamp_ms >= close_at + config.tombstone_ms


def _apply_reward(
    state: DecisionState, examples: DecisionExamples, reward: RewardRecord, config: JoinConfig
) -> list[JoinOutput]:
    window_end = state.decision_time_ms + config.reward_window_ms
    if state.closed or reward.ts_ms > window_end:
        return [_dead_letter("late", reward, f"after the reward window closed at {window_end}")]
    if reward.ts_ms < state.decision_time_ms - config.max_skew_ms:
        return [_dead_letter("dangling", reward, "too long before its decision")]
    breakdown = state.breakdowns.get(reward.post_id)
    if breakdown is None:
        return [_dead_letter("dangling", reward, "the decision did not show this post")]
    _add(breakdown, reward)
    prompt = reward.ts_ms - state.decision_time_ms <= config.prompt_horizon_ms
    outputs = [_attributed(examples, reward, prompt=prompt)]
    if reward.reward_type in ENGAGEMENT_TYPES and reward.post_id not in state.labelled:
        state.labelled.append(reward.post_id)
        outputs.append(_example(examples, reward.post_id, breakdown, max(reward.ts_ms, 0), 1.0))
    return outputs


def _negatives(state: DecisionState, examples: DecisionExamples, close_at: int) -> list[JoinOutput]:
    return [
        _example(examples, post_id, state.breakdowns.get(post_id, {}), close_at, 0.0)
        for post_id in examples.shown
        if post_id not in state.labelled
    ]


def _add(breakdown: dict[str, float], reward: RewardRecord) -> None:
    if reward.reward_type == "dwell":
        breakdown["dwell_seconds"] = breakdown.get("dwell_seconds", 0.0) + reward.value
    else:
        name = BREAKDOWN_FIELDS[reward.reward_type]
        breakdown[name] = breakdown.get(name, 0.0) + 1


def _example(
    examples: DecisionExamples,
    post_id: str,
    breakdown: dict[str, float],
    label_ms: int,
    reward: float,
) -> JoinOutput:
    """The item's labelled example, spliced from the decision's bytes (example_wire);
    it parses to what :func:`feedrank.core.labelled.labelled_example` builds."""
    return JoinOutput(
        "example",
        examples.user_id.encode(),
        examples.example(post_id, label_time_ms=label_ms, reward=reward, breakdown=breakdown),
        examples.model_version,
        examples.arm,
        label_ms,
        post_id=post_id,
    )


def _attributed(examples: DecisionExamples, reward: RewardRecord, *, prompt: bool) -> JoinOutput:
    """A joined reward, for the 5-minute aggregates of its model version and arm;
    ``prompt``: it came within the prompt horizon of its impression."""
    kind = reward.reward_type
    return JoinOutput(
        "reward",
        examples.user_id.encode(),
        b"",
        examples.model_version,
        examples.arm,
        reward.ts_ms,
        engagements=int(kind in ENGAGEMENT_TYPES),
        dwell_seconds=reward.value if kind == "dwell" else 0.0,
        reports=int(kind == "report"),
        blocks=int(kind == "block"),
        hides=int(kind == "hide"),
        prompt=int(prompt),
        post_id=reward.post_id,
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


def _reward_proto(reward: RewardRecord) -> events_pb2.Reward:
    return events_pb2.Reward(
        decision_id=reward.decision_id,
        post_id=reward.post_id,
        user_id=reward.user_id,
        type=codecs.REWARD_TYPES[reward.reward_type],
        value=reward.value,
        ts_ms=reward.ts_ms,
    )
