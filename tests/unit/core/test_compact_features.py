"""A compact decision's typed user and item layouts read back to exactly what a full
decision logs; ``UserFeatures`` holds float32 numbers, so the models' inputs and a float32
log are the same."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from feedrank.core.compact_features import (
    ITEM_LAYOUTS,
    POST_VALUES_LAYOUT,
    UnknownLayoutError,
    full_user_features,
    is_compact_user,
    item_layout,
    logged_item_values,
    logged_user_features,
)
from feedrank.core.feature_schema import (
    DYNAMIC_POST_FEATURES,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    UserFeatures,
    post_age_hours,
)
from feedrank.core.time_units import HOUR_MS
from feedrank.learners.examples import InvalidExampleError, user_from_example
from feedrank.models.encoding import user_tensors
from feedrank.v1 import events_pb2
from tests.unit.models.factories import AS_OF_MS, make_user


def users() -> list[UserFeatures]:
    rng = np.random.default_rng(3)
    dense = make_user(rng, index=1)  # every topic
    sparse = dataclasses.replace(
        make_user(rng, index=2),
        topic_affinity=(0.25, *([0.0] * (NUM_TOPICS - 2)), 0.75),
        engagements_7d=0.0,
        sensitive_filter=True,
    )
    new_language = LANGUAGE_VOCABULARY.intern("tlh")  # a code past the schema's
    cold = dataclasses.replace(
        make_user(rng, index=3, known=False), topic_affinity=(), language=new_language
    )
    return [dense, sparse, cold]


@pytest.mark.parametrize("user", users(), ids=["all-topics", "two-topics", "cold"])
def test_a_compact_user_reads_back_to_the_full_log(user: UserFeatures) -> None:
    logged = logged_user_features(user, AS_OF_MS)
    assert is_compact_user(logged)
    assert not logged.numeric
    assert not logged.categorical
    full = full_user_features(logged, AS_OF_MS)
    assert dict(full.numeric) == dict(user.to_proto().numeric)
    assert dict(full.categorical) == dict(user.to_proto().categorical)
    assert logged.ByteSize() * 2 < user.to_proto().ByteSize()


def test_a_user_of_another_time_than_the_decision_is_logged_whole() -> None:
    user = users()[0]
    logged = logged_user_features(user, AS_OF_MS + 1)
    assert logged == user.to_proto()
    assert full_user_features(logged, AS_OF_MS + 1) is logged


def test_a_compact_user_whose_topics_and_shares_do_not_pair_up_is_refused() -> None:
    logged = logged_user_features(users()[1], AS_OF_MS)
    logged.user.affinity_shares.append(0.5)
    with pytest.raises(ValueError, match="affinity topics"):
        full_user_features(logged, AS_OF_MS)
    example = events_pb2.LabelledExample(
        user_id="u2", decision_time_ms=AS_OF_MS, user_features=logged
    )
    with pytest.raises(InvalidExampleError, match="affinity topics") as error:
        user_from_example(example)
    assert error.value.field == "user_features"


def test_user_numbers_are_float32_and_the_models_inputs_are_unchanged() -> None:
    exact = {"activity": 1 / 3, "follow_count": np.log1p(7.0), "engagements_7d": 0.1}
    user = dataclasses.replace(users()[0], **exact)
    for name, value in exact.items():
        assert getattr(user, name) == float(np.float32(value))
    assert all(share == float(np.float32(share)) for share in user.topic_affinity)
    # The models cast to float32: the rounded numbers are what they read of the doubles.
    read = np.array([getattr(user, name) for name in exact], dtype=np.float32)
    assert read.tolist() == np.array(list(exact.values()), dtype=np.float32).tolist()
    learned = user_from_example(
        events_pb2.LabelledExample(
            user_id=user.user_id,
            decision_time_ms=AS_OF_MS,
            user_features=logged_user_features(user, AS_OF_MS),
        )
    )
    assert learned == user
    for name, tensor in vars(user_tensors([learned], id_buckets=64)).items():
        assert torch.equal(tensor, getattr(user_tensors([user], id_buckets=64), name)), name


def test_explores_layout_logs_the_dynamic_features_but_age_hours() -> None:
    layout = ITEM_LAYOUTS[POST_VALUES_LAYOUT]
    assert item_layout([POST_VALUES_LAYOUT]) == layout
    assert layout.country_code_field
    assert {*layout.values, "country_code", "age_hours"} == set(DYNAMIC_POST_FEATURES)
    features = events_pb2.FeatureVector(values=[1.5, 0.25, 0.0, 0.125], country_code=3)
    assert logged_item_values([POST_VALUES_LAYOUT], features) == {
        "creator_followers": 1.5,
        "creator_engagement_rate": 0.25,
        "impressions": 0.0,
        "engagement_rate": 0.125,
        "country_code": 3.0,
    }


def test_names_name_the_values_and_unknown_layouts_or_counts_are_refused() -> None:
    features = events_pb2.FeatureVector(values=[2.0, 0.5], country_code=3)
    assert logged_item_values(["age_hours", "impressions"], features) == {
        "age_hours": 2.0,
        "impressions": 0.5,
    }
    with pytest.raises(UnknownLayoutError, match="@post_values_9"):
        item_layout(["@post_values_9"])
    with pytest.raises(ValueError, match="2 values named by 1 names"):
        logged_item_values(["impressions"], features)


def test_post_age_is_the_hours_from_creation_to_then_never_negative() -> None:
    created = np.array([AS_OF_MS - 90 * 60_000, AS_OF_MS + HOUR_MS, AS_OF_MS - 1], np.int64)
    ages = post_age_hours(AS_OF_MS, created)
    assert ages.dtype == np.float32
    assert ages.tolist() == [1.5, 0.0, np.float32(1 / HOUR_MS)]
    assert float(post_age_hours(AS_OF_MS, int(created[0]))) == 1.5
