"""Which examples train, with what weight, and which validate.

* :func:`split_by_time`: the latest ``share`` of decisions validate (training never sees
  the future of its validation data).
* :func:`balance`: negative downsampling at ``negative_rate``, then weights that give
  the kept positives and negatives equal total weight, recorded per example. A model
  trained on them sees the odds multiplied by ``(w+ / w-) / rate``; ``prior_shift`` is
  the log of that factor, subtracted from its logits for calibrated probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.learners.examples import ExampleBatch

FloatArray = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WeightedExamples:
    examples: ExampleBatch
    weights: FloatArray  # one per example
    prior_shift: float  # log(w+ / w-): subtract from logits for calibrated probabilities


def split_by_time(batch: ExampleBatch, share: float) -> tuple[ExampleBatch, ExampleBatch]:
    """(training, validation): the validation set is the latest ``share`` of decisions."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"validation share must be in (0, 1), got {share}")
    order = np.argsort(batch.decision_time_ms, kind="stable")
    cut = round(len(batch) * (1.0 - share))
    if cut <= 0 or cut >= len(batch):
        raise ValueError(f"{len(batch)} examples are too few for a validation split")
    return batch.take(order[:cut]), batch.take(order[cut:])


def balance(
    batch: ExampleBatch,
    rng: np.random.Generator,
    *,
    negative_rate: float = 1.0,
    total: Callable[[F64Array], F64Array] | None = None,
) -> WeightedExamples:
    """Downsample negatives at ``negative_rate`` and balance the classes by weight.

    ``total`` sums the class counts over every share of the examples (data-parallel
    training: each process balances its share with the counts of all of them)."""
    if not 0.0 < negative_rate <= 1.0:
        raise ValueError(f"negative_rate must be in (0, 1], got {negative_rate}")
    positive = batch.labels > 0.5
    keep = positive | (rng.random(len(batch)) < negative_rate)
    rows = np.flatnonzero(keep).astype(np.int64)
    kept = batch.take(rows)
    kept_positive = positive[rows]
    counts = np.array([kept_positive.sum(), (~kept_positive).sum()], dtype=np.float64)
    positives, negatives = (int(count) for count in (counts if total is None else total(counts)))
    if positives == 0 or negatives == 0:
        raise ValueError("training needs both engaged and not-engaged examples")
    examples = positives + negatives
    positive_weight = examples / (2.0 * positives)
    negative_weight = examples / (2.0 * negatives)
    weights = np.where(kept_positive, positive_weight, negative_weight).astype(np.float32)
    # Kept negatives stand for 1/rate of their kind, and the weights scale the odds again.
    shift = math.log(positive_weight / negative_weight) - math.log(negative_rate)
    return WeightedExamples(kept, weights, shift)
