"""Features to tensors, in one place for the two towers, the ranker, serving and learners.

:func:`user_tensors`, :func:`post_tensors` and :func:`context_tensors` turn the schema's
types into batches of torch tensors: ids hashed into buckets with a stable hash (the
same bucket in every process and on every machine), categorical indices, numeric
columns brought to roughly unit scale, topic weights and content embeddings.
:class:`IdEmbedding` and :func:`mlp` are the input and hidden layers the models share.

Anything here that changes what a model sees must bump :data:`ENCODING_VERSION`, which
model files record next to the schema hash.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from feedrank.core.feature_schema import (
    COUNTRIES,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    LANGUAGES,
    NUM_TOPICS,
    PostFeatureBatch,
    UserFeatures,
    stable_digest,
)

ENCODING_VERSION = 7  # 2: position bias; 3: user topic affinity; 4: two-tower topic subspace;
# 5: engagement rates on a log scale, topic affinity as square roots of shares, linear age,
# user affinity_engagements; 6: an "other" language and country (catalogue codes past the
# schema's); 7: the post-id embedding hashes the stable key of the post's string id
# (``post_key``), not its catalogue row, which differs between a learner and a server

USER_NUMERIC_COLUMNS = (
    "activity",
    "follow_count",
    "engagements_7d",
    "affinity_engagements",
    "sensitive_filter",
)
POST_NUMERIC_COLUMNS = (
    "creator_followers",
    "creator_engagement_rate",
    "impressions",
    "engagement_rate",
    "sensitive",
    "region_locked",
)
CONTEXT_NUMERIC_COLUMNS = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")

LOG_COUNT_SCALE = 10.0  # log1p counts reach ~10-15; divide to land near [0, 1.5]
LOG_AGE_SCALE = 5.0  # log1p(age in hours): one week is ~5.1
LINEAR_AGE_SCALE_HOURS = 168.0  # age in weeks: decay over hours is exponential in age
AGE_COLUMNS = 2  # log1p(age) / LOG_AGE_SCALE and age / LINEAR_AGE_SCALE_HOURS
# Engagement rates act multiplicatively (a creator twice as engaging), so they go in as
# logs, centred near a typical 5 % rate: log(0.05) is about -3.
LOG_RATE_OFFSET = 3.0
RATE_FLOOR = 1e-4
_MS_PER_HOUR = 3_600_000
_HOURS_PER_DAY = 24
_DAYS_PER_WEEK = 7
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class UserTensors:
    """A batch of users: one row per user (or per training example)."""

    id_bucket: torch.Tensor  # (n,) int64
    known: torch.Tensor  # (n,) bool: the id embedding may be used
    language: torch.Tensor  # (n,) int64
    country: torch.Tensor  # (n,) int64
    age_bucket: torch.Tensor  # (n,) int64
    sensitive_filter: torch.Tensor  # (n,) bool
    numeric: torch.Tensor  # (n, len(USER_NUMERIC_COLUMNS)) float32
    # (n, NUM_TOPICS) float32: square roots of the topic shares (a unit vector), or zeros
    # without history. Shares are counts of engagements per topic; the square root is
    # the variance-stabilising transform of counts, and its dot product with a post's
    # topics (a Hellinger-style match) ranks posts by topic fit far better than the raw
    # shares, which let one dominant topic drown the user's other interests.
    topic_affinity: torch.Tensor

    def __len__(self) -> int:
        return int(self.id_bucket.shape[0])


@dataclass(frozen=True)
class PostTensors:
    """A batch of posts: one row per post."""

    id_bucket: torch.Tensor  # (n,) int64
    known: torch.Tensor  # (n,) bool: the post has impressions, so its id was trainable
    language: torch.Tensor  # (n,) int64
    country: torch.Tensor  # (n,) int64
    region_locked: torch.Tensor  # (n,) bool
    sensitive: torch.Tensor  # (n,) bool
    topics: torch.Tensor  # (n, NUM_TOPICS) float32
    content: torch.Tensor  # (n, CONTENT_DIM) float32
    numeric: torch.Tensor  # (n, len(POST_NUMERIC_COLUMNS)) float32
    age: torch.Tensor  # (n, AGE_COLUMNS) float32: log and linear post age

    def __len__(self) -> int:
        return int(self.id_bucket.shape[0])

    def rows(self, start: int, stop: int) -> PostTensors:
        """Rows ``start:stop`` as views (no copy)."""
        return PostTensors(
            **{item.name: getattr(self, item.name)[start:stop] for item in fields(self)}
        )


@dataclass(frozen=True)
class ContextTensors:
    """Request context: one row per request (or per training example)."""

    surface_bucket: torch.Tensor  # (n,) int64
    numeric: torch.Tensor  # (n, len(CONTEXT_NUMERIC_COLUMNS)) float32

    def __len__(self) -> int:
        return int(self.surface_bucket.shape[0])


def hash_strings(values: Sequence[str], buckets: int) -> IntArray:
    """Stable buckets for string ids (blake2b, independent of PYTHONHASHSEED)."""
    digests = np.fromiter(
        (stable_digest(value) for value in values), dtype=np.uint64, count=len(values)
    )
    return (digests % np.uint64(buckets)).astype(np.int64)


def hash_indices(indices: npt.NDArray[np.integer[Any]], buckets: int) -> IntArray:
    """Stable buckets for integer ids: vectorised splitmix64, for millions of rows at once."""
    mixed = indices.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    return (mixed % np.uint64(buckets)).astype(np.int64)


def user_tensors(users: Sequence[UserFeatures], *, id_buckets: int) -> UserTensors:
    """Tensors for ``users``; unknown users (``known=False``) never use their id.

    Rows that are the same object (the examples of one decision share their user) are
    encoded once and repeated.
    """
    row_of: dict[int, int] = {}  # id(user) -> row in ``distinct``
    distinct: list[UserFeatures] = []
    rows: list[int] = []
    for user in users:
        row = row_of.get(id(user))
        if row is None:
            row = row_of[id(user)] = len(distinct)
            distinct.append(user)
        rows.append(row)
    encoded = _distinct_user_tensors(distinct, id_buckets)
    if len(distinct) == len(users):
        return encoded
    index = torch.tensor(rows, dtype=torch.int64)
    return UserTensors(
        **{item.name: getattr(encoded, item.name)[index] for item in fields(encoded)}
    )


def _distinct_user_tensors(users: Sequence[UserFeatures], id_buckets: int) -> UserTensors:
    def column(name: str) -> list[float]:
        return [float(getattr(user, name)) for user in users]

    numeric = np.array([column(name) for name in USER_NUMERIC_COLUMNS], dtype=np.float32).T
    numeric = numeric.reshape(len(users), len(USER_NUMERIC_COLUMNS))
    numeric[:, :4] /= LOG_COUNT_SCALE  # the log1p counts; sensitive_filter stays 0/1
    affinity = np.zeros((len(users), NUM_TOPICS), dtype=np.float32)
    for row, user in enumerate(users):
        if user.topic_affinity:
            affinity[row] = user.topic_affinity
    np.sqrt(affinity, out=affinity)  # see UserTensors.topic_affinity
    return UserTensors(
        id_bucket=torch.from_numpy(hash_strings([user.user_id for user in users], id_buckets)),
        known=torch.tensor([user.known for user in users], dtype=torch.bool),
        language=torch.tensor(
            [LANGUAGE_VOCABULARY.model_code(user.language) for user in users], dtype=torch.int64
        ),
        country=torch.tensor(
            [COUNTRY_VOCABULARY.model_code(user.country) for user in users], dtype=torch.int64
        ),
        age_bucket=torch.tensor([user.age_bucket for user in users], dtype=torch.int64),
        sensitive_filter=torch.tensor([user.sensitive_filter for user in users]),
        numeric=torch.from_numpy(numeric),
        topic_affinity=torch.from_numpy(affinity),
    )


def post_tensors(
    posts: PostFeatureBatch, *, id_buckets: int, at_ms: int | None = None
) -> PostTensors:
    """Tensors for ``posts``, with post age moved forward from ``as_of_ms`` to ``at_ms``.

    A post with no impressions yet cannot have been trained on, so it is not ``known``
    and its id embedding is dropped; the same rule holds in training and serving. The id
    bucket comes from ``post_key`` (the post's string id), never from its row.
    """
    elapsed_hours = 0.0 if at_ms is None else (at_ms - posts.as_of_ms) / _MS_PER_HOUR
    age_hours = np.maximum(posts.age_hours.astype(np.float32) + np.float32(elapsed_hours), 0.0)
    numeric = np.stack(
        [
            posts.creator_followers / LOG_COUNT_SCALE,
            log_rate(posts.creator_engagement_rate),
            posts.impressions / LOG_COUNT_SCALE,
            log_rate(posts.engagement_rate),
            posts.sensitive,
            posts.region_locked,
        ],
        axis=1,
    ).astype(np.float32)
    return PostTensors(
        id_bucket=torch.from_numpy(hash_indices(posts.post_key, id_buckets)),
        known=torch.from_numpy(posts.impressions > 0),
        language=torch.from_numpy(np.minimum(posts.language, len(LANGUAGES)).astype(np.int64)),
        country=torch.from_numpy(np.minimum(posts.country, len(COUNTRIES)).astype(np.int64)),
        region_locked=torch.from_numpy(posts.region_locked.astype(np.bool_, copy=False)),
        sensitive=torch.from_numpy(posts.sensitive.astype(np.bool_, copy=False)),
        topics=_float_tensor(posts.topics),
        content=_float_tensor(posts.content),
        numeric=torch.from_numpy(numeric),
        age=torch.from_numpy(
            np.stack([np.log1p(age_hours) / LOG_AGE_SCALE, age_hours / LINEAR_AGE_SCALE_HOURS], 1)
        ),
    )


def log_rate(rates: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """Engagement rates on a log scale near zero for a typical rate (5 %)."""
    floored = np.maximum(rates.astype(np.float32, copy=False), np.float32(RATE_FLOOR))
    logs: npt.NDArray[np.float32] = np.log(floored) + np.float32(LOG_RATE_OFFSET)
    return logs


def context_tensors(
    request_times_ms: Sequence[int], surfaces: Sequence[str], *, surface_buckets: int
) -> ContextTensors:
    """Hour of day and day of week (UTC, as points on a circle) and the hashed surface."""
    hours = np.array(request_times_ms, dtype=np.int64) // _MS_PER_HOUR
    hour_angle = (hours % _HOURS_PER_DAY) * (2 * math.pi / _HOURS_PER_DAY)
    weekday = (hours // _HOURS_PER_DAY + _EPOCH_WEEKDAY) % _DAYS_PER_WEEK
    weekday_angle = weekday * (2 * math.pi / _DAYS_PER_WEEK)
    numeric = np.stack(
        [np.sin(hour_angle), np.cos(hour_angle), np.sin(weekday_angle), np.cos(weekday_angle)],
        axis=1,
    ).astype(np.float32)
    return ContextTensors(
        surface_bucket=torch.from_numpy(hash_strings(list(surfaces), surface_buckets)),
        numeric=torch.from_numpy(numeric.reshape(len(hours), len(CONTEXT_NUMERIC_COLUMNS))),
    )


def _float_tensor(values: npt.NDArray[np.floating[Any]]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


class IdEmbedding(nn.Module):
    """A hashed-id embedding that cold rows do without.

    Rows that are not ``known`` get zeros; in training, known rows are also dropped with
    probability ``dropout`` (id dropout), so the feature path learns to carry the signal
    on its own. The output ends with a 0/1 column saying whether the id was used.
    """

    def __init__(self, buckets: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.table = nn.Embedding(buckets, dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.dropout = dropout

    @property
    def output_dim(self) -> int:
        return self.table.embedding_dim + 1

    def forward(self, id_bucket: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        keep = known
        if self.training and self.dropout > 0:
            keep = keep & (torch.rand(known.shape) >= self.dropout)
        keep_column = keep.unsqueeze(1).to(self.table.weight.dtype)
        return torch.cat([self.table(id_bucket) * keep_column, keep_column], dim=1)


def user_inputs(
    users: UserTensors,
    *,
    user_id: IdEmbedding,
    language: nn.Embedding,
    country: nn.Embedding,
    age_bucket: nn.Embedding,
) -> list[torch.Tensor]:
    """The user-side inputs the user tower and the ranker both start from, in one order."""
    return [
        user_id(users.id_bucket, users.known),
        language(users.language),
        country(users.country),
        age_bucket(users.age_bucket),
        users.numeric,
        users.topic_affinity,
    ]


def post_inputs(
    posts: PostTensors, *, post_id: IdEmbedding, language: nn.Embedding, country: nn.Embedding
) -> list[torch.Tensor]:
    """The post-side inputs the post tower and the ranker both start from, in one order."""
    return [
        post_id(posts.id_bucket, posts.known),
        language(posts.language),
        country(posts.country),
        posts.topics,
        posts.content,
        posts.numeric,
    ]


def mlp(input_dim: int, hidden_sizes: Sequence[int], output_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between them, ending in a plain linear output."""
    layers: list[nn.Module] = []
    width = input_dim
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block; the training flag is restored after.

    A module already in eval mode (every served model) is not walked at all: toggling
    the flag recursively costs more than a small forward pass.
    """
    was_training = module.training
    if was_training:
        module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            module.train(True)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded for the block and restored after (seeded model init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
