"""The two towers' serving form: a request's user vector in numpy, posts through torch.

Serving encodes one user per Rank. Through the user tower's torch modules that is
about twenty module calls on one row, each costing more than its arithmetic (and more
again inside a busy request, with the dispatcher's code out of cache). The packed form
computes the same vector from the same weights with a handful of numpy operations;
posts are encoded in batches of thousands (catalogue changes, loads), where the
modules are the right tool, so ``encode_posts`` is the model's own.
Scores agree to float32 rounding (``tests/unit/models/test_packed_serving.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from feedrank.core.feature_schema import FloatArray, PostFeatureBatch, UserFeatures
from feedrank.models.packed_inputs import F32, UserInputTables, weights_of
from feedrank.models.two_tower import TwoTowerModel

NORMALIZE_EPSILON = 1e-12  # torch.nn.functional.normalize's


class PackedTowers:
    """A :class:`TwoTowerModel` as serving asks for it (``RetrievalTowers``)."""

    def __init__(self, model: TwoTowerModel) -> None:
        model.eval()
        self.model = model
        tower = model.user_tower
        self.inputs = UserInputTables.of(
            user_id=tower.user_id,
            language=tower.language,
            country=tower.country,
            age_bucket=tower.age_bucket,
        )
        self.layers = [
            (np.ascontiguousarray(weights_of(layer.weight).T), weights_of(layer.bias))
            for layer in tower.layers.modules()
            if isinstance(layer, nn.Linear)
        ]
        self.topic_map = np.ascontiguousarray(weights_of(tower.topics.weight).T)

    def encode_users(self, users: Sequence[UserFeatures]) -> FloatArray:
        """Unit user vectors, (n, embedding_dim) float32: ``model.encode_users``'s."""
        if len(users) != 1:
            return self.model.encode_users(users)  # batches: the modules' strength
        tensors = self.model.user_tensors(users)
        hidden = self.inputs.row(tensors)
        last = len(self.layers) - 1
        for number, (weights, bias) in enumerate(self.layers):
            hidden = hidden @ weights + bias
            if number < last:
                np.maximum(hidden, 0.0, out=hidden)
        vector = np.concatenate([hidden, _unit(tensors.topic_affinity.numpy()[0]) @ self.topic_map])
        return _unit(vector)[None, :].astype(np.float32, copy=False)

    def encode_posts(self, posts: PostFeatureBatch) -> FloatArray:
        return self.model.encode_posts(posts)


def _unit(vector: F32) -> F32:
    unit: F32 = vector / max(float(np.linalg.norm(vector)), NORMALIZE_EPSILON)
    return unit
