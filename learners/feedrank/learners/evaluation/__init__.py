"""Off-policy evaluation: IPS, self-normalised IPS and doubly robust estimates of a target
policy's value from logged decisions and rewards, each with a 95% interval and its
effective sample size, next to the logging policy's own value.

Logged data comes from a replay file or from ``feedrank.examples`` (:mod:`.logged_data`;
Kafka through :func:`feedrank.learners.sources.read_kafka_range`); the target is anything
that gives the probability of each logged action (:class:`TargetPolicy`). Formulas:
``docs/replay-and-evaluation.md``.
"""

from feedrank.learners.evaluation.estimators import (
    Estimate,
    ImportanceWeights,
    Weighting,
    doubly_robust,
    effective_sample_size,
    importance_weights,
    ips,
    logging_value,
    snips,
)
from feedrank.learners.evaluation.logged_data import LoggedBandit, from_examples, from_replay_rows
from feedrank.learners.evaluation.report import EvaluationReport, WeightDiagnostics, evaluate
from feedrank.learners.evaluation.reward_model import (
    REWARD_MODELS,
    PositionMeanRewardModel,
    RewardModel,
    RidgeRewardModel,
    cross_fitted_baseline,
)
from feedrank.learners.evaluation.target import (
    LoggingPolicy,
    SuppliedProbabilities,
    TargetPolicy,
    TargetPolicyError,
    from_column,
    from_file,
)

__all__ = [
    "REWARD_MODELS",
    "Estimate",
    "EvaluationReport",
    "ImportanceWeights",
    "LoggedBandit",
    "LoggingPolicy",
    "PositionMeanRewardModel",
    "RewardModel",
    "RidgeRewardModel",
    "SuppliedProbabilities",
    "TargetPolicy",
    "TargetPolicyError",
    "WeightDiagnostics",
    "Weighting",
    "cross_fitted_baseline",
    "doubly_robust",
    "effective_sample_size",
    "evaluate",
    "from_column",
    "from_examples",
    "from_file",
    "from_replay_rows",
    "importance_weights",
    "ips",
    "logging_value",
    "snips",
]
