"""The ranker: a heavier model scoring the ~1,000 retrieved candidates of one request.

Inputs per (user, post) pair: user features, post features (post age at request time
included), cross features (the two-tower similarity, same language, same country,
sensitive post for a user filtering sensitive content, region-locked post at home) and
context (hour of day and day of week of the request, the surface).

Position bias (the "shallow tower" of Zhao et al., RecSys 2019): a logged item's feed
position decides how likely it is to be looked at, independently of how appealing it
is. In training the logged position adds its own learned bias to the logit, so the
rest of the model learns appeal rather than where past policies put a post; serving
scores every candidate at the top position (0), which ranks by appeal alone. The bias
is a learned curve ``-slope * log(1 + position)`` plus a learned offset per position:
a position the training data never showed (a longer feed than the history's) gets the
curve's value, not an untrained zero far above its neighbours.

Next to the MLP, a topic cross adds ``interest(user, context) . topics(post)`` to the
logit: a linear map of the user/context inputs to one affinity per topic, dotted with
the post's topic weights. Whether a post's topics match a user's interests is most of
what decides engagement, and an MLP over summed inputs learns that product slowly; the
explicit cross learns it from the few engagements each user has.

The first layer is split in two: one part over the user and context, one over the post
and cross features, summed before the first ReLU. That is the same function as one
layer over the concatenation, but when scoring one request the user/context part is
computed once and broadcast over the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

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
    AGE_COLUMNS,
    CONTEXT_NUMERIC_COLUMNS,
    POST_NUMERIC_COLUMNS,
    USER_NUMERIC_COLUMNS,
    ContextTensors,
    IdEmbedding,
    PostTensors,
    UserTensors,
    context_tensors,
    evaluating,
    mlp,
    post_inputs,
    post_tensors,
    seeded,
    user_inputs,
    user_tensors,
)

CROSS_FEATURES = (
    "tower_similarity",
    "same_language",
    "same_country",
    "sensitive_for_filtering_user",
    "region_locked_at_home",
    "affinity_match",
)
PROBABILITY_EPSILON = 1e-9  # scores stay strictly inside (0, 1) for propensity maths

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RankerConfig:
    """Shape and regularisation of the ranker; recorded with the weights."""

    tower_dim: int = 64  # two-tower embedding_dim: the vectors passed to ``score``
    user_id_buckets: int = 1 << 18
    post_id_buckets: int = 1 << 19
    surface_buckets: int = 16
    id_embedding_dim: int = 16
    category_embedding_dim: int = 8
    hidden_sizes: tuple[int, ...] = (128, 64, 32)  # measured: 2.5x faster than (256, 128, 64)
    id_dropout: float = 0.1
    position_buckets: int = 32  # logged positions with their own bias; later ones share the last
    # Hour-of-day and weekday inputs. Off, they are zeros (same shapes), and training no
    # longer depends on when the history was logged; on the demo's world they still
    # rank better on (docs/learners.md).
    time_context: bool = True
    seed: int = 0
    # Added after models were first saved: a file without them loads with the default.
    ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"time_context"})

    def __post_init__(self) -> None:
        sizes = (
            self.tower_dim,
            self.position_buckets,
            self.user_id_buckets,
            self.post_id_buckets,
            self.surface_buckets,
            self.id_embedding_dim,
            self.category_embedding_dim,
            *self.hidden_sizes,
        )
        if min(sizes) < 1 or not self.hidden_sizes:
            raise ValueError(f"sizes must be positive and hidden_sizes non-empty: {self}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")


class RankerModel(nn.Module):
    """Pointwise engagement model over user, post, cross and context features."""

    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.config = config
        category_dim = config.category_embedding_dim
        hidden = config.hidden_sizes
        with seeded(config.seed):
            self.user_id = IdEmbedding(
                config.user_id_buckets, config.id_embedding_dim, config.id_dropout
            )
            self.post_id = IdEmbedding(
                config.post_id_buckets, config.id_embedding_dim, config.id_dropout
            )
            # One more row each: "other", every language or country past the schema's.
            self.language = nn.Embedding(len(LANGUAGES) + 1, category_dim)
            self.country = nn.Embedding(len(COUNTRIES) + 1, category_dim)
            self.age_bucket = nn.Embedding(AGE_BUCKETS, category_dim)
            self.surface = nn.Embedding(config.surface_buckets, category_dim)
            user_width = self.user_id.output_dim + 3 * category_dim + len(USER_NUMERIC_COLUMNS)
            user_width += NUM_TOPICS  # topic affinity
            context_width = category_dim + len(CONTEXT_NUMERIC_COLUMNS)
            post_width = self.post_id.output_dim + 2 * category_dim + NUM_TOPICS + CONTENT_DIM
            post_width += len(POST_NUMERIC_COLUMNS) + AGE_COLUMNS + len(CROSS_FEATURES)
            self.user_context_layer = nn.Linear(user_width + context_width, hidden[0])
            self.post_cross_layer = nn.Linear(post_width, hidden[0], bias=False)
            self.head = nn.Sequential(nn.ReLU(), mlp(hidden[0], hidden[1:], 1))
            self.topic_interest = nn.Linear(user_width + context_width, NUM_TOPICS)
            self.position_bias = nn.Embedding(config.position_buckets, 1)
            self.position_slope = nn.Parameter(torch.zeros(()))
        for start_at_zero in (*self.topic_interest.parameters(), self.position_bias.weight):
            nn.init.zeros_(start_at_zero)  # no cross and no position effect until learned

    def forward(
        self,
        users: UserTensors,
        posts: PostTensors,
        context: ContextTensors,
        tower_similarity: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits, shape (n,). ``posts`` and ``tower_similarity`` have n rows; ``users``
        and ``context`` have n rows (training) or 1 row broadcast to all (serving).

        ``positions`` (n,) int64 are the logged 0-based feed positions (training and
        evaluation on logs); without them every row is scored at position 0.
        """
        user_context = self.user_context(users, context)
        post_cross = torch.cat(
            [
                *post_inputs(
                    posts, post_id=self.post_id, language=self.language, country=self.country
                ),
                posts.age,
                cross_features(users, posts, tower_similarity),
            ],
            dim=1,
        )
        hidden = self.user_context_layer(user_context) + self.post_cross_layer(post_cross)
        logits: torch.Tensor = self.head(hidden).squeeze(1)
        interest = self.topic_interest(user_context)  # 1 or n rows of topic affinities
        logits = logits + (interest * posts.topics).sum(dim=1)
        return logits + self._position_logits(positions)

    def user_context(self, users: UserTensors, context: ContextTensors) -> torch.Tensor:
        """The user and context inputs, concatenated: what the first layer's user/context
        part and the topic cross read (1 or n rows)."""
        return torch.cat(
            [
                *user_inputs(
                    users,
                    user_id=self.user_id,
                    language=self.language,
                    country=self.country,
                    age_bucket=self.age_bucket,
                ),
                self.surface(context.surface_bucket),
                context.numeric,
            ],
            dim=1,
        )

    def _position_logits(self, positions: torch.Tensor | None) -> torch.Tensor:
        """The position-bias term: per row for logged positions, else position 0's."""
        if positions is None:
            return self.position_bias.weight[0, 0]  # log(1 + 0) = 0: no curve term
        last = self.config.position_buckets - 1
        offsets: torch.Tensor = self.position_bias(positions.clamp(0, last)).squeeze(1)
        return offsets - self.position_slope * torch.log1p(positions.to(torch.float32))

    def score(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        user_vector: npt.NDArray[np.floating[Any]],
        post_vectors: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """Engagement probabilities, shape (n,), for ``user`` and every post, in one batch.

        ``user_vector`` (tower_dim,) and ``post_vectors`` (n, tower_dim) come from the
        two-tower model; post age is taken at ``request_time_ms``.
        """
        if post_vectors.shape != (len(posts), self.config.tower_dim):
            raise ValueError(
                f"post_vectors has shape {post_vectors.shape}, "
                f"expected ({len(posts)}, {self.config.tower_dim})"
            )
        if user_vector.shape != (self.config.tower_dim,):
            raise ValueError(f"user_vector has shape {user_vector.shape}, expected (tower_dim,)")
        similarity = post_vectors.astype(np.float32, copy=False) @ user_vector.astype(np.float32)
        return self.score_retrieved(user, posts, similarity, request_time_ms, surface=surface)

    def score_retrieved(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        tower_similarity: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """:meth:`score` given the towers' similarity of the user with each post, as
        retrieval computed it (what serving calls: ``CandidateRanker``)."""
        if tower_similarity.shape != (len(posts),):
            raise ValueError(
                f"tower_similarity has shape {tower_similarity.shape}, expected ({len(posts)},)"
            )
        similarity = tower_similarity.astype(np.float32, copy=False)
        with evaluating(self):
            logits = self(
                self.user_tensors([user]),
                post_tensors(posts, id_buckets=self.config.post_id_buckets, at_ms=request_time_ms),
                self.context_tensors([request_time_ms], [surface]),
                torch.from_numpy(np.ascontiguousarray(similarity)),
            )
        probabilities = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))
        clipped: npt.NDArray[np.float64] = np.clip(
            probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON
        )
        return clipped

    def user_tensors(self, users: Sequence[UserFeatures]) -> UserTensors:
        return user_tensors(users, id_buckets=self.config.user_id_buckets)

    def post_tensors(self, posts: PostFeatureBatch, at_ms: int | None = None) -> PostTensors:
        return post_tensors(posts, id_buckets=self.config.post_id_buckets, at_ms=at_ms)

    def context_tensors(
        self, request_times_ms: Sequence[int], surfaces: Sequence[str]
    ) -> ContextTensors:
        context = context_tensors(
            request_times_ms, surfaces, surface_buckets=self.config.surface_buckets
        )
        if self.config.time_context:
            return context
        return ContextTensors(context.surface_bucket, torch.zeros_like(context.numeric))


def cross_features(
    users: UserTensors, posts: PostTensors, tower_similarity: torch.Tensor
) -> torch.Tensor:
    """The CROSS_FEATURES columns, (n, 6); user rows broadcast when there is one user."""
    same_language = users.language == posts.language
    same_country = users.country == posts.country
    columns = [
        tower_similarity.to(torch.float32),
        same_language,
        same_country,
        posts.sensitive & users.sensitive_filter,
        posts.region_locked & same_country,
        _affinity_match(users.topic_affinity, posts.topics),
    ]
    return torch.stack([column.to(torch.float32) for column in columns], dim=1)


def _affinity_match(affinity: torch.Tensor, topics: torch.Tensor) -> torch.Tensor:
    """Cosine of the user's topic affinity and each post's topics, in [0, 1] (0 without
    history): how well a post matches what the user engaged with before."""
    dot = (affinity * topics).sum(dim=1)
    norms = affinity.norm(dim=1) * topics.norm(dim=1)
    match: torch.Tensor = dot / norms.clamp_min(1e-6)
    return match
