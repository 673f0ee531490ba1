"""A synthetic bandit whose true policy values are known exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.learners.evaluation import LoggedBandit

REWARD_MEANS = np.array([0.1, 0.3, 0.5, 0.2, 0.8])
LOGGING = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
TARGET = np.array([0.05, 0.1, 0.25, 0.1, 0.5])
TRUE_TARGET_VALUE = float(TARGET @ REWARD_MEANS)
TRUE_LOGGING_VALUE = float(LOGGING @ REWARD_MEANS)


@dataclass(frozen=True)
class SyntheticLogs:
    logs: LoggedBandit
    target: npt.NDArray[np.float64]


def logged_bandit(
    decision_index: npt.NDArray[Any],
    positions: npt.NDArray[Any],
    propensities: npt.NDArray[Any],
    rewards: npt.NDArray[Any],
    numeric: dict[str, npt.NDArray[np.float64]] | None = None,
) -> LoggedBandit:
    rows = decision_index.shape[0]
    return LoggedBandit(
        decision_ids=tuple(f"d{d}" for d in decision_index.tolist()),
        decision_index=decision_index.astype(np.int64),
        positions=positions.astype(np.int64),
        post_ids=tuple(f"p{row}" for row in range(rows)),
        user_ids=("u1",) * rows,
        propensities=propensities.astype(np.float64),
        rewards=rewards.astype(np.float64),
        lines=np.arange(2, rows + 2, dtype=np.int64),
        context_numeric=numeric or {},
    )


def single_slot_logs(seed: int, decisions: int) -> SyntheticLogs:
    """One arm per decision drawn from LOGGING, Bernoulli(REWARD_MEANS[arm]) rewards."""
    rng = np.random.default_rng(seed)
    arms = rng.choice(len(LOGGING), size=decisions, p=LOGGING)
    rewards = (rng.random(decisions) < REWARD_MEANS[arms]).astype(np.float64)
    logs = logged_bandit(np.arange(decisions), np.zeros(decisions), LOGGING[arms], rewards)
    return SyntheticLogs(logs, TARGET[arms])
