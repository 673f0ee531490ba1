"""Issue 23's first named lever, as an experiment: each post's static share of the
ranker's first layer, computed once per version instead of per request.

The ranker's first layer reads 111 inputs per candidate; 80 of them never change for
a post (its language and country embeddings, topics and content). Their product with
the layer's weights can be computed once per version and kept per post (128 values:
float16, 256 bytes a post, 256 MiB at 1M posts, per served version); a request then
gathers that row and multiplies only the 31 inputs that change (the id embedding,
which is dropped until a post has impressions, the counts, the age and the cross
features). :class:`StaticFirstLayer` scores that way with the served ranker's weights;
``rank_cost`` measures it as an A/B. It is not served: see docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from feedrank.core.feature_schema import (
    CONTENT_DIM,
    NUM_TOPICS,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
)
from feedrank.features.store import InMemoryFeatureStore
from feedrank.models.encoding import evaluating
from feedrank.models.ranker import PROBABILITY_EPSILON, RankerModel, cross_features

BATCH = 65_536  # posts per precomputing step


class StaticFirstLayer:
    """A ranker (``score_retrieved``) whose first layer's static part is precomputed."""

    def __init__(
        self, model: RankerModel, store: InMemoryFeatureStore, rows: IntArray, at_ms: int
    ) -> None:
        self.model = model
        weight = model.post_cross_layer.weight.detach()
        self.static = slice(model.post_id.output_dim, _static_stop(model))
        self.dynamic_weight = torch.cat(
            [weight[:, : self.static.start], weight[:, self.static.stop :]], dim=1
        )
        static_weight = weight[:, self.static]
        self.table = np.zeros((int(rows.max(initial=-1)) + 1, weight.shape[0]), dtype=np.float16)
        with evaluating(model):
            for start in range(0, rows.size, BATCH):
                chunk = rows[start : start + BATCH]
                tensors = model.post_tensors(store.post_features(chunk, at_ms))
                inputs = torch.cat(
                    [
                        model.language(tensors.language),
                        model.country(tensors.country),
                        tensors.topics,
                        tensors.content,
                    ],
                    dim=1,
                )
                self.table[chunk] = (inputs @ static_weight.T).numpy().astype(np.float16)

    @property
    def table_bytes(self) -> int:
        return int(self.table.nbytes)

    def score_retrieved(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        tower_similarity: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """``RankerModel.score_retrieved``, with the static part read from the table."""
        model = self.model
        similarity = torch.from_numpy(np.ascontiguousarray(tower_similarity, dtype=np.float32))
        with evaluating(model):
            users = model.user_tensors([user])
            user_context = model.user_context(
                users, model.context_tensors([request_time_ms], [surface])
            )
            tensors = model.post_tensors(posts, at_ms=request_time_ms)
            dynamic = torch.cat(
                [
                    model.post_id(tensors.id_bucket, tensors.known),
                    tensors.numeric,
                    tensors.age,
                    cross_features(users, tensors, similarity),
                ],
                dim=1,
            )
            static = torch.from_numpy(self.table[posts.post_index].astype(np.float32))
            hidden = model.user_context_layer(user_context) + dynamic @ self.dynamic_weight.T
            logits = model.head(hidden + static).squeeze(1)
            logits = logits + (model.topic_interest(user_context) * tensors.topics).sum(dim=1)
            logits = logits + model.position_bias.weight[0, 0]
        probabilities = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))
        clipped: npt.NDArray[np.float64] = np.clip(
            probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON
        )
        return clipped


def _static_stop(model: RankerModel) -> int:
    """Where the static post inputs end: after the id embedding, two category
    embeddings, the topics and the content (``encoding.post_inputs``' order)."""
    category = model.config.category_embedding_dim
    return model.post_id.output_dim + 2 * category + NUM_TOPICS + CONTENT_DIM
