"""The two towers' serving form: a request's user vector in numpy, posts through torch.

Serving encodes one user per Rank. Through the user tower's torch modules that is
about twenty module calls on one row, each costing more than its arithmetic (and more
again inside a busy request, with the dispatcher's code out of cache). The packed form
computes the same vector from the same weights with a handful of numpy operations;
posts are encoded in batches of thousands (catalogue changes, loads), where the
modules are the right tool, so ``encode_posts`` is the model's own.
Vectors agree to float32 rounding (``tests/unit/models/test_packed_serving.py``).

The user's inputs are built as ``encoding.user_inputs`` builds them, in the same order,
from the same tables (numpy views of the modules' weights).
The layers' weights are copied when packed: a served model never trains, and one that
did would need packing again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from feedrank.core.feature_schema import FloatArray, PostFeatureBatch, UserFeatures
from feedrank.models.encoding import UserTensors
from feedrank.models.two_tower import TwoTowerModel

NORMALIZE_EPSILON = 1e-12  # torch.nn.functional.normalize's

F32 = npt.NDArray[np.float32]


def weights_of(parameter: torch.Tensor) -> F32:
    """A parameter's values as a numpy array sharing its memory."""
    values: F32 = parameter.detach().numpy()
    return values


class PackedTowers:
    """A :class:`TwoTowerModel` as serving asks for it (``RetrievalTowers``)."""

    def __init__(self, model: TwoTowerModel) -> None:
        model.eval()
        self.model = model
        tower = model.user_tower
        # The tables ``encoding.user_inputs`` reads, as views of the modules' weights.
        self.user_id_table = weights_of(tower.user_id.table.weight)
        self.language_table = weights_of(tower.language.weight)
        self.country_table = weights_of(tower.country.weight)
        self.age_table = weights_of(tower.age_bucket.weight)
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
        hidden = self._inputs(tensors)
        last = len(self.layers) - 1
        for number, (weights, bias) in enumerate(self.layers):
            hidden = hidden @ weights + bias
            if number < last:
                np.maximum(hidden, 0.0, out=hidden)
        vector = np.concatenate([hidden, _unit(tensors.topic_affinity.numpy()[0]) @ self.topic_map])
        return _unit(vector)[None, :].astype(np.float32, copy=False)

    def encode_posts(self, posts: PostFeatureBatch) -> FloatArray:
        return self.model.encode_posts(posts)

    def _inputs(self, users: UserTensors) -> F32:
        """``torch.cat(user_inputs(users, ...), dim=1)[0]`` of a one-user batch."""
        known = float(users.known[0])
        row: F32 = np.concatenate(
            [
                self.user_id_table[int(users.id_bucket[0])] * np.float32(known),
                np.array([known], dtype=np.float32),
                self.language_table[int(users.language[0])],
                self.country_table[int(users.country[0])],
                self.age_table[int(users.age_bucket[0])],
                users.numeric.numpy()[0],
                users.topic_affinity.numpy()[0],
            ]
        ).astype(np.float32, copy=False)
        return row


def _unit(vector: F32) -> F32:
    unit: F32 = vector / max(float(np.linalg.norm(vector)), NORMALIZE_EPSILON)
    return unit
