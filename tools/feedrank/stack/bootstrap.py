"""The stack's first model: batch-trained on simulated history before anything serves.

A feed service starts from a model trained on the logs it already has, not from random
weights. With ``learner.bootstrap_examples`` set and an empty registry, ``feedrank up``
runs ``feedrank train --simulate N`` (uniformly logged history that ends where the
world starts) behind ``learner.bootstrap_min_auc``; the version it publishes becomes the
stable model at once, the one explore serves and the online learner continues from.
"""

from __future__ import annotations

import subprocess
import sys

from feedrank.core.settings import Settings, child_environment
from feedrank.registry import LocalModelRegistry
from feedrank.stack.components import StackError

GATE_REFUSED_EXIT = 3  # `feedrank train`'s exit code when the AUC gate refuses the model


def bootstrap_needed(settings: Settings) -> bool:
    """A bootstrap is configured and the registry has no version yet."""
    if settings.learner.bootstrap_examples == 0:
        return False
    return LocalModelRegistry(settings.paths.registry).latest() is None


def train_bootstrap_model(settings: Settings) -> None:
    """Run the bootstrap training in the foreground (its progress on this terminal)."""
    learner = settings.learner
    command = [
        sys.executable,
        "-m",
        "feedrank.cli.main",
        "train",
        "--simulate",
        str(learner.bootstrap_examples),
        "--rounds",
        str(learner.bootstrap_rounds),
        "--min-auc",
        str(learner.bootstrap_min_auc),
    ]
    environment = child_environment(settings)
    completed = subprocess.run(command, env=environment, check=False)
    if completed.returncode == GATE_REFUSED_EXIT:
        raise StackError(
            f"the bootstrap model did not reach AUC {learner.bootstrap_min_auc}; "
            "raise learner.bootstrap_examples or lower learner.bootstrap_min_auc"
        )
    if completed.returncode != 0:
        raise StackError(f"bootstrap training failed (exit code {completed.returncode})")
