"""Labelled examples as model inputs: ``LabelledExample`` protos to columnar batches.

An :class:`ExampleBatch` holds, one row per example, the user and post features as the
decision logged them at impression time (no lookup at training time, so no leakage),
the label, and the logging policy's position and propensity. Rebuilding the model
inputs goes through the schema's own types (:class:`UserFeatures`,
:class:`PostFeatureBatch`), so training and serving encode features the same way.

Posts are named by any non-empty string id. A batch's ``post_index`` is the id's row in
the learner process's :class:`~feedrank.learners.post_ids.PostIds` (shared by everything
in the process), and its ``post_key`` the id's stable key, which is what the models see.

Post topics are logged with the decision as ``topic_<i>`` numeric features, the non-zero
weights only (:meth:`PostFeatureBatch.to_protos`); an absent ``topic_<i>`` is zero. Logs
without any topic feature (older decisions, replayed files without them) take a post's
topics from ``topics`` (a :class:`~feedrank.learners.post_topics.TopicLookup`, by post
id) when it knows the post, else zeros.

A batch refuses NaN or infinite inputs, labels other than 0/1 and propensities outside
(0, 1] with :class:`InvalidExampleError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from feedrank.core.compact_features import full_user_features
from feedrank.core.entity_codecs import COUNTRY_TAG, LANGUAGE_TAG
from feedrank.core.feature_schema import (
    AFFINITY_FEATURES,
    AGE_BUCKETS,
    CONTENT_DIM,
    COUNTRIES,
    LANGUAGES,
    NUM_TOPICS,
    TOPIC_FEATURES,
    FloatArray,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
    post_keys,
)
from feedrank.learners.post_ids import LEARNER_POST_IDS, PostIds
from feedrank.learners.post_topics import TopicLookup, with_looked_up_topics
from feedrank.v1 import events_pb2

F64Array = npt.NDArray[np.float64]

_POST_NUMERIC = (
    "age_hours",
    "creator_followers",
    "creator_engagement_rate",
    "impressions",
    "engagement_rate",
)
_POST_NUMBERS = (*_POST_NUMERIC, "sensitive", "region_locked", "creator_index")
_USER_NUMERIC = ("activity", "follow_count", "engagements_7d")
_TOPIC_COLUMN = {name: column for column, name in enumerate(TOPIC_FEATURES)}
_AFFINITY_COLUMN = {name: column for column, name in enumerate(AFFINITY_FEATURES)}
_LANGUAGE_CODE = {code: index for index, code in enumerate(LANGUAGES)}
_COUNTRY_CODE = {code: index for index, code in enumerate(COUNTRIES)}
_WELL_FORMED = {"language": LANGUAGE_TAG, "country": COUNTRY_TAG}


class InvalidExampleError(ValueError):
    """An example that cannot be learned from; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ExampleBatch:
    """Examples as columns; ``posts`` row i is the post of example i."""

    users: tuple[UserFeatures, ...]
    posts: PostFeatureBatch
    labels: FloatArray  # 0 or 1 (engaged within the reward window)
    propensities: F64Array  # logging propensity of the shown position, in (0, 1]
    positions: IntArray
    decision_time_ms: IntArray
    keys: tuple[str, ...]  # "decision_id/post_id": identifies an example for accounting

    def __post_init__(self) -> None:
        count = len(self.users)
        columns = (self.labels, self.propensities, self.positions, self.decision_time_ms)
        if len(self.posts) != count or any(c.shape != (count,) for c in columns):
            raise InvalidExampleError("every column needs one row per example", field="rows")
        if len(self.keys) != count:
            raise InvalidExampleError("one key per example is required", field="keys")
        validate_batch(self)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    def take(self, rows: IntArray) -> ExampleBatch:
        """The examples at ``rows``, in that order."""
        picked = rows.tolist()
        return ExampleBatch(
            users=tuple(self.users[row] for row in picked),
            posts=self.posts.take(rows),
            labels=self.labels[rows],
            propensities=self.propensities[rows],
            positions=self.positions[rows],
            decision_time_ms=self.decision_time_ms[rows],
            keys=tuple(self.keys[row] for row in picked),
        )

    def slices(self, size: int) -> list[ExampleBatch]:
        """Consecutive batches of at most ``size`` examples."""
        return [
            self.take(np.arange(start, min(start + size, len(self)), dtype=np.int64))
            for start in range(0, len(self), size)
        ]


def concat(batches: Sequence[ExampleBatch]) -> ExampleBatch:
    """One batch holding the rows of ``batches`` in order."""
    if not batches:
        raise ValueError("concat needs at least one batch")
    post_columns = {
        item.name: np.concatenate([getattr(batch.posts, item.name) for batch in batches])
        for item in fields(PostFeatureBatch)
        if item.name != "as_of_ms"
    }
    return ExampleBatch(
        users=tuple(user for batch in batches for user in batch.users),
        posts=PostFeatureBatch(
            **post_columns, as_of_ms=max(batch.posts.as_of_ms for batch in batches)
        ),
        labels=np.concatenate([batch.labels for batch in batches]),
        propensities=np.concatenate([batch.propensities for batch in batches]),
        positions=np.concatenate([batch.positions for batch in batches]),
        decision_time_ms=np.concatenate([batch.decision_time_ms for batch in batches]),
        keys=tuple(key for batch in batches for key in batch.keys),
    )


class LoggedExample(Protocol):
    """What a batch reads of one example: a ``LabelledExample``, or a view of a decision's
    shown item (:class:`feedrank.learners.online.feedback.Impression`) that skips copying
    the decision's features into one."""

    @property
    def decision_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def post_id(self) -> str: ...
    @property
    def decision_time_ms(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def propensity(self) -> float: ...
    @property
    def engaged(self) -> bool: ...
    @property
    def user_features(self) -> events_pb2.FeatureVector: ...
    @property
    def post_features(self) -> events_pb2.FeatureVector: ...


def example_key(example: LoggedExample) -> str:
    return f"{example.decision_id}/{example.post_id}"


def batch_from_examples(
    examples: Sequence[LoggedExample],
    *,
    topics: TopicLookup | FloatArray | None = None,
    post_ids: PostIds = LEARNER_POST_IDS,
) -> ExampleBatch:
    """Model inputs from labelled examples; InvalidExampleError for any bad example.

    Post ids are interned into ``post_ids`` (the process's by default). ``topics`` may
    also be a plain array: a generated world's topics by row (ids ``p<row>``).
    """
    if not examples:
        raise InvalidExampleError("no examples", field="rows")
    count = len(examples)
    # Python lists row by row, one numpy conversion per column at the end.
    identifiers: list[str] = []
    language: list[int] = []
    country: list[int] = []
    number_rows: list[list[float]] = []  # _POST_NUMBERS per row
    embeddings: list[list[float]] = []
    topic_cells: tuple[list[int], list[int], list[float]] = ([], [], [])  # row, column, weight
    users: list[UserFeatures] = []
    # Every example of a decision carries the decision's user features: decode them once.
    decoded_users: dict[tuple[str, str], UserFeatures] = {}
    for row, example in enumerate(examples):
        decision = (example.decision_id, example.user_id)
        user = decoded_users.get(decision) if example.decision_id else None
        if user is None:
            user = decoded_users[decision] = user_from_example(example)
        users.append(user)
        features = example.post_features
        if not example.post_id:
            raise InvalidExampleError("example has no post_id", field="post_id")
        identifiers.append(example.post_id)
        language.append(_category(features.categorical, "language", _LANGUAGE_CODE, "post"))
        country.append(_category(features.categorical, "country", _COUNTRY_CODE, "post"))
        values = dict(features.numeric)  # one pass over the protobuf map, then dict lookups
        try:  # finiteness is checked column-wise once the batch is built
            number_rows.append([values[name] for name in _POST_NUMBERS])
        except KeyError as missing:
            name = missing.args[0]
            raise InvalidExampleError(
                f"post_features lacks {name!r}", field=f"post_features.{name}"
            ) from None
        embedding = list(features.embedding)  # a list converts faster than the container
        if len(embedding) != CONTENT_DIM:
            raise InvalidExampleError(
                f"post {example.post_id!r} has a {len(embedding)}-d embedding; "
                f"the schema needs {CONTENT_DIM}",
                field="post_features.embedding",
            )
        embeddings.append(embedding)
        for name, weight in values.items():
            column = _TOPIC_COLUMN.get(name)
            if column is not None:
                topic_cells[0].append(row)
                topic_cells[1].append(column)
                topic_cells[2].append(weight)
    numbers = np.array(number_rows, dtype=np.float64).reshape(count, len(_POST_NUMBERS))
    _check_finite(numbers, _POST_NUMBERS)
    flags = numbers[:, len(_POST_NUMERIC) :]  # sensitive, region_locked, creator_index
    content = np.array(embeddings, dtype=np.float32).reshape(count, CONTENT_DIM)
    logged_topics = np.zeros((count, NUM_TOPICS), dtype=np.float32)
    logged_topics[topic_cells[0], topic_cells[1]] = topic_cells[2]
    _check_finite(logged_topics, TOPIC_FEATURES)
    has_logged_topics = np.zeros(count, dtype=np.bool_)
    has_logged_topics[topic_cells[0]] = True
    topic_rows = with_looked_up_topics(identifiers, logged_topics, has_logged_topics, topics)
    decision_ms = np.array([example.decision_time_ms for example in examples], dtype=np.int64)
    posts = PostFeatureBatch(
        post_index=post_ids.rows(identifiers),
        post_key=post_keys(identifiers),
        language=np.array(language, dtype=np.int64),
        country=np.array(country, dtype=np.int64),
        region_locked=flags[:, 1] > 0.5,
        creator_index=flags[:, 2].astype(np.int64),
        topics=topic_rows,
        content=content,
        age_hours=numbers[:, 0].astype(np.float32),
        creator_followers=numbers[:, 1].astype(np.float32),
        creator_engagement_rate=numbers[:, 2].astype(np.float32),
        impressions=numbers[:, 3].astype(np.float32),
        engagement_rate=numbers[:, 4].astype(np.float32),
        sensitive=flags[:, 0] > 0.5,
        as_of_ms=int(decision_ms.max()),
    )
    return ExampleBatch(
        users=tuple(users),
        posts=posts,
        labels=np.array([float(ex.engaged) for ex in examples], dtype=np.float32),
        propensities=np.array([ex.propensity for ex in examples], dtype=np.float64),
        positions=np.array([ex.position for ex in examples], dtype=np.int64),
        decision_time_ms=decision_ms,
        keys=tuple(example_key(example) for example in examples),
    )


def user_from_example(example: LoggedExample) -> UserFeatures:
    """The user as the decision logged them (``UserFeatures.to_proto`` inverted; a compact
    decision's typed user read back whole first, ``full_user_features``)."""
    try:
        features = full_user_features(example.user_features, example.decision_time_ms)
    except ValueError as error:
        raise InvalidExampleError(str(error), field="user_features") from None
    values = features.numeric
    if not example.user_id:
        raise InvalidExampleError("example has no user_id", field="user_id")
    age_bucket = int(_number(values, "age_bucket", "user_features"))
    if not 0 <= age_bucket < AGE_BUCKETS:
        raise InvalidExampleError(
            f"age_bucket {age_bucket} outside 0..{AGE_BUCKETS - 1}", field="user_features"
        )
    numbers = [_number(values, name, "user_features") for name in _USER_NUMERIC]
    return UserFeatures(
        user_id=example.user_id,
        language=_category(features.categorical, "language", _LANGUAGE_CODE, "user"),
        country=_category(features.categorical, "country", _COUNTRY_CODE, "user"),
        age_bucket=age_bucket,
        activity=numbers[0],
        follow_count=numbers[1],
        engagements_7d=numbers[2],
        sensitive_filter=_number(values, "sensitive_filter", "user_features") > 0.5,
        known=values.get("known", 1.0) > 0.5,
        as_of_ms=example.decision_time_ms,
        topic_affinity=_logged_affinity(values),
        # Logs from before the feature (encoding 5) have no evidence count: none known.
        affinity_engagements=(
            _number(values, "affinity_engagements", "user_features")
            if "affinity_engagements" in values
            else 0.0
        ),
    )


def _logged_affinity(values: Mapping[str, float]) -> tuple[float, ...]:
    """The user's topic affinity from its ``affinity_<i>`` numbers (absent means zero);
    ``()`` when none is logged (no history, or logs from before the feature)."""
    shares = [0.0] * NUM_TOPICS
    logged = False
    for name, share in values.items():
        column = _AFFINITY_COLUMN.get(name)
        if column is None:
            continue
        if not (math.isfinite(share) and share >= 0.0):
            raise InvalidExampleError(
                f"user_features.{name} is {share}: affinities are finite and >= 0",
                field=f"user_features.{name}",
            )
        shares[column] = float(share)
        logged = True
    return tuple(shares) if logged else ()


def _number(values: object, name: str, where: str) -> float:
    mapping = values  # a protobuf map<string, double>: indexing would insert a default
    if name not in mapping:  # type: ignore[operator]
        raise InvalidExampleError(f"{where} lacks {name!r}", field=f"{where}.{name}")
    value = float(mapping[name])  # type: ignore[index]
    if not math.isfinite(value):
        raise InvalidExampleError(f"{where}.{name} is {value}", field=f"{where}.{name}")
    return value


def _check_finite(columns: npt.NDArray[np.floating[Any]], names: Sequence[str]) -> None:
    """InvalidExampleError naming the first post feature column with NaN or infinity."""
    finite = np.isfinite(columns).all(axis=0)
    if not finite.all():
        name = names[int(np.argmin(finite))]
        raise InvalidExampleError(
            f"post_features.{name} holds NaN or infinity", field=f"post_features.{name}"
        )


def _category(values: object, name: str, codes: dict[str, int], side: str) -> int:
    """The model's row of a logged language or country: its own for the schema's, the
    "other" row (one past them) for any other well-formed tag, as serving maps them."""
    text = values.get(name, "")  # type: ignore[attr-defined]
    code = codes.get(text)
    if code is not None:
        return code
    if _WELL_FORMED[name].fullmatch(text):
        return len(codes)
    raise InvalidExampleError(
        f"{side} {name} {text!r} is not a well-formed tag (one of {sorted(codes)}, or any other)",
        field=f"{side}_features.{name}",
    )


def validate_batch(batch: ExampleBatch) -> None:
    """InvalidExampleError unless every input is finite and labels/propensities valid."""
    posts = batch.posts
    for name in (
        "topics",
        "content",
        "age_hours",
        "creator_followers",
        "creator_engagement_rate",
        "impressions",
        "engagement_rate",
    ):
        if not np.isfinite(getattr(posts, name)).all():
            raise InvalidExampleError(f"post {name} holds NaN or infinity", field=f"posts.{name}")
    for user in batch.users:
        for name in _USER_NUMERIC:
            if not math.isfinite(getattr(user, name)):
                raise InvalidExampleError(
                    f"user {user.user_id!r} has {name}={getattr(user, name)}",
                    field=f"users.{name}",
                )
    labels = batch.labels
    if not np.isin(labels, (0.0, 1.0)).all():
        raise InvalidExampleError("labels must be 0 or 1", field="labels")
    propensities = batch.propensities
    if not (np.isfinite(propensities).all() and (propensities > 0).all()):
        raise InvalidExampleError("propensities must lie in (0, 1]", field="propensities")
    if (propensities > 1).any():
        raise InvalidExampleError("propensities must lie in (0, 1]", field="propensities")


def candidate_batch(user: UserFeatures, posts: PostFeatureBatch, at_ms: int) -> ExampleBatch:
    """One user against several posts at ``at_ms``, shaped as unlabelled examples."""
    count = len(posts)
    return ExampleBatch(
        users=(user,) * count,
        posts=posts,
        labels=np.zeros(count, dtype=np.float32),
        propensities=np.ones(count, dtype=np.float64),
        positions=np.zeros(count, dtype=np.int64),
        decision_time_ms=np.full(count, at_ms, dtype=np.int64),
        keys=tuple(f"candidate/{row}" for row in posts.post_index.tolist()),
    )
