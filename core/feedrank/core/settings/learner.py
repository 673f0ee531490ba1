"""Settings of the learners: the online learner's loop and the batch trainer's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from feedrank.core.settings.group import SettingsGroup


class LearnerSettings(SettingsGroup):
    """The learners: the online learner's loop and the batch trainer's defaults."""

    state_dir: Path | None = Field(
        default=None,
        description="Online learner checkpoints (default: <state_dir>/learner).",
    )
    group_id: str = Field(
        default="feedrank-learner", description="Kafka consumer group of the online learner."
    )
    micro_batch_size: int = Field(
        default=512, ge=1, description="Examples per online update (one optimiser step)."
    )
    checkpoint_every_examples: int = Field(
        default=50_000, ge=1, description="Examples between durable checkpoints (and commits)."
    )
    checkpoint_every_s: float = Field(
        default=30.0, gt=0, description="Seconds between checkpoints when examples trickle in."
    )
    publish_every_examples: int = Field(
        default=200_000, ge=1, description="Examples between published registry versions."
    )
    publish_every_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between published versions (if any news); an engagement "
        "reaches a version about half this plus the join's checkpoint interval later.",
    )
    publish_min_auc: float = Field(
        default=0.55,
        ge=0,
        le=1,
        description="The online learner's publish gate: a version whose rolling "
        "(prequential) AUC is below this is published marked failed, and deploy refuses "
        "it before its first step.",
    )
    publish_calibration_range: tuple[float, float] = Field(
        default=(0.33, 3.0),
        description="The publish gate's calibration range: mean prediction / observed "
        "engagement on the rolling window must lie within it (a collapse lies outside).",
    )
    ope_window_s: float = Field(
        default=600.0,
        ge=0,
        description="Before publishing a version, estimate it off-policy against the stable "
        "version on the decisions logged this many seconds back (their pools and final "
        "labels), for deploy's counterfactual gate; 0: no estimate.",
    )
    ope_max_decisions: int = Field(
        default=500,
        ge=1,
        description="The most recent labelled decisions an estimate re-ranks (each costs two "
        "rankings of its pool).",
    )
    feedback: Literal["fake_negatives", "complete"] = Field(
        default="fake_negatives",
        description="fake_negatives: learn each shown item as a negative from "
        "topics.decisions at impression and as a positive when it is engaged (keeps the "
        "stream in step with time); complete: learn the join's final labels only.",
    )
    learning_rate: float = Field(
        default=3e-4,
        gt=0,
        description="Adam learning rate of the online learner (3e-4: at 1e-3 the demo's "
        "learned versions served below the bootstrap they continued from).",
    )
    weight_decay: float = Field(
        default=1e-5, ge=0, description="L2 weight decay on dense weights (not id tables)."
    )
    time_context: bool = Field(
        default=True,
        description="The ranker's hour-of-day and weekday inputs, for freshly made models "
        "(off: zeros, and training no longer depends on when the history was logged).",
    )
    inverse_propensity: bool = Field(
        default=False, description="Weight online examples by 1 / logging propensity."
    )
    max_propensity_weight: float = Field(
        default=20.0, ge=1, description="Clip of the inverse-propensity weight."
    )
    user_id_buckets: int = Field(
        default=1 << 18, ge=1, description="Hashed user-id buckets of a freshly made model."
    )
    post_id_buckets: int = Field(
        default=1 << 19, ge=1, description="Hashed post-id buckets of a freshly made model."
    )
    monitor_window: int = Field(
        default=2_000, ge=1, description="Examples in the rolling AUC / log loss window."
    )
    adwin_delta: float = Field(
        default=0.002, gt=0, lt=1, description="ADWIN confidence for drift on the loss."
    )
    retrain_on_drift: bool = Field(
        default=False,
        description="Start a warm batch retrain (as retrain_every_s does) when drift is detected.",
    )
    retrain_every_s: float = Field(
        default=0.0,
        ge=0,
        description="The online learner starts a warm batch retrain this often: `feedrank "
        "train --from-kafka --warm --since <retrain_window_s>`, published through the AUC "
        "gate (min_auc); one at a time. 0: never (e.g. 86400: daily).",
    )
    retrain_window_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="A scheduled or drift retrain trains on the examples of this last stretch.",
    )
    retrain_nproc: int = Field(
        default=1,
        ge=1,
        description="Data-parallel processes of a scheduled or drift retrain (`--nproc`).",
    )
    torch_threads: int = Field(
        default=1, ge=1, description="Torch intra-op threads (small models: 1 is fastest)."
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu",
        description="Where `feedrank train` (and scheduled retrains) trains: cpu, cuda (an "
        "error without a GPU) or auto (a GPU when torch sees one). Under --nproc each "
        "process takes its local rank's GPU and they talk over NCCL. The online learner "
        "and serving stay on the CPU (docs/learners.md).",
    )
    batch_size: int = Field(default=128, ge=1, description="Batch size of `feedrank train`.")
    batch_learning_rate: float = Field(
        default=3e-4,
        gt=0,
        description="Adam learning rate of `feedrank train` and the bootstrap. Class "
        "balancing weighs each rare positive 10-40x; at 1e-3 they overfit within an epoch.",
    )
    max_epochs: int = Field(default=10, ge=1, description="Epoch limit of `feedrank train`.")
    patience: int = Field(
        default=2, ge=1, description="Epochs without a better validation loss before stopping."
    )
    lr_decay: float = Field(
        default=0.8, gt=0, le=1, description="Learning-rate factor applied after every epoch."
    )
    validation_share: float = Field(
        default=0.2, gt=0, lt=1, description="Latest share of examples held out to validate."
    )
    min_auc: float = Field(
        default=0.80, ge=0, le=1, description="AUC below which `feedrank train` won't publish."
    )
    bootstrap_examples: int = Field(
        default=0,
        ge=0,
        description="`feedrank up` with an empty registry first trains a model on this many "
        "simulated historical examples (0: serve an untrained model until one is learned).",
    )
    bootstrap_rounds: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Rounds of bootstrap history: round 1 is logged uniformly at random, "
        "each later one by the model trained on the rounds before (`feedrank train "
        "--rounds`), as a feed's logs are. All of it ends before the world starts.",
    )
    history_decision_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Event time between decisions of simulated history (`feedrank train "
        "--simulate`). Match the served traffic's density, or the posts' engagement "
        "counts grow at another pace than they will when served; a history shorter than a "
        "week leaves hours and weekdays the model never saw.",
    )
    bootstrap_min_auc: float = Field(
        default=0.60,
        ge=0,
        le=1,
        description="AUC gate of the bootstrap model; below it `feedrank up` stops. Lower "
        "than min_auc: uniformly logged history is mostly poor matches, which caps AUC "
        "(0.66 in the demo's world for a model that ranks at 0.73x the oracle).",
    )
