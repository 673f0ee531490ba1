"""Imported logs (ids, propensities, rewards, no features) become a batch through the
catalogue; logged features are kept as they are."""

from __future__ import annotations

import pytest

from feedrank.catalogue import CatalogueState
from feedrank.client import entities
from feedrank.core.feature_schema import COUNTRIES, LANGUAGES, NUM_TOPICS
from feedrank.core.time_units import HOUR_MS
from feedrank.learners.examples import InvalidExampleError, batch_from_examples
from feedrank.learners.feature_backfill import FeatureBackfill
from feedrank.learners.post_ids import PostIds
from feedrank.v1 import events_pb2

T0 = 1_764_000_000_000


def catalogue() -> CatalogueState:
    state = CatalogueState()
    state.apply_user(entities.user_upsert("desk", language="sw", country="KE", ts_ms=T0))
    state.apply_user(
        entities.user_upsert("amina", language="sw", country="KE", age_bucket="25-34", ts_ms=T0)
    )
    state.apply_post(
        entities.post_upsert(
            "habari-1", creator_id="desk", created_ms=T0, language="sw", topics=["siasa"], ts_ms=T0
        )
    )
    state.apply_post(
        entities.post_upsert(
            "news-1", creator_id="desk", created_ms=T0, language="en", country="US", ts_ms=T0
        )
    )
    return state


def imported(
    post_id: str, user_id: str = "amina", engaged: bool = True
) -> events_pb2.LabelledExample:
    return events_pb2.LabelledExample(
        decision_id=f"{user_id}-1",
        user_id=user_id,
        post_id=post_id,
        decision_time_ms=T0 + 5 * HOUR_MS,
        position=0,
        propensity=0.25,
        engaged=engaged,
    )


def test_imported_examples_get_the_catalogues_features_as_of_their_decision() -> None:
    backfill = FeatureBackfill(catalogue())
    examples = list(backfill.examples([imported("habari-1"), imported("news-1", engaged=False)]))
    assert (backfill.filled_users, backfill.filled_posts) == (2, 2)
    swahili, english = (example.post_features for example in examples)
    assert swahili.categorical["language"] == "sw"
    assert swahili.numeric["age_hours"] == pytest.approx(5.0)
    assert english.categorical["country"] == "US"
    batch = batch_from_examples(examples, post_ids=PostIds())
    assert batch.posts.language.tolist() == [len(LANGUAGES), LANGUAGES.index("en")]  # "other"
    assert batch.posts.topics[0].sum() == pytest.approx(1.0)  # siasa, from the catalogue
    amina = batch.users[0]
    assert amina.known
    assert amina.age_bucket == 2  # 25-34
    assert amina.language == len(LANGUAGES)
    assert amina.country == len(COUNTRIES)
    assert batch.labels.tolist() == [1.0, 0.0]


def test_ids_the_catalogue_does_not_know_are_filled_as_unknown() -> None:
    examples = list(FeatureBackfill(None).examples([imported("p-404", user_id="nobody")]))
    batch = batch_from_examples(examples, post_ids=PostIds())
    assert not batch.users[0].known
    assert batch.posts.language.tolist() == [len(LANGUAGES)]
    assert batch.posts.topics.shape == (1, NUM_TOPICS)
    assert float(batch.posts.content.sum()) == 0.0


def test_logged_features_are_kept_and_the_example_is_not_copied() -> None:
    example = imported("habari-1")
    example.user_features.numeric.update(
        {
            "age_bucket": 4.0,
            "activity": 1.0,
            "follow_count": 0.0,
            "engagements_7d": 0.0,
            "sensitive_filter": 0.0,
        }
    )
    example.post_features.CopyFrom(
        next(FeatureBackfill(catalogue()).examples([imported("habari-1")])).post_features
    )
    example.post_features.numeric["impressions"] = 7.0
    [kept] = FeatureBackfill(catalogue()).examples([example])
    assert kept is example


def test_a_malformed_language_is_still_refused() -> None:
    example = next(FeatureBackfill(catalogue()).examples([imported("habari-1")]))
    example.post_features.categorical["language"] = "x"
    with pytest.raises(InvalidExampleError, match="well-formed"):
        batch_from_examples([example], post_ids=PostIds())
