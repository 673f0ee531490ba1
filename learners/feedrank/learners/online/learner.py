"""The online learner's update step: one micro-batch in, both models a step further.

Pure (no Kafka, no files): :meth:`OnlineLearner.learn` applies one optimiser step on a
micro-batch, optionally weighting each example by its inverse logging propensity
(clipped at ``max_propensity_weight`` and normalised to mean 1 in the batch, so the
step size does not depend on how much the logging policy explored). The consumer
around it handles offsets, durability and publishing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from feedrank.learners.examples import ExampleBatch
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig

F64Array = npt.NDArray[np.float64]
FloatArray = npt.NDArray[np.float32]
LEARNER_FILE = "online_learner.json"


@dataclass(frozen=True)
class OnlineLearnerConfig:
    """How micro-batches are weighted and stepped."""

    step: StepConfig = field(default_factory=StepConfig)
    inverse_propensity: bool = False
    max_propensity_weight: float = 20.0

    def __post_init__(self) -> None:
        if self.max_propensity_weight < 1.0:
            raise ValueError("max_propensity_weight must be >= 1")


class OnlineLearner:
    """Incremental updates to both towers and the ranker, one micro-batch at a time."""

    def __init__(self, model: JointModel, config: OnlineLearnerConfig | None = None) -> None:
        self.model = model
        self.config = config or OnlineLearnerConfig(step=model.config)
        self.examples_learned = 0

    @classmethod
    def new(
        cls,
        config: OnlineLearnerConfig | None = None,
        *,
        two_tower: TwoTowerConfig | None = None,
        ranker: RankerConfig | None = None,
    ) -> OnlineLearner:
        config = config or OnlineLearnerConfig()
        tower_config = two_tower or TwoTowerConfig(seed=config.step.seed)
        ranker_config = ranker or RankerConfig(
            seed=config.step.seed, tower_dim=tower_config.embedding_dim
        )
        return cls(JointModel.new(tower_config, ranker_config, config.step), config)

    def weights(self, batch: ExampleBatch) -> FloatArray | None:
        """Per-example weights: None (all 1) unless inverse-propensity weighting is on."""
        if not self.config.inverse_propensity:
            return None
        raw = np.minimum(1.0 / batch.propensities, self.config.max_propensity_weight)
        normalised: FloatArray = (raw / raw.mean()).astype(np.float32)
        return normalised

    def learn(self, batch: ExampleBatch) -> float:
        """One step on ``batch``; the total loss before the step."""
        return self.learn_scored(batch)[0]

    def learn_scored(self, batch: ExampleBatch) -> tuple[float, F64Array]:
        """One step on ``batch``; the total loss and the engagement probabilities the
        model gave the batch before the step (prequential: scored, then learned)."""
        losses, probabilities = self.model.scored_step(batch, self.weights(batch))
        self.examples_learned += len(batch)
        return losses.total, probabilities

    def predict_proba(self, batch: ExampleBatch) -> F64Array:
        return self.model.predict_proba(batch)

    def save(self, directory: Path) -> None:
        self.model.save(directory)
        state = {
            "inverse_propensity": self.config.inverse_propensity,
            "max_propensity_weight": self.config.max_propensity_weight,
            "examples_learned": self.examples_learned,
        }
        (directory / LEARNER_FILE).write_text(json.dumps(state, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> OnlineLearner:
        model = JointModel.load(directory)
        state = json.loads((directory / LEARNER_FILE).read_text())
        config = OnlineLearnerConfig(
            step=model.config,
            inverse_propensity=bool(state["inverse_propensity"]),
            max_propensity_weight=float(state["max_propensity_weight"]),
        )
        learner = cls(model, config)
        learner.examples_learned = int(state["examples_learned"])
        return learner

    def describe(self) -> dict[str, object]:
        return {"config": asdict(self.config), "examples_learned": self.examples_learned}
