"""Which arm (stable, canary, …) serves a user: a salted hash of the user id.

A user's position is ``blake2b(salt, user_id)`` read as a number in [0, 1). The arms
are laid out on [0, 1) in name order, each as wide as its share of the weights, and
the user gets the arm whose interval holds the position. The ``holdout`` arm, when
there is one, comes first whatever its name's order: a rollout moving users between
the other arms never moves its users. So:

* the arm is **sticky**: the same user, salt and weights give the same arm in every
  request and every worker process (no state, nothing shared);
* shares follow the weights (positions are uniform over users);
* changing the weights of two arms moves **only the users that must move**: growing
  ``canary`` from 1% to 5% moves 4% of users from ``stable`` to ``canary`` and nobody
  the other way; everyone on canary at 1% is still on canary at 5%;
* a new salt reshuffles everyone (a new experiment).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

from feedrank.core.arms import (
    HOLDOUT_ARM,  # laid out first: [0, its share)
    user_position,
)

__all__ = ["TrafficSplitter", "user_position"]


class TrafficSplitter:
    """Arms and their weights under one salt; ``arm_of`` is a pure function of the user."""

    def __init__(self, weights: Mapping[str, float], salt: str = "") -> None:
        if not weights:
            raise ValueError("a traffic split needs at least one arm")
        for arm, weight in weights.items():
            if not arm or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"arm {arm!r}: weight must be finite and >= 0, got {weight}")
        total = math.fsum(weights.values())
        if total <= 0:
            raise ValueError(f"the weights must not all be zero: {dict(weights)}")
        self.salt = salt
        self.arms = tuple(sorted(weights, key=lambda arm: (arm != HOLDOUT_ARM, arm)))
        self.shares = {arm: weights[arm] / total for arm in self.arms}
        upper, bounds = 0.0, []
        for arm in self.arms[:-1]:
            upper += self.shares[arm]
            bounds.append(upper)
        self._bounds = bounds  # upper ends of every arm's interval but the last (which is 1)

    def arm_of(self, user_id: str) -> str:
        """The arm serving ``user_id``; arms with weight 0 never serve anyone."""
        position = user_position(self.salt, user_id)
        return self.arms[bisect.bisect_right(self._bounds, position)]

    def __repr__(self) -> str:
        shares = ", ".join(f"{arm}={share:.4g}" for arm, share in self.shares.items())
        return f"TrafficSplitter({shares}, salt={self.salt!r})"
