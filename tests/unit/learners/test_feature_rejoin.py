"""No leakage: a learner re-joins exactly the user and post features the ranker used.

The real explore pipeline ranks with the real feature store and logs compact decisions
(the user typed, each item's dynamic values by layout, ``age_hours`` not logged); then
posts are updated (new topics, content, language, sensitivity), taken down, and a
creator's profile fills in the country of its posts. Re-joined from a learner's twin of
the catalogue, every shown item's post features and every user's features equal the
ranker's, field by field and as model inputs; a version the learner's catalogue lacks is
skipped and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from confluent_kafka import Message

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.state import UNKNOWN_COUNTRY
from feedrank.core.compact_features import (
    POST_VALUES_LAYOUT,
    full_user_features,
    is_compact_user,
    item_layout,
)
from feedrank.core.feature_schema import (
    COUNTRIES,
    COUNTRY_VOCABULARY,
    LANGUAGES,
    PostFeatureBatch,
)
from feedrank.core.labelled import labelled_example
from feedrank.core.time_units import HOUR_MS
from feedrank.learners.examples import batch_from_examples, concat
from feedrank.learners.feature_backfill import FeatureBackfill
from feedrank.learners.feature_rejoin import PostFeatureRejoin, logged_post_numbers
from feedrank.learners.online.consumer import ConsumerConfig, OnlineConsumer
from feedrank.learners.online.feedback import fake_negatives
from feedrank.learners.online.learner import OnlineLearner
from feedrank.learners.post_topics import CatalogueTopics
from feedrank.models.encoding import post_tensors, user_tensors
from feedrank.simulate.world.catalogue import START_TS_MS, catalogue_from_world, creator_id
from feedrank.v1 import catalogue_pb2, events_pb2
from tests.support.compact_serving import SERVE_MS, START_MS, ServedWorld, served_world
from tests.unit.learners.factories import small_ranker, small_two_tower

RESTYLED_MS = START_MS + HOUR_MS  # before serving: the version most shown posts have
UPDATED_MS = START_MS + 4 * HOUR_MS  # after serving: what the learner's catalogue now says
USERS = 12


def restyled_before_serving(world: ServedWorld) -> list[catalogue_pb2.PostEvent]:
    """Two of three posts upserted again: one half without a country of their own (the
    creator's profile, absent yet, gives it later), the other region-locked."""
    posts = world.world.posts
    events = []
    for row in range(len(posts)):
        if row % 3 == 0:
            continue  # keeps the catalogue's own version
        language = LANGUAGES[int(posts.language[row])]
        country = COUNTRIES[int(posts.country[row])] if row % 3 == 2 else ""
        events.append(
            world.restyled(row, RESTYLED_MS, seed=row, language=language, country=country)
        )
    return events


@pytest.fixture(scope="module")
def served() -> tuple[ServedWorld, list[events_pb2.Decision]]:
    world = served_world()
    world.apply(*restyled_before_serving(world))
    decisions = [events_pb2.Decision.FromString(payload) for payload in world.serve(USERS)]
    shown = sorted({item.post_id for decision in decisions for item in decision.items})
    takedown = catalogue_pb2.PostEvent(
        op=catalogue_pb2.ENTITY_OP_DELETE, post_id=shown[0], ts_ms=UPDATED_MS
    )
    later = [  # every other one, created at another time too (age_hours is derived from
        # the served version's); the rest keep the version served (and their creator's
        # profile gives those without a country one, in place)
        world.restyled(
            int(post[1:]), UPDATED_MS, seed=7, language="ja", sensitive=True, created_ms=START_MS
        )
        for post in shown[1::2]
    ]
    creators = {creator_id(int(world.world.posts.creator_index[int(p[1:])])) for p in shown}
    profiles = [
        catalogue_pb2.UserEvent(
            op=catalogue_pb2.ENTITY_OP_UPSERT, user_id=creator, country="US", ts_ms=UPDATED_MS
        )
        for creator in sorted(creators)
    ]
    world.apply(takedown, *later, *profiles)
    return world, decisions


def ranker_used(world: ServedWorld, item: events_pb2.ShownItem) -> PostFeatureBatch:
    posts, version = world.store.used(item.post_id, SERVE_MS)
    assert item.catalogue_version == version
    return posts


def assert_same_vector(got: events_pb2.FeatureVector, want: events_pb2.FeatureVector) -> None:
    assert dict(got.numeric) == dict(want.numeric)
    assert dict(got.categorical) == dict(want.categorical)
    assert list(got.embedding) == list(want.embedding)
    assert not got.values


def test_the_decisions_are_compact_and_cover_every_kind_of_version(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    items = [item for decision in decisions for item in decision.items]
    assert len(decisions) == USERS
    assert len(items) > USERS * 20  # feeds of up to 30, fewer when the rules filter many
    assert all(len(item.features.values) == 4 and not item.features.numeric for item in items)
    assert {item.features.country_code for item in items} >= {0, 2}  # US and India, say
    for decision in decisions:  # the layout (age_hours derived), the user typed
        assert list(decision.item_feature_names) == [POST_VALUES_LAYOUT]
        assert "age_hours" not in item_layout(decision.item_feature_names).values
        assert is_compact_user(decision.user_features)
        assert not decision.user_features.numeric
        assert not decision.user_features.categorical
    versions = {item.catalogue_version for item in items}
    assert {START_TS_MS, RESTYLED_MS} <= versions
    learner = world.learner
    unknown, us = COUNTRY_VOCABULARY.get(UNKNOWN_COUNTRY), COUNTRY_VOCABULARY.get("US")
    replaced = filled_in_place = 0
    for item in items:  # the learner's catalogue has moved on from what was served
        row = learner.post_row(item.post_id)
        assert row is not None
        replaced += learner.post_column("updated_ms")[row] == UPDATED_MS
        served_country = ranker_used(world, item).country[0]
        filled_in_place += bool(
            learner.post_column("updated_ms")[row] == item.catalogue_version
            and served_country == unknown
            and learner.post_column("country")[row] == us
        )
    assert replaced > len(items) / 4  # a later upsert or a takedown
    assert filled_in_place > 0  # the same version, its country given by the creator later


def test_rejoined_post_features_equal_what_the_ranker_used(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    rejoin = PostFeatureRejoin(world.learner)
    for decision in decisions:
        shown = rejoin.shown_items(decision)
        assert [item for item, _ in shown] == list(decision.items)
        for item, features in shown:
            used = ranker_used(world, item)
            assert_same_vector(features, used.to_protos()[0])  # age_hours derived, equal
            assert features.numeric["age_hours"] == float(used.age_hours[0])
    assert rejoin.rejoined == sum(len(decision.items) for decision in decisions)
    assert not rejoin.skipped


def test_the_model_inputs_of_rejoined_impressions_equal_the_rankers(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    rejoin = PostFeatureRejoin(world.learner)
    impressions = [
        negative for decision in decisions for negative in fake_negatives(decision, rejoin)
    ]
    batch = batch_from_examples(impressions, topics=CatalogueTopics(world.learner))
    used = [ranker_used(world, impression.item) for impression in impressions]
    ranker = concat_posts(used)
    learned = post_tensors(batch.posts, id_buckets=1024, at_ms=SERVE_MS)
    served_inputs = post_tensors(ranker, id_buckets=1024, at_ms=SERVE_MS)
    for name in vars(learned):
        assert torch.equal(getattr(learned, name), getattr(served_inputs, name)), name


def test_the_users_the_learner_reads_equal_the_rankers_field_by_field_and_as_model_inputs(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    for decision in decisions:  # the logged user, whole: what a full decision logs
        used = world.store.users[(decision.user_id, SERVE_MS)]
        full = full_user_features(decision.user_features, decision.event_time_ms)
        assert dict(full.numeric) == dict(used.to_proto().numeric)
        assert dict(full.categorical) == dict(used.to_proto().categorical)
    rejoin = PostFeatureRejoin(world.learner)
    impressions = [
        negative for decision in decisions for negative in fake_negatives(decision, rejoin)
    ]
    batch = batch_from_examples(impressions, topics=CatalogueTopics(world.learner))
    used_users = [world.store.users[(impression.user_id, SERVE_MS)] for impression in impressions]
    assert list(batch.users) == used_users  # every field, as_of_ms and affinities included
    assert sum(bool(user.topic_affinity) for user in used_users) > len(used_users) / 2
    learned = user_tensors(batch.users, id_buckets=1024)
    served_inputs = user_tensors(used_users, id_buckets=1024)
    for name in vars(learned):
        assert torch.equal(getattr(learned, name), getattr(served_inputs, name)), name


def concat_posts(posts: list[PostFeatureBatch]) -> PostFeatureBatch:
    columns = {
        name: np.concatenate([getattr(batch, name) for batch in posts])
        for name in vars(posts[0])
        if name != "as_of_ms"
    }
    return PostFeatureBatch(**columns, as_of_ms=posts[0].as_of_ms)


def test_a_compact_example_is_completed_as_the_full_example_of_the_same_impression(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    decision = decisions[0]
    examples = [
        labelled_example(decision, item, label_time_ms=SERVE_MS + 1, reward=float(index % 2))
        for index, item in enumerate(decision.items)
    ]
    assert all(example.catalogue_version and example.post_feature_names for example in examples)
    logged = logged_post_numbers(examples[0])  # by the layout's names; age_hours derived
    assert logged["creator_followers"] == examples[0].post_features.values[0]
    assert logged["country_code"] == examples[0].post_features.country_code
    assert "age_hours" not in logged
    backfill = FeatureBackfill(world.learner)
    completed = list(backfill.examples(examples))  # training's path
    assert len(completed) == len(examples)
    assert backfill.filled_users == backfill.filled_posts == 0  # none taken from "now"
    for example, item in zip(completed, decision.items, strict=True):
        full = labelled_example(decision, item, label_time_ms=SERVE_MS + 1, reward=example.reward)
        full.user_features.CopyFrom(world.store.users[(decision.user_id, SERVE_MS)].to_proto())
        full.post_features.CopyFrom(ranker_used(world, item).to_protos()[0])
        full.catalogue_version = 0
        del full.post_feature_names[:]
        assert example == full


def test_unknown_versions_are_skipped_and_counted_never_filled_in(
    served: tuple[ServedWorld, list[events_pb2.Decision]], caplog: pytest.LogCaptureFixture
) -> None:
    world, decisions = served
    items = [item for decision in decisions for item in decision.items]
    without_history = catalogue_from_world(world.world)  # keeps no superseded version
    behind = catalogue_from_world(world.world, CatalogueState(keep_superseded_ms=HOUR_MS))
    counted: list[str] = []
    for catalogue, reason in (
        (CatalogueState(), "unknown_post"),
        (without_history, "version_gone"),
        (behind, "catalogue_behind"),
    ):
        if catalogue is without_history:
            for event in (*restyled_before_serving(world), *restyled_before_serving(world)):
                event.ts_ms += 2 * HOUR_MS  # a later version replaced what was served
                catalogue.apply_post(event)
        rejoin = PostFeatureRejoin(catalogue, on_skip=counted.append)
        with caplog.at_level(logging.WARNING, logger="feedrank.learners"):
            learned = [pair for decision in decisions for pair in rejoin.shown_items(decision)]
        missing = [item for item in items if item.catalogue_version != START_TS_MS]
        if reason == "unknown_post":
            missing = items
        assert rejoin.skipped == {reason: len(missing)}
        assert len(learned) == len(items) - len(missing)
        assert any(reason.replace("_", " ") in message for message in caplog.messages)
        example = labelled_example(decisions[0], missing[0], label_time_ms=1, reward=1.0)
        if missing[0] in decisions[0].items:
            assert not rejoin.complete(example)
            assert example.post_features.values  # left as it was: compact
            assert not example.post_features.numeric
    assert set(counted) == {"unknown_post", "version_gone", "catalogue_behind"}


def test_full_decisions_and_examples_pass_unchanged(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, _ = served
    decision = events_pb2.Decision.FromString(world.serve(1, decision_features="full")[0])
    assert all(item.catalogue_version == 0 and item.features.numeric for item in decision.items)
    rejoin = PostFeatureRejoin(CatalogueState())
    shown = rejoin.shown_items(decision)
    assert [features for _, features in shown] == [item.features for item in decision.items]
    example = labelled_example(decision, decision.items[0], label_time_ms=1, reward=0.0)
    copy = events_pb2.LabelledExample()
    copy.CopyFrom(example)
    assert rejoin.complete(example)
    assert example == copy
    assert rejoin.rejoined == 0
    assert not rejoin.skipped


class DecisionRecord:
    """A decisions-topic record as the consumer reads it."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "decisions"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def test_the_online_learner_learns_compact_decisions_with_rejoined_features(
    served: tuple[ServedWorld, list[events_pb2.Decision]], tmp_path: Path
) -> None:
    world, decisions = served
    consumer = OnlineConsumer(
        ConsumerConfig(
            bootstrap="127.0.0.1:1",
            topic="examples",
            decisions_topic="decisions",
            group_id="test",
            state_dir=tmp_path,
        ),
        make_learner=lambda: (
            OnlineLearner.new(two_tower=small_two_tower(), ranker=small_ranker()),
            "",
        ),
        registry=None,
        rejoin=PostFeatureRejoin(world.learner),
    )
    records = [
        cast(Message, DecisionRecord(decision.SerializeToString(), offset))
        for offset, decision in enumerate(decisions)
    ]
    assert consumer.apply(records) == sum(len(decision.items) for decision in decisions)
    learned = consumer.catalogue.features()  # the newest features the learner saw per post
    for row, identifier in enumerate(consumer.catalogue.ids()):
        used = world.store.used(identifier, SERVE_MS)[0]
        for name in ("topics", "content", "sensitive", "region_locked", "engagement_rate"):
            np.testing.assert_array_equal(getattr(learned, name)[row], getattr(used, name)[0])
        assert learned.country[row] == min(int(used.country[0]), len(COUNTRIES))


def test_rejoined_examples_and_impressions_concatenate_into_one_batch(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    rejoin = PostFeatureRejoin(world.learner)
    negatives = fake_negatives(decisions[1], rejoin)
    examples = list(
        rejoin.examples(
            labelled_example(decisions[2], item, label_time_ms=SERVE_MS, reward=1.0)
            for item in decisions[2].items
        )
    )
    both = concat([batch_from_examples(negatives), batch_from_examples(examples)])
    assert len(both) == len(decisions[1].items) + len(decisions[2].items)
    assert both.positives == len(decisions[2].items)


def test_a_compact_decision_is_not_learned_without_its_features(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    _, decisions = served
    with pytest.raises(ValueError, match="re-join"):
        fake_negatives(decisions[0])


def test_items_named_by_an_unknown_layout_are_skipped_as_malformed(
    served: tuple[ServedWorld, list[events_pb2.Decision]],
) -> None:
    world, decisions = served
    decision = events_pb2.Decision()
    decision.CopyFrom(decisions[0])
    decision.item_feature_names[:] = ["@post_values_9"]  # a layout of a later version
    rejoin = PostFeatureRejoin(world.learner)
    assert rejoin.shown_items(decision) == []
    assert rejoin.skipped == {"malformed": len(decision.items)}
