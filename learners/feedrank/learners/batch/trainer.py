"""The batch trainer behind ``feedrank train``: epochs over labelled examples.

As the design sets out: a time-ordered validation split, balanced positives and
negatives (negative downsampling plus example weights), binary cross-entropy with
weight decay, Adam with a learning rate decayed every epoch, small batches (128 by
default), early stopping when the validation loss stops falling (the best epoch's
weights are kept) and a maximum epoch count. The two-tower also learns from in-batch
negatives with logQ correction (see :mod:`feedrank.learners.joint`). After training,
the balancing's prior shift is taken out of both models' output biases, so their
probabilities are calibrated on the real class balance.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from feedrank.learners.batch.early_stopping import EarlyStopping
from feedrank.learners.batch.sampling import balance
from feedrank.learners.batch.workers import SingleProcess, Workers, gathered_batch
from feedrank.learners.examples import ExampleBatch
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.learners.metrics import log_loss, recall_at_k, roc_auc
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig

F64Array = npt.NDArray[np.float64]
TRAINER_FILE = "trainer.json"
StepProgress = Callable[[int], None]  # told how many batches were just trained


@dataclass(frozen=True)
class TrainerConfig:
    """Hyper-parameters of a batch training run."""

    batch_size: int = 128
    max_epochs: int = 10
    patience: int = 2  # epochs without a better validation loss before stopping
    learning_rate: float = 3e-4  # learner.batch_learning_rate
    lr_decay: float = 0.8  # learning rate multiplied by this after every epoch
    weight_decay: float = 1e-5
    validation_share: float = 0.2
    negative_rate: float = 1.0  # share of negatives kept (downsampling)
    recall_k: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_epochs, self.patience, self.recall_k) < 1:
            raise ValueError("batch_size, max_epochs, patience and recall_k must be >= 1")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")

    def step(self) -> StepConfig:
        """The optimisation of each step."""
        return StepConfig(
            learning_rate=self.learning_rate, weight_decay=self.weight_decay, seed=self.seed
        )


@dataclass(frozen=True)
class TrainingReport:
    """What a run achieved on its validation set."""

    metrics: dict[str, float]
    epochs: int
    best_epoch: int
    validation_losses: list[float] = field(default_factory=list)
    training_examples: int = 0
    validation_examples: int = 0
    seconds: float = 0.0  # the epochs' wall time (not reading or evaluation)
    steps: int = 0
    # Put into collectives per process and step, by kind (data parallel; else empty).
    bytes_per_step: dict[str, float] = field(default_factory=dict)


def evaluate(model: JointModel, validation: ExampleBatch, recall_k: int) -> dict[str, float]:
    """AUC and log loss of both models, calibration and the two-tower's recall@K."""
    labels = validation.labels
    ranker = model.predict_proba(validation)
    retrieval = model.retrieval_proba(validation)
    base_rate = float(labels.mean())
    return {
        "auc": roc_auc(labels, ranker),
        "log_loss": log_loss(labels, ranker),
        "calibration": float(ranker.mean() / base_rate) if base_rate > 0 else math.nan,
        "retrieval_auc": roc_auc(labels, retrieval),
        "retrieval_log_loss": log_loss(labels, retrieval),
        f"recall_at_{recall_k}": _recall(model, validation, recall_k),
        "engagement_rate": base_rate,
    }


class BatchTrainer:
    """Trains a :class:`JointModel` for epochs; also a learner for the contract checks."""

    def __init__(
        self,
        config: TrainerConfig | None = None,
        *,
        two_tower: TwoTowerConfig | None = None,
        ranker: RankerConfig | None = None,
        model: JointModel | None = None,
        device: torch.device | None = None,
    ) -> None:
        """``device``: where :meth:`fit` trains (``learner.device``); the models come
        back to the CPU for evaluation, publishing and serving."""
        self.config = config or TrainerConfig()
        self.device = device or torch.device("cpu")
        step = self.config.step()
        tower_config = two_tower or TwoTowerConfig(seed=self.config.seed)
        ranker_config = ranker or RankerConfig(
            seed=self.config.seed, tower_dim=tower_config.embedding_dim
        )
        self.model = model or JointModel.new(tower_config, ranker_config, step)
        self.prior_shift = 0.0  # currently taken out of the output biases
        self.rng = np.random.default_rng(self.config.seed)

    def fit(
        self,
        examples: ExampleBatch,
        *,
        progress: StepProgress | None = None,
        workers: Workers | None = None,
    ) -> TrainingReport:
        """Train on ``examples`` (split off a validation set) and report on it.

        With ``workers`` (data parallelism), ``examples`` is this process's share: the
        split, the balancing and the validation loss span every share, each step
        averages every process's gradients, and only the leader's report has metrics."""
        config, model = self.config, self.model
        workers = workers or SingleProcess()
        training, validation = workers.split(examples, config.validation_share)
        weighted = balance(
            training, self.rng, negative_rate=config.negative_rate, total=workers.total
        )
        validation_weights = _validation_weights(validation, workers)
        model.to(self.device)
        workers.spread(model)
        local_batch = math.ceil(config.batch_size / workers.size)
        steps = workers.most(math.ceil(len(weighted.examples) / local_batch))
        self._shift_output_biases(-self.prior_shift)  # train on the balanced scale
        for optimizer in (model.dense_optimizer, model.sparse_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate  # every fit decays from the start
        schedulers = [
            torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
            for optimizer in (model.dense_optimizer, model.sparse_optimizer)
        ]
        stopping = EarlyStopping(config.patience)
        best_state = self._snapshot()
        started = time.perf_counter()
        for _ in range(config.max_epochs):
            order = self.rng.permutation(len(weighted.examples)).astype(np.int64)
            if workers.size > 1:  # a smaller share wraps around: every process steps
                order = np.resize(order, steps * local_batch)
            for start in range(0, steps * local_batch, local_batch):
                rows = order[start : start + local_batch]
                model.step(weighted.examples.take(rows), weighted.weights[rows])
                if progress is not None:
                    progress(1)
            for scheduler in schedulers:
                scheduler.step()
            loss = _validation_loss(model, validation, validation_weights, workers)
            if stopping.update(loss):
                best_state = self._snapshot()
            if stopping.should_stop:
                break
        seconds = time.perf_counter() - started
        self._restore(best_state)
        workers.check_replicas(model)
        model.to("cpu")
        self.prior_shift = weighted.prior_shift
        self._shift_output_biases(self.prior_shift)
        everything = gathered_batch(workers, validation) if workers.size > 1 else validation
        counts = workers.total(np.array([len(weighted.examples), len(validation)], np.float64))
        return TrainingReport(
            metrics=evaluate(model, everything, config.recall_k) if everything else {},
            epochs=len(stopping.history),
            best_epoch=stopping.best_epoch,
            validation_losses=list(stopping.history),
            training_examples=int(counts[0]),
            validation_examples=int(counts[1]),
            seconds=seconds,
            steps=steps * len(stopping.history),
            bytes_per_step=workers.bytes_per_step(),
        )

    # The learner contract -------------------------------------------------------------
    def learn(self, batch: ExampleBatch) -> float:
        report = self.fit(batch)
        return report.validation_losses[report.best_epoch]

    def predict_proba(self, batch: ExampleBatch) -> F64Array:
        return self.model.predict_proba(batch)

    def save(self, directory: Path) -> None:
        self.model.save(directory)
        state = {
            "config": asdict(self.config),
            "prior_shift": self.prior_shift,
            "rng": self.rng.bit_generator.state,
        }
        (directory / TRAINER_FILE).write_text(json.dumps(state, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> BatchTrainer:
        state = json.loads((directory / TRAINER_FILE).read_text())
        trainer = cls(TrainerConfig(**state["config"]), model=JointModel.load(directory))
        trainer.prior_shift = float(state["prior_shift"])
        trainer.rng.bit_generator.state = state["rng"]
        return trainer

    # Internals ------------------------------------------------------------------------
    def _shift_output_biases(self, shift: float) -> None:
        """Subtract ``shift`` from both models' logits (their last biases)."""
        if shift == 0.0:
            return
        with torch.no_grad():
            self.model.two_tower.logit_bias.sub_(shift)
            last = list(self.model.ranker.head.modules())[-1]
            if not isinstance(last, torch.nn.Linear):
                raise TypeError("the ranker's head must end in a linear layer")
            last.bias.sub_(shift)

    def _snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return (
            copy.deepcopy(self.model.two_tower.state_dict()),
            copy.deepcopy(self.model.ranker.state_dict()),
        )

    def _restore(self, state: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> None:
        self.model.two_tower.load_state_dict(state[0])
        self.model.ranker.load_state_dict(state[1])


def _validation_weights(validation: ExampleBatch, workers: Workers) -> npt.NDArray[np.float32]:
    """Balanced weights for the validation loss (all 1 when a class is missing)."""
    try:
        return balance(validation, np.random.default_rng(0), total=workers.total).weights
    except ValueError:
        return np.ones(len(validation), dtype=np.float32)


def _validation_loss(
    model: JointModel,
    validation: ExampleBatch,
    weights: npt.NDArray[np.float32],
    workers: Workers,
) -> float:
    """The ranker's weighted log loss on the validation set (every share of it)."""
    if workers.size == 1:
        return log_loss(validation.labels, _sigmoid(model.ranker_logits(validation)), weights)
    share = np.zeros(2, dtype=np.float64)
    if len(validation):
        probabilities = _sigmoid(model.ranker_logits(validation))
        weight = float(weights.sum())
        share[:] = (log_loss(validation.labels, probabilities, weights) * weight, weight)
    summed = workers.total(share)
    return float(summed[0] / summed[1]) if summed[1] > 0 else math.nan


def _sigmoid(logits: F64Array) -> F64Array:
    result: F64Array = 1.0 / (1.0 + np.exp(-logits))
    return result


def _recall(model: JointModel, validation: ExampleBatch, k: int) -> float:
    """Recall@k of engaged pairs among every distinct validation post."""
    positives = np.flatnonzero(validation.labels > 0.5).astype(np.int64)
    if positives.size == 0:
        return math.nan
    post_keys = validation.posts.post_key
    distinct, first = np.unique(post_keys, return_index=True)
    tower = model.two_tower
    candidates = tower.encode_posts(validation.posts.take(first.astype(np.int64)))
    users = tower.encode_users([validation.users[row] for row in positives.tolist()])
    targets = np.searchsorted(distinct, post_keys[positives]).astype(np.int64)
    return recall_at_k(users, targets, candidates, k)
