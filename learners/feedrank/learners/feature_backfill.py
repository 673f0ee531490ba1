"""Features the logs lack, from the catalogue: what training on imported logs needs.

Decisions that feedrank serves log the user's and every shown post's features as of
the impression. Logs from elsewhere, imported with ``feedrank replay``, carry ids,
positions, propensities and rewards, and at most a few features. Before such examples
become a batch, :class:`FeatureBackfill` fills each missing vector from the catalogue
(the replayed entity topics) as a point-in-time feature store answers at the decision's
time: the user's language, country, age bucket and follows; the post's language,
country, topics, content embedding, creator and age. The store has seen no traffic, so
engagement counters are zero: the ranker learns from the ids, the content and the
labels. A user the catalogue does not know is filled as unknown (``known`` = 0), a post
it does not know as language and country "other" with no content; examples whose
features were logged are left exactly as they are.

Compact examples (``catalogue_version`` set: explore's default log, docs/contracts.md)
lack their post's static features by design. They are not backfilled as of the decision
time, which would take the post's *current* version: their features are re-joined at the
version the ranker saw (:class:`~feedrank.learners.feature_rejoin.PostFeatureRejoin`,
``rejoin``), and those whose version the catalogue lacks are left out and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.state import UNKNOWN_COUNTRY
from feedrank.core.feature_schema import CONTENT_DIM, LOGGED_POST_NUMERIC
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.v1 import events_pb2

UNDETERMINED_LANGUAGE = "und"  # BCP 47's "undetermined": the models' "other" language


class FeatureBackfill:
    """Fills the user and post features an example lacks, as of its decision time."""

    def __init__(self, catalogue: CatalogueState | None = None) -> None:
        self.catalogue = catalogue or CatalogueState()
        self.store = InMemoryFeatureStore(self.catalogue)
        self.rejoin = PostFeatureRejoin(self.catalogue)
        self.filled_users = 0
        self.filled_posts = 0

    def examples(
        self, examples: Iterable[events_pb2.LabelledExample]
    ) -> Iterator[events_pb2.LabelledExample]:
        """Each example, copied and completed where it lacks a feature vector; a compact one
        completed in place by the re-join (left out when its post version is unknown)."""
        for example in self.rejoin.examples(examples):
            lacks_user = "age_bucket" not in example.user_features.numeric
            lacks_post = "age_hours" not in example.post_features.numeric
            if not (lacks_user or lacks_post):
                yield example
                continue
            completed = events_pb2.LabelledExample()
            completed.CopyFrom(example)
            at_ms = example.decision_time_ms
            if lacks_user:
                self._fill_user(completed, at_ms)
            if lacks_post:
                self._fill_post(completed, at_ms)
            yield completed

    def _fill_user(self, example: events_pb2.LabelledExample, at_ms: int) -> None:
        user = self.store.user_features(example.user_id, at_ms)
        logged = example.user_features
        filled = user.to_proto()
        filled.numeric.update(logged.numeric)  # what was logged wins
        filled.categorical.update(logged.categorical)
        example.user_features.CopyFrom(filled)
        self.filled_users += 1

    def _fill_post(self, example: events_pb2.LabelledExample, at_ms: int) -> None:
        row = self.catalogue.post_row(example.post_id)
        if row is None:
            filled = events_pb2.FeatureVector(
                numeric=dict.fromkeys(LOGGED_POST_NUMERIC, 0.0),
                categorical={"language": UNDETERMINED_LANGUAGE, "country": UNKNOWN_COUNTRY},
                embedding=[0.0] * CONTENT_DIM,
            )
        else:
            posts = self.store.post_features(np.array([row], dtype=np.int64), at_ms)
            filled = posts.to_protos()[0]
        logged = example.post_features
        filled.numeric.update(logged.numeric)
        filled.categorical.update(logged.categorical)
        if len(logged.embedding):
            del filled.embedding[:]
            filled.embedding.extend(logged.embedding)
        example.post_features.CopyFrom(filled)
        self.filled_posts += 1
