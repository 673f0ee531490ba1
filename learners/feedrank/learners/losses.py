"""Training losses: weighted binary cross-entropy, and in-batch negatives with logQ.

Retrieval is trained as a sampled softmax: each engaged (user, post) pair must pick its
post among every post in the batch. Popular posts appear in many batches and would be
pushed down as negatives far more often than their share of relevance warrants, so
each candidate's logit is corrected by ``-log q`` (Yi et al., "Sampling-bias-corrected
neural modeling for large corpus item recommendations", RecSys 2019), where ``q`` is
the probability that the post appears in a batch, estimated online by
:class:`StreamingFrequency`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from feedrank.models.encoding import hash_indices

F64Array = npt.NDArray[np.float64]


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, weighted per example, normalised by the weights."""
    losses = functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def in_batch_softmax_loss(
    logits: torch.Tensor,
    positive_rows: torch.Tensor,
    post_keys: torch.Tensor,
    log_q: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Sampled-softmax loss of the positives against every post of the batch.

    ``logits`` is (positives, batch): user of positive i against post j. Row i's target
    is column ``positive_rows[i]``; other columns holding the same post (the same
    ``post_keys``) are masked (they are not negatives), and every column is corrected
    by ``-log_q[j]``.
    """
    corrected = logits - log_q.unsqueeze(0)
    same_post = post_keys.unsqueeze(0) == post_keys[positive_rows].unsqueeze(1)
    target = functional.one_hot(positive_rows, logits.shape[1]).to(torch.bool)
    corrected = corrected.masked_fill(same_post & ~target, float("-inf"))
    losses = functional.cross_entropy(corrected, positive_rows, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


class StreamingFrequency:
    """Estimates, per post, the probability ``q`` of appearing in a training batch.

    Per hashed post key (stable across restarts, as the checkpointed state must be) it
    keeps the step it was last seen at and a moving average of the gap between
    sightings; ``q = 1 / gap`` (at most 1). Posts never seen get the smallest ``q`` seen
    so far would imply: a gap as long as the steps taken.
    """

    def __init__(self, buckets: int = 1 << 20, smoothing: float = 0.05) -> None:
        if buckets < 1 or not 0.0 < smoothing <= 1.0:
            raise ValueError("buckets must be positive and smoothing in (0, 1]")
        self.buckets = buckets
        self.smoothing = smoothing
        self.step = 0
        self.last_seen: F64Array = np.zeros(buckets, dtype=np.float64)
        self.gap: F64Array = np.zeros(buckets, dtype=np.float64)  # 0: never seen

    def observe(self, post_keys: npt.NDArray[np.int64]) -> torch.Tensor:
        """Advance one step with this batch's posts; ``log q`` per row, as float32."""
        self.step += 1
        slots = hash_indices(post_keys, self.buckets)
        unique = np.unique(slots)
        gap_now = self.step - self.last_seen[unique]
        seen = self.gap[unique] > 0
        alpha = self.smoothing
        self.gap[unique] = np.where(seen, (1 - alpha) * self.gap[unique] + alpha * gap_now, gap_now)
        self.last_seen[unique] = self.step
        q = 1.0 / np.maximum(self.gap[slots], 1.0)
        return torch.from_numpy(np.log(q).astype(np.float32))

    def arrays(self) -> dict[str, F64Array]:
        """State to save (with ``step`` as a one-element array)."""
        return {
            "frequency.last_seen": self.last_seen,
            "frequency.gap": self.gap,
            "frequency.step": np.array([self.step], dtype=np.float64),
        }

    def restore(self, arrays: dict[str, F64Array]) -> None:
        last_seen, gap = arrays["frequency.last_seen"], arrays["frequency.gap"]
        if last_seen.shape != (self.buckets,) or gap.shape != (self.buckets,):
            raise ValueError(f"frequency state must have {self.buckets} buckets")
        self.last_seen = last_seen.astype(np.float64, copy=True)
        self.gap = gap.astype(np.float64, copy=True)
        self.step = int(arrays["frequency.step"][0])
