"""Early stopping on validation loss, keeping the best epoch's weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class EarlyStopping:
    """Stop once the validation loss has not improved for ``patience`` epochs."""

    patience: int = 2
    min_delta: float = 1e-4
    best_loss: float = math.inf
    best_epoch: int = -1
    history: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, loss: float) -> bool:
        """Record an epoch's validation loss; True when it is the best so far."""
        if not math.isfinite(loss):
            raise ValueError(f"validation loss is {loss}")
        self.history.append(loss)
        if loss < self.best_loss - self.min_delta:
            self.best_loss = loss
            self.best_epoch = len(self.history) - 1
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return len(self.history) - 1 - self.best_epoch >= self.patience
