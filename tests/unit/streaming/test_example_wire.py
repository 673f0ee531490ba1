"""example_wire: examples spliced from a decision's bytes parse to what labelled_example builds."""

from __future__ import annotations

import random

import pytest

from feedrank.core import codecs
from feedrank.core.labelled import labelled_example
from feedrank.core.protobuf_wire import WireFormatError
from feedrank.streaming.example_wire import DecisionExamples, breakdown_bytes
from feedrank.v1 import events_pb2


def _decision(items: int, seed: int = 7, *, user_features: bool = True) -> events_pb2.Decision:
    rng = random.Random(seed)

    def features(dim: int) -> events_pb2.FeatureVector:
        return events_pb2.FeatureVector(
            numeric={f"n{i}": rng.uniform(-5, 5) for i in range(6)},
            categorical={"language": "pt-BR", "country": "BR"},
            embedding=[rng.uniform(-1, 1) for _ in range(dim)],
        )

    return events_pb2.Decision(
        decision_id="décision-1",
        event_time_ms=1_790_000_000_123,
        user_id="usuário:42",
        model_version="v0007",
        arm="canary",
        exploration_policy=events_pb2.EXPLORATION_POLICY_PLACKETT_LUCE,
        exploration_seed=2**63 + 5,
        user_features=features(8) if user_features else None,
        items=[
            events_pb2.ShownItem(
                post_id=f"post/{i}/ñ",
                position=i,
                score=rng.random(),
                propensity=rng.random(),
                features=features(32),
            )
            for i in range(items)
        ],
        context={"surface": "explore"},
    )


def _expected(
    decision: events_pb2.Decision,
    item: events_pb2.ShownItem,
    label_time_ms: int,
    reward: float,
    counts: dict[str, float],
) -> events_pb2.LabelledExample:
    breakdown = events_pb2.RewardBreakdown(dwell_seconds=counts.get("dwell_seconds", 0.0))
    for name in ("views", "likes", "comments", "shares", "saves", "hides", "reports", "blocks"):
        setattr(breakdown, name, int(counts.get(name, 0)))
    return labelled_example(
        decision, item, label_time_ms=label_time_ms, reward=reward, breakdown=breakdown
    )


@pytest.mark.parametrize(
    ("reward", "counts"),
    [
        (1.0, {"likes": 1, "views": 2, "dwell_seconds": 12.5}),
        (0.0, {}),
        (0.0, {"views": 1, "hides": 1, "reports": 2, "blocks": 1}),
        (1.0, {"comments": 1, "shares": 3, "saves": 1}),
    ],
)
def test_every_item_parses_to_the_example_labelled_example_builds(
    reward: float, counts: dict[str, float]
) -> None:
    decision = _decision(items=30)
    examples = DecisionExamples.from_decision_bytes(codecs.encode(decision))

    for item in decision.items:
        spliced = events_pb2.LabelledExample.FromString(
            examples.example(
                item.post_id, label_time_ms=1_790_000_500_000, reward=reward, breakdown=counts
            )
        )
        assert spliced == _expected(decision, item, 1_790_000_500_000, reward, counts)


def test_a_decision_without_user_features_or_items_still_labels() -> None:
    decision = _decision(items=1, user_features=False)
    examples = DecisionExamples.from_decision_bytes(codecs.encode(decision))
    [item] = decision.items

    spliced = examples.example(item.post_id, label_time_ms=0, reward=0.0, breakdown={})

    assert events_pb2.LabelledExample.FromString(spliced) == _expected(decision, item, 0, 0.0, {})
    assert examples.user_id == "usuário:42"
    assert DecisionExamples.from_decision_bytes(b"").items == {}


def test_a_repeated_post_labels_its_first_showing_as_before() -> None:
    decision = _decision(items=2)
    decision.items[1].post_id = decision.items[0].post_id
    examples = DecisionExamples.from_decision_bytes(codecs.encode(decision))

    spliced = examples.example(
        decision.items[0].post_id, label_time_ms=5, reward=1.0, breakdown={"likes": 1}
    )

    assert events_pb2.LabelledExample.FromString(spliced) == _expected(
        decision, decision.items[0], 5, 1.0, {"likes": 1}
    )


def test_an_empty_breakdown_is_an_empty_message_and_zero_counts_are_left_out() -> None:
    assert breakdown_bytes({}) == b""
    assert breakdown_bytes({"likes": 0, "dwell_seconds": 0.0}) == b""
    parsed = events_pb2.RewardBreakdown.FromString(breakdown_bytes({"likes": 2, "views": 300}))
    assert (parsed.likes, parsed.views) == (2, 300)


@pytest.mark.parametrize("payload", [b"\x0a\x05ab", b"\x08\xff", b"\x0b"])
def test_malformed_bytes_are_refused(payload: bytes) -> None:
    with pytest.raises(WireFormatError):
        DecisionExamples.from_decision_bytes(payload)


def test_a_compact_decision_carries_its_catalogue_versions_and_feature_names() -> None:
    decision = events_pb2.Decision(
        decision_id="d-compact",
        event_time_ms=1_790_000_000_000,
        user_id="u1",
        item_feature_names=["age_hours", "impressions"],
        items=[
            events_pb2.ShownItem(
                post_id=f"p{i}",
                position=i,
                score=0.5,
                propensity=0.25,
                catalogue_version=1_789_000_000_000 + i,
                features=events_pb2.FeatureVector(values=[1.5 * i, 2.0]),
            )
            for i in range(3)
        ],
    )
    examples = DecisionExamples.from_decision_bytes(codecs.encode(decision))

    for item in decision.items:
        spliced = events_pb2.LabelledExample.FromString(
            examples.example(item.post_id, label_time_ms=1, reward=0.0, breakdown={})
        )
        assert spliced == _expected(decision, item, 1, 0.0, {})
        assert spliced.catalogue_version == item.catalogue_version
        assert list(spliced.post_feature_names) == ["age_hours", "impressions"]
