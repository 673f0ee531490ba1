"""The ranker's serving path: :meth:`RankerModel.score` in numpy, on weights packed once.

A served Rank scores ~1,000 candidates with one model version, thousands of times a
second. Through torch modules that costs about three times its matrix products: every
module call, embedding lookup and concatenation has a fixed cost, and the post side
builds an (n, 111) input of which 16 columns are two tiny embedding tables. The packed
form computes the same function with fewer, larger steps:

* the language and country embeddings are folded through their share of the first
  layer once per version (``table @ W.T``: one row of first-layer output per language
  or country), so a candidate's contribution is a row lookup, not an embedding, a
  concatenation and 16 multiply-adds per hidden unit;
* the other post and cross inputs go into one preallocated-width matrix and through
  one matrix product; the user and context side is computed once per request (one row,
  through the model's own modules) and broadcast, as ``RankerModel.forward`` does;
* the head's layers are plain ``x @ W.T + b`` with in-place ReLUs.

Same inputs, same function: the encodings come from ``feedrank.models.encoding`` and
the cross features from the ranker's own function, so only the arithmetic's order
differs (scores agree to float32 rounding; ``tests/unit/models/test_packed_ranker.py``).
The weights are read from the model when packed: pack again after changing them.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from feedrank.core.feature_schema import PostFeatureBatch, UserFeatures
from feedrank.models.encoding import ContextTensors, PostTensors, UserTensors
from feedrank.models.packed_inputs import F32, UserInputTables, weights_of
from feedrank.models.ranker import PROBABILITY_EPSILON, RankerModel


class PackedRanker:
    """Scores like ``model.score`` (the :class:`CandidateRanker` interface), in numpy."""

    def __init__(self, model: RankerModel) -> None:
        model.eval()
        self.model = model
        self.config = model.config
        with torch.no_grad():
            self._pack_post_side(model)
            self._pack_user_side(model)
            linears = [module for module in model.head.modules() if isinstance(module, nn.Linear)]
            self.head = [
                (np.ascontiguousarray(weights_of(layer.weight).T), weights_of(layer.bias).copy())
                for layer in linears
            ]
            self.position_logit = float(model.position_bias.weight[0, 0])
        first_width = (
            self.post_weights.shape[0] + 1 + len(self.language_rows) + len(self.country_rows)
        )
        widths = [first_width, self.hidden_width, *(bias.size for _, bias in self.head)]
        self._scratch = ScratchBuffers(widths)

    def _pack_post_side(self, model: RankerModel) -> None:
        """The first layer's post part: language and country folded into row tables,
        the id embedding and every other post input as one dense block."""
        first = weights_of(model.post_cross_layer.weight)  # (hidden, post inputs)
        id_width = model.post_id.output_dim  # the embedding and its "used" column
        language, country = _category_slices(id_width, model.config.category_embedding_dim, 2)
        self.language_rows = _fold(model.language, first[:, language])
        self.country_rows = _fold(model.country, first[:, country])
        self.post_id_table = weights_of(model.post_id.table.weight)  # shared with the model
        self.post_id_dim = model.post_id.table.embedding_dim
        dense = np.concatenate([first[:, :id_width], first[:, country.stop :]], axis=1)
        self.post_weights = np.ascontiguousarray(dense.T)  # (dense post inputs, hidden)

    def _pack_user_side(self, model: RankerModel) -> None:
        """The first layer's user/context part and the topic cross's map, stacked: both
        read the same inputs (one row per request)."""
        self.user_inputs = UserInputTables.of(
            user_id=model.user_id,
            language=model.language,
            country=model.country,
            age_bucket=model.age_bucket,
        )
        self.surface_table = weights_of(model.surface.weight)
        weights = np.concatenate(
            [weights_of(model.user_context_layer.weight), weights_of(model.topic_interest.weight)]
        )
        self.user_weights = np.ascontiguousarray(weights.T)  # (user/context inputs, both)
        self.user_bias = np.concatenate(
            [weights_of(model.user_context_layer.bias), weights_of(model.topic_interest.bias)]
        )
        self.hidden_width = model.user_context_layer.out_features

    def score(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        tower_similarity: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """Engagement probabilities, shape (n,): ``RankerModel.score``'s, computed here.

        ``tower_similarity`` (n,) is the user vector's inner product with each post's,
        which retrieval has already computed (``RankerModel.score`` takes the vectors)."""
        model = self.model
        if tower_similarity.shape != (len(posts),):
            raise ValueError(
                f"tower_similarity has shape {tower_similarity.shape}, expected ({len(posts)},)"
            )
        similarity = tower_similarity.astype(np.float32, copy=False)
        users = model.user_tensors([user])
        context = model.context_tensors([request_time_ms], [surface])
        user_term, interest = self._user_terms(users, context)
        tensors = model.post_tensors(posts, at_ms=request_time_ms)
        known, topics = tensors.known.numpy(), tensors.topics.numpy()
        # One product does the whole first layer: the dense inputs, then a 1 that picks
        # the request's user term, then one-hot language and country columns that pick
        # their folded rows (a weight matrix stacked per request: 60 KB).
        count, dense = len(posts), self.post_weights.shape[0]
        weights = np.concatenate(
            [self.post_weights, user_term[None, :], self.language_rows, self.country_rows]
        )
        # Each thread reuses its own buffers: fresh ones would cost page faults and cold
        # cache lines on every request (they are hundreds of KB at 1,000 candidates).
        inputs, *outputs = self._scratch.arrays(count)
        inputs[:, dense + 1 :] = 0.0
        width = self.post_id_dim
        embedded = self.post_id_table[tensors.id_bucket.numpy()]
        np.multiply(embedded, known[:, None], out=inputs[:, :width])
        inputs[:, width] = known
        start = width + 1
        for block in (
            topics,
            tensors.content.numpy(),
            tensors.numeric.numpy(),
            tensors.age.numpy(),
        ):
            inputs[:, start : start + block.shape[1]] = block
            start += block.shape[1]
        _cross_columns(users, tensors, similarity, out=inputs[:, start:dense])
        inputs[:, dense] = 1.0
        rows = np.arange(count)
        inputs[rows, dense + 1 + tensors.language.numpy()] = 1.0
        inputs[rows, dense + 1 + len(self.language_rows) + tensors.country.numpy()] = 1.0
        hidden = np.matmul(inputs, weights, out=outputs[0])
        for (weights, bias), output in zip(self.head, outputs[1:], strict=True):
            np.maximum(hidden, 0.0, out=hidden)
            hidden = np.matmul(hidden, weights, out=output)
            hidden += bias
        logits = hidden[:, 0] + topics @ interest + self.position_logit
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        clipped: npt.NDArray[np.float64] = np.clip(
            probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON
        )
        return clipped

    def _user_terms(self, users: UserTensors, context: ContextTensors) -> tuple[F32, F32]:
        """The first layer's user/context term (hidden,) and the topic interest (topics,)
        of one request: ``RankerModel.user_context`` through both layers, in numpy."""
        inputs = np.concatenate(
            [
                self.user_inputs.row(users),
                self.surface_table[int(context.surface_bucket[0])],
                context.numeric.numpy()[0],
            ]
        )
        terms = inputs @ self.user_weights + self.user_bias
        return terms[: self.hidden_width], terms[self.hidden_width :]


class ScratchBuffers:
    """Per-thread float32 arrays of fixed widths, grown to the rows asked for."""

    def __init__(self, widths: list[int]) -> None:
        self.widths = widths
        self._local = threading.local()

    def arrays(self, rows: int) -> list[F32]:
        """One (rows, width) array per width, this thread's own (contents undefined)."""
        held: list[F32] | None = getattr(self._local, "arrays", None)
        if held is None or held[0].shape[0] < rows:
            held = [np.empty((max(rows, 1024), width), dtype=np.float32) for width in self.widths]
            self._local.arrays = held
        return [array[:rows] for array in held]


def _cross_columns(users: UserTensors, posts: PostTensors, similarity: F32, *, out: F32) -> None:
    """``ranker.cross_features`` of one user and n posts, written into ``out`` (n, 6)."""
    same_country = posts.country.numpy() == int(users.country[0])
    affinity = users.topic_affinity.numpy()[0]
    topics = posts.topics.numpy()
    norms = np.sqrt(np.einsum("ij,ij->i", topics, topics)) * np.float32(np.linalg.norm(affinity))
    out[:, 0] = similarity
    out[:, 1] = posts.language.numpy() == int(users.language[0])
    out[:, 2] = same_country
    out[:, 3] = posts.sensitive.numpy() & bool(users.sensitive_filter[0])
    out[:, 4] = posts.region_locked.numpy() & same_country
    out[:, 5] = (topics @ affinity) / np.maximum(norms, np.float32(1e-6))


def _fold(embedding: nn.Embedding, weights: F32) -> F32:
    """One row of layer output per category: the embedding table through ``weights``."""
    return np.ascontiguousarray(weights_of(embedding.weight) @ weights.T)


def _category_slices(start: int, width: int, count: int) -> list[slice]:
    """``count`` adjacent embedding blocks of ``width`` columns from ``start``."""
    return [slice(start + width * item, start + width * (item + 1)) for item in range(count)]
