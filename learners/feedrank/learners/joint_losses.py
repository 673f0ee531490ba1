"""The forward pass of one training step, as a module: what data parallelism wraps, and
where each step's tensors meet the device the models live on (``learner.device``).

The feature encoders (``feedrank.models.encoding``) build CPU tensors from numpy;
:func:`on_device` moves a batch of them to the models' device (a no-op on CPU).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, TypeVar

import torch

from feedrank.learners.examples import ExampleBatch
from feedrank.learners.losses import in_batch_softmax_loss, weighted_bce
from feedrank.models.encoding import ContextTensors, PostTensors, UserTensors, user_tensors
from feedrank.models.ranker import RankerModel
from feedrank.models.two_tower import TwoTowerModel

if TYPE_CHECKING:  # joint.py imports this module
    from feedrank.learners.joint import StepConfig

Tensors = TypeVar("Tensors", UserTensors, PostTensors, ContextTensors)


def on_device(tensors: Tensors, device: torch.device) -> Tensors:
    """``tensors`` (a batch of encoded features) on ``device``."""
    if device.type == "cpu":
        return tensors
    moved = {item.name: getattr(tensors, item.name).to(device) for item in fields(tensors)}
    return replace(tensors, **moved)


class JointLosses(torch.nn.Module):
    """The forward pass of one training step, as a module (so data parallelism can wrap
    it): the ranker's loss, the two-tower's pointwise and in-batch losses, and the ranker's
    logits."""

    def __init__(self, two_tower: TwoTowerModel, ranker: RankerModel, config: StepConfig):
        super().__init__()
        self.two_tower = two_tower
        self.ranker = ranker
        self.config = config

    def forward(
        self,
        batch: ExampleBatch,
        labels: torch.Tensor,
        weights: torch.Tensor,
        log_q: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        two_tower, ranker, config = self.two_tower, self.ranker, self.config
        device = labels.device
        tower_users, ranker_users = user_tensors_of(two_tower, ranker, batch)
        users = (on_device(tower_users, device), on_device(ranker_users, device))
        posts = on_device(two_tower.post_tensors(batch.posts), device)
        user_vectors = two_tower.user_tower(users[0])
        post_vectors = two_tower.post_tower(posts)
        similarity = (user_vectors * post_vectors).sum(dim=1)
        pointwise = weighted_bce(two_tower.logits_from_similarity(similarity), labels, weights)
        positive_rows = torch.nonzero(labels > 0.5).squeeze(1)
        in_batch = torch.zeros((), device=device)
        if positive_rows.numel() > 0 and config.in_batch_weight > 0:
            logits = two_tower.logits_from_similarity(user_vectors[positive_rows] @ post_vectors.T)
            in_batch = in_batch_softmax_loss(
                logits,
                positive_rows,
                torch.from_numpy(batch.posts.post_key).to(device),
                log_q,
                weights[positive_rows],
            )
        ranker_posts = (
            posts
            if ranker.config.post_id_buckets == two_tower.config.post_id_buckets
            else on_device(ranker.post_tensors(batch.posts), device)
        )
        context = on_device(
            ranker.context_tensors(batch.decision_time_ms.tolist(), [""] * len(batch)), device
        )
        positions = torch.from_numpy(batch.positions).to(device)
        ranker_logits = ranker(users[1], ranker_posts, context, similarity.detach(), positions)
        return (
            weighted_bce(ranker_logits, labels, weights),
            config.pointwise_weight * pointwise,
            config.in_batch_weight * in_batch,
            ranker_logits,
        )


def user_tensors_of(
    two_tower: TwoTowerModel, ranker: RankerModel, batch: ExampleBatch
) -> tuple[UserTensors, UserTensors]:
    tower_buckets = two_tower.config.user_id_buckets
    tower_users = user_tensors(batch.users, id_buckets=tower_buckets)
    if ranker.config.user_id_buckets == tower_buckets:
        return tower_users, tower_users
    return tower_users, ranker.user_tensors(batch.users)
