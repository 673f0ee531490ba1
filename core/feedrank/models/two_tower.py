"""The two-tower retrieval model: a user tower and a post tower meeting in a dot product.

Each tower ends in an L2-normalised ``embedding_dim`` vector, so the similarity of a
user and a post is their cosine and an inner-product ANN index over post vectors
retrieves in model order. The vector is an MLP over the side's features next to a
**topic subspace** (``topic_dims``, see :class:`TopicMap`): the user's topic affinity or
the post's topics through a learned map that starts as the identity. Whether a post's
topics match a user's history is most of what decides engagement; an MLP pair learns
that bilinear form only from many engagements, while the subspace scores it from the
first request (an untrained model retrieves by topic match) and training tunes it. The logit is that
similarity times a learned positive scale plus a learned bias (monotone in the
similarity), and the probability is its sigmoid.

Cold start: the hashed-id embedding is zeroed for users and posts the model cannot
have trained on (``UserFeatures.known`` false; posts with no impressions) and, in
training, dropped at random (``id_dropout``), so features alone give a useful vector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional

from feedrank.core.feature_schema import (
    AGE_BUCKETS,
    CONTENT_DIM,
    COUNTRIES,
    LANGUAGES,
    NUM_TOPICS,
    PostFeatureBatch,
    UserFeatures,
)
from feedrank.models.encoding import (
    POST_NUMERIC_COLUMNS,
    USER_NUMERIC_COLUMNS,
    IdEmbedding,
    PostTensors,
    UserTensors,
    evaluating,
    mlp,
    post_inputs,
    post_tensors,
    seeded,
    user_inputs,
    user_tensors,
)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TwoTowerConfig:
    """Shape and regularisation of the two towers; recorded with the weights."""

    embedding_dim: int = 64
    user_id_buckets: int = 1 << 18
    post_id_buckets: int = 1 << 19
    id_embedding_dim: int = 16
    category_embedding_dim: int = 8
    hidden_sizes: tuple[int, ...] = (128, 128)
    id_dropout: float = 0.1  # chance a known id is dropped in training (cold-start path)
    initial_logit_scale: float = 10.0  # cosine in [-1, 1] times this is the initial logit
    # Dimensions of each vector given to the topic subspace (at most NUM_TOPICS, fewer
    # than embedding_dim); 0 turns it off. See the module docstring.
    topic_dims: int = NUM_TOPICS
    initial_topic_weight: float = 2.0  # the topic maps start as this times the identity
    encode_batch_size: int = 65_536  # rows per forward pass in encode_posts
    seed: int = 0  # weight initialisation

    def __post_init__(self) -> None:
        sizes = (
            self.embedding_dim,
            self.user_id_buckets,
            self.post_id_buckets,
            self.id_embedding_dim,
            self.category_embedding_dim,
            self.encode_batch_size,
            *self.hidden_sizes,
        )
        if min(sizes) < 1:
            raise ValueError(f"sizes and bucket counts must be positive: {self}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.initial_logit_scale <= 0:
            raise ValueError(f"initial_logit_scale must be positive: {self.initial_logit_scale}")
        if not 0 <= self.topic_dims < self.embedding_dim or self.topic_dims > NUM_TOPICS:
            raise ValueError(
                f"topic_dims must be in [0, min(embedding_dim - 1, {NUM_TOPICS})]: {self}"
            )


class TopicMap(nn.Module):
    """A tower's topic subspace: its topic weights, as a unit vector, times a learned map.

    Both towers' maps start as the same matrix (``initial_weight`` times the identity
    when the subspace has NUM_TOPICS dimensions, else the same seeded orthonormal
    projection), so before any training the subspace already scores the cosine of a
    user's topic affinity and a post's topics: retrieval starts from topic match and
    learns from there. A user without history (all-zero affinity) gets zeros here.
    """

    def __init__(self, dims: int, initial_weight: float, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        if dims == NUM_TOPICS:
            start = torch.eye(NUM_TOPICS)
        else:
            gaussian = torch.randn(NUM_TOPICS, NUM_TOPICS, generator=generator)
            start = torch.linalg.qr(gaussian)[0][:dims]  # orthonormal rows
        self.weight = nn.Parameter(initial_weight * start)

    def forward(self, topic_weights: torch.Tensor) -> torch.Tensor:
        return functional.normalize(topic_weights, dim=1) @ self.weight.T


class UserTower(nn.Module):
    """Hashed user id + language, country, age bucket + numeric activity -> unit vector."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        category_dim = config.category_embedding_dim
        self.user_id = IdEmbedding(
            config.user_id_buckets, config.id_embedding_dim, config.id_dropout
        )
        # One more row each: "other", every language or country past the schema's.
        self.language = nn.Embedding(len(LANGUAGES) + 1, category_dim)
        self.country = nn.Embedding(len(COUNTRIES) + 1, category_dim)
        self.age_bucket = nn.Embedding(AGE_BUCKETS, category_dim)
        width = self.user_id.output_dim + 3 * category_dim + len(USER_NUMERIC_COLUMNS)
        width += NUM_TOPICS  # topic affinity
        topic_dims = config.topic_dims
        self.layers = mlp(width, config.hidden_sizes, config.embedding_dim - topic_dims)
        self.topics = TopicMap(topic_dims, config.initial_topic_weight, config.seed)

    def forward(self, users: UserTensors) -> torch.Tensor:
        inputs = torch.cat(
            user_inputs(
                users,
                user_id=self.user_id,
                language=self.language,
                country=self.country,
                age_bucket=self.age_bucket,
            ),
            dim=1,
        )
        vector = torch.cat([self.layers(inputs), self.topics(users.topic_affinity)], dim=1)
        return functional.normalize(vector, dim=1)


class PostTower(nn.Module):
    """Hashed post id + language, country + topics, content + creator/engagement -> unit vector.

    Post age is left out on purpose: post vectors sit in the ANN index for hours, and
    freshness is the ranker's (and the retrieval filter's) business.
    """

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        category_dim = config.category_embedding_dim
        self.post_id = IdEmbedding(
            config.post_id_buckets, config.id_embedding_dim, config.id_dropout
        )
        # One more row each: "other", every language or country past the schema's.
        self.language = nn.Embedding(len(LANGUAGES) + 1, category_dim)
        self.country = nn.Embedding(len(COUNTRIES) + 1, category_dim)
        width = self.post_id.output_dim + 2 * category_dim
        width += NUM_TOPICS + CONTENT_DIM + len(POST_NUMERIC_COLUMNS)
        topic_dims = config.topic_dims
        self.layers = mlp(width, config.hidden_sizes, config.embedding_dim - topic_dims)
        self.topics = TopicMap(topic_dims, config.initial_topic_weight, config.seed)

    def forward(self, posts: PostTensors) -> torch.Tensor:
        inputs = torch.cat(
            post_inputs(posts, post_id=self.post_id, language=self.language, country=self.country),
            dim=1,
        )
        vector = torch.cat([self.layers(inputs), self.topics(posts.topics)], dim=1)
        return functional.normalize(vector, dim=1)


class TwoTowerModel(nn.Module):
    """User and post towers; ``forward`` gives the logit of each (user, post) row pair."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        with seeded(config.seed):
            self.user_tower = UserTower(config)
            self.post_tower = PostTower(config)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(config.initial_logit_scale)))
        self.logit_bias = nn.Parameter(torch.zeros(()))

    def forward(self, users: UserTensors, posts: PostTensors) -> torch.Tensor:
        """Logits, shape (n,), for row i of ``users`` paired with row i of ``posts``."""
        similarity = (self.user_tower(users) * self.post_tower(posts)).sum(dim=1)
        return self.logits_from_similarity(similarity)

    def logits_from_similarity(self, similarity: torch.Tensor) -> torch.Tensor:
        """Scale and shift cosine similarities (any shape) into logits, e.g. for the
        (users x posts) matrix of in-batch negatives."""
        return similarity * self.log_logit_scale.exp() + self.logit_bias

    def user_tensors(self, users: Sequence[UserFeatures]) -> UserTensors:
        return user_tensors(users, id_buckets=self.config.user_id_buckets)

    def post_tensors(self, posts: PostFeatureBatch) -> PostTensors:
        return post_tensors(posts, id_buckets=self.config.post_id_buckets)

    def encode_users(self, users: Sequence[UserFeatures]) -> FloatArray:
        """Unit user vectors, shape (n, embedding_dim), float32; no grad, eval mode."""
        with evaluating(self):
            vectors = self.user_tower(self.user_tensors(users))
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def encode_posts(self, posts: PostFeatureBatch) -> FloatArray:
        """Unit post vectors, shape (n, embedding_dim), float32, in batches of
        ``config.encode_batch_size`` rows (a 1M-post catalogue fits comfortably)."""
        tensors = self.post_tensors(posts)
        vectors = np.empty((len(tensors), self.config.embedding_dim), dtype=np.float32)
        step = self.config.encode_batch_size
        with evaluating(self):
            for start in range(0, len(tensors), step):
                stop = min(start + step, len(tensors))
                vectors[start:stop] = self.post_tower(tensors.rows(start, stop)).numpy()
        return vectors
