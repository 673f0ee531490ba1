"""The arm names of the contract: what a Decision's ``arm`` field carries.

Explore serves each user from one arm of a traffic split and logs that arm's name on
every Decision (and the join copies it onto the LabelledExample and the aggregates);
the deploy service lays the split out under these names. They are part of the
contract, so both sides import them from here::

    from feedrank.core.arms import CANARY_ARM, HOLDOUT_ARM, STABLE_ARM
"""

from __future__ import annotations

STABLE_ARM = "stable"
"""The arm of the current stable version; a single model serves all traffic on it."""
CANARY_ARM = "canary"
"""The arm of the version being rolled out, while a rollout is active."""
HOLDOUT_ARM = "holdout"
"""The long-term holdout: laid out first on the split, so a rollout never moves its users."""
