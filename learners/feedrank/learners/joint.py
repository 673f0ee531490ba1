"""Both models, their optimizers and their randomness: what one training step changes.

:class:`JointModel` is the pure update step the batch trainer and the online learner
share. One :meth:`JointModel.step` on a batch of examples

* trains the two-tower with in-batch negatives (logQ-corrected sampled softmax over the
  engaged pairs) plus a pointwise weighted BCE on every example, and
* trains the ranker with weighted BCE, its tower-similarity input being the two-tower's
  (detached) similarity of the same pair and its position-bias term fed the logged
  position (predictions on examples use it too; candidates are scored at position 0).

Dense parameters use Adam with weight decay; the large hashed-id tables get sparse
gradients and SparseAdam (only the rows a batch touched are updated), which is what
makes micro-batch updates fast. The models' definitions are untouched: sparse
gradients are a training-time switch on the existing embedding modules.

Id dropout draws from torch's global generator; each step runs on the model's own saved
generator state, so a seeded run is reproducible and a reloaded model continues
exactly as the original would have. :meth:`save` / :meth:`load` round-trip weights,
optimizer moments, the generator and the logQ estimator exactly (safetensors and JSON,
no pickle).
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save_file as save_tensors

from feedrank.core.feature_schema import PostFeatureBatch, UserFeatures
from feedrank.learners.examples import ExampleBatch, candidate_batch, validate_batch
from feedrank.learners.joint_losses import JointLosses, on_device, user_tensors_of
from feedrank.learners.losses import StreamingFrequency
from feedrank.models.encoding import (
    IdEmbedding,
    PostTensors,
    UserTensors,
    evaluating,
)
from feedrank.models.ranker import PROBABILITY_EPSILON, RankerConfig, RankerModel
from feedrank.models.serialization import load_ranker, load_two_tower, save_model
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel

F64Array = npt.NDArray[np.float64]
FloatArray = npt.NDArray[np.float32]

TWO_TOWER_FILE = "two_tower.safetensors"
RANKER_FILE = "ranker.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
FREQUENCY_FILE = "frequency.safetensors"
STEP_FILE = "step.json"


@dataclass(frozen=True)
class StepConfig:
    """Optimisation of one step; recorded with the saved state."""

    learning_rate: float = 3e-4  # learner.learning_rate's default (docs/benchmarks.md, session 9)
    weight_decay: float = 1e-5  # L2 on dense weights (Adam); id tables are not decayed
    in_batch_weight: float = 1.0  # weight of the two-tower's in-batch softmax loss
    pointwise_weight: float = 1.0  # weight of the two-tower's pointwise BCE
    frequency_buckets: int = 1 << 20  # logQ estimator size
    seed: int = 0  # id-dropout randomness

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be positive and weight_decay >= 0")
        if min(self.in_batch_weight, self.pointwise_weight) < 0:
            raise ValueError("loss weights must be >= 0")


@dataclass(frozen=True)
class StepLosses:
    ranker: float
    retrieval_pointwise: float
    retrieval_in_batch: float

    @property
    def total(self) -> float:
        return self.ranker + self.retrieval_pointwise + self.retrieval_in_batch


class StepParallel(Protocol):
    """How one step is spread over training processes (data parallelism): the batch-time
    logQ estimate over every process's posts, and the gradients made equal on every
    process before the optimisers step (see ``feedrank.learners.batch.workers``)."""

    def log_q(self, model: JointModel, post_keys: npt.NDArray[np.int64]) -> torch.Tensor:
        """``log q`` of this process's rows, the estimator having seen every process's."""
        ...

    def after_backward(self, model: JointModel) -> None:
        """Called between the backward pass and the optimiser steps."""
        ...


class JointModel:
    """The two-tower and the ranker trained together on the same examples."""

    def __init__(
        self,
        two_tower: TwoTowerModel,
        ranker: RankerModel,
        config: StepConfig | None = None,
    ) -> None:
        if ranker.config.tower_dim != two_tower.config.embedding_dim:
            raise ValueError("the ranker's tower_dim must equal the two-tower's embedding_dim")
        self.config = config or StepConfig()
        self.two_tower = two_tower
        self.ranker = ranker
        self.two_tower.train()
        self.ranker.train()
        sparse, dense = _split_parameters([two_tower, ranker])
        self.dense_optimizer = torch.optim.Adam(
            dense, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.sparse_optimizer = torch.optim.SparseAdam(sparse, lr=self.config.learning_rate)
        self.frequency = StreamingFrequency(self.config.frequency_buckets)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.rng_state = torch.get_rng_state()
        self.steps = 0
        self.losses = JointLosses(two_tower, ranker, self.config)
        self.loss_module: torch.nn.Module = self.losses  # or a DistributedDataParallel of it
        self.parallel: StepParallel | None = None

    @property
    def sparse_parameters(self) -> list[torch.Tensor]:
        """The hashed-id tables (sparse gradients, SparseAdam)."""
        return _parameters(self.sparse_optimizer)

    @classmethod
    def new(
        cls,
        two_tower: TwoTowerConfig,
        ranker: RankerConfig,
        config: StepConfig | None = None,
    ) -> JointModel:
        """Freshly initialised (seeded by the model configs) models."""
        return cls(TwoTowerModel(two_tower), RankerModel(ranker), config)

    # Learning ---------------------------------------------------------------------
    def step(self, batch: ExampleBatch, weights: FloatArray | None = None) -> StepLosses:
        """One optimiser step on ``batch`` (``weights``: per example, default 1).

        The batch is validated first: NaN or infinite inputs change nothing.
        """
        return self.scored_step(batch, weights)[0]

    def scored_step(
        self, batch: ExampleBatch, weights: FloatArray | None = None
    ) -> tuple[StepLosses, F64Array]:
        """:meth:`step`, also returning the ranker's engagement probabilities of the
        batch **before** the update (from the step's own forward pass, so id dropout is
        on): a prequential score for streaming metrics, without a second forward pass."""
        validate_batch(batch)
        if weights is not None and not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError("example weights must be finite and non-negative")
        device = self.device
        example_weights = torch.from_numpy(
            np.ones(len(batch), dtype=np.float32) if weights is None else weights.astype(np.float32)
        ).to(device)
        labels = torch.from_numpy(batch.labels.astype(np.float32, copy=True)).to(device)
        parallel = self.parallel
        keys = batch.posts.post_key
        log_q = self.frequency.observe(keys) if parallel is None else parallel.log_q(self, keys)
        log_q = log_q.to(device)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            *losses, ranker_logits = self.loss_module(batch, labels, example_weights, log_q)
            self.rng_state = torch.get_rng_state()
        total = losses[0] + losses[1] + losses[2]
        self.dense_optimizer.zero_grad(set_to_none=True)
        self.sparse_optimizer.zero_grad(set_to_none=True)
        total.backward()
        if parallel is not None:
            parallel.after_backward(self)
        self.dense_optimizer.step()
        self.sparse_optimizer.step()  # type: ignore[no-untyped-call]
        self.steps += 1
        probabilities = _sigmoid(ranker_logits.detach().cpu().numpy().astype(np.float64))
        return StepLosses(*(float(loss.detach()) for loss in losses)), probabilities

    # Prediction -------------------------------------------------------------------
    def predict_proba(self, batch: ExampleBatch) -> F64Array:
        """The ranker's engagement probability per example (as served: eval mode)."""
        return _sigmoid(self.ranker_logits(batch))

    def retrieval_proba(self, batch: ExampleBatch) -> F64Array:
        """The two-tower's engagement probability per example."""
        with evaluating(self.two_tower):
            logits = self.two_tower(self._user_tensors(batch)[0], self.two_tower_posts(batch))
        return _sigmoid(logits.cpu().numpy().astype(np.float64))

    def score_candidates(self, user: UserFeatures, posts: PostFeatureBatch, at_ms: int) -> F64Array:
        """Engagement probabilities of ``posts`` for ``user`` (a simulator's scorer)."""
        return self.predict_proba(candidate_batch(user, posts, at_ms))

    def ranker_logits(self, batch: ExampleBatch) -> F64Array:
        two_tower, ranker = self.two_tower, self.ranker
        users = self._user_tensors(batch)
        with evaluating(two_tower), evaluating(ranker):
            similarity = (
                two_tower.user_tower(users[0]) * two_tower.post_tower(self.two_tower_posts(batch))
            ).sum(dim=1)
            context = ranker.context_tensors(batch.decision_time_ms.tolist(), [""] * len(batch))
            logits = ranker(
                users[1],
                on_device(ranker.post_tensors(batch.posts), self.device),
                on_device(context, self.device),
                similarity,
                torch.from_numpy(batch.positions).to(self.device),
            )
        result: F64Array = logits.cpu().numpy().astype(np.float64)
        return result

    def two_tower_posts(self, batch: ExampleBatch) -> PostTensors:
        return on_device(self.two_tower.post_tensors(batch.posts), self.device)

    @property
    def device(self) -> torch.device:
        """Where the models' parameters (and so each step's tensors) live."""
        return self.two_tower.logit_bias.device

    def to(self, device: torch.device | str) -> JointModel:
        """Move both models and their optimizer moments to ``device`` (in place)."""
        target = torch.device(device)
        self.two_tower.to(target)
        self.ranker.to(target)
        for optimizer in (self.dense_optimizer, self.sparse_optimizer):
            for state in optimizer.state.values():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        state[key] = value.to(target)
        return self

    def _user_tensors(self, batch: ExampleBatch) -> tuple[UserTensors, UserTensors]:
        users = user_tensors_of(self.two_tower, self.ranker, batch)
        return on_device(users[0], self.device), on_device(users[1], self.device)

    # Persistence ------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Weights, optimizer moments, RNG and logQ state under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self.two_tower, directory / TWO_TOWER_FILE)
        save_model(self.ranker, directory / RANKER_FILE)
        tensors = {"rng_state": self.rng_state.clone()}
        tensors |= _optimizer_tensors("dense", self.dense_optimizer)
        tensors |= _optimizer_tensors("sparse", self.sparse_optimizer)
        save_tensors(tensors, str(directory / OPTIMIZER_FILE))
        save_numpy(self.frequency.arrays(), str(directory / FREQUENCY_FILE))
        step = {"steps": self.steps, "config": asdict(self.config)}
        (directory / STEP_FILE).write_text(json.dumps(step, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> JointModel:
        """A model saved by :meth:`save`, ready to continue exactly where it stopped."""
        step = json.loads((directory / STEP_FILE).read_text())
        model = cls(
            load_two_tower(directory / TWO_TOWER_FILE),
            load_ranker(directory / RANKER_FILE),
            StepConfig(**step["config"]),
        )
        tensors = load_tensors(str(directory / OPTIMIZER_FILE))
        model.rng_state = tensors["rng_state"]
        _restore_optimizer("dense", model.dense_optimizer, tensors)
        _restore_optimizer("sparse", model.sparse_optimizer, tensors)
        model.frequency.restore(load_numpy(str(directory / FREQUENCY_FILE)))
        model.steps = int(step["steps"])
        return model

    def state_equal(self, other: JointModel) -> bool:
        """Same weights, bit for bit (used by the contract checks)."""
        mine = {**_prefixed("t", self.two_tower), **_prefixed("r", self.ranker)}
        theirs = {**_prefixed("t", other.two_tower), **_prefixed("r", other.ranker)}
        return mine.keys() == theirs.keys() and all(
            torch.equal(mine[name], theirs[name]) for name in mine
        )


def _prefixed(prefix: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in model.state_dict().items()}


def _sigmoid(logits: F64Array) -> F64Array:
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    clipped: F64Array = np.clip(probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return clipped


def _split_parameters(
    models: list[torch.nn.Module],
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(hashed-id tables, switched to sparse gradients; every other parameter)."""
    sparse: list[torch.nn.Parameter] = []
    for model in models:
        for module in model.modules():
            if isinstance(module, IdEmbedding):
                module.table.sparse = True
                sparse.append(typing.cast(torch.nn.Parameter, module.table.weight))
    sparse_ids = {id(parameter) for parameter in sparse}
    dense = [p for model in models for p in model.parameters() if id(p) not in sparse_ids]
    return sparse, dense


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for number, parameter in enumerate(_parameters(optimizer)):
        for key, value in optimizer.state.get(parameter, {}).items():
            # SparseAdam counts steps in a Python int: kept exactly as int64.
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(int(value))
            tensors[f"{prefix}.{number}.{key}"] = tensor.detach().clone().contiguous()
    return tensors


def _restore_optimizer(
    prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    for number, parameter in enumerate(_parameters(optimizer)):
        head = f"{prefix}.{number}."
        state: dict[str, object] = {
            name[len(head) :]: tensor if tensor.is_floating_point() else int(tensor)
            for name, tensor in tensors.items()
            if name.startswith(head)
        }
        if state:
            optimizer.state[parameter] = state
