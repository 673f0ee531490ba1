"""The columns of a replay file: which are required, which are optional, which are features.

See ``docs/replay-and-evaluation.md`` for the format. Every column that is not named
here is a context feature: numeric columns go to ``FeatureVector.numeric``, text columns
to ``FeatureVector.categorical``; a column whose name starts with ``item_`` describes
the shown post rather than the context and goes, without the prefix, to
``ShownItem.features``.
"""

from __future__ import annotations

TIMESTAMP = "timestamp"
USER_ID = "user_id"
POST_ID = "post_id"
POSITION = "position"
PROPENSITY = "propensity"
REWARD = "reward"

DECISION_ID = "decision_id"
REWARD_TYPE = "reward_type"
REWARD_TIMESTAMP = "reward_timestamp"
SCORE = "score"
MODEL_VERSION = "model_version"
ARM = "arm"

REQUIRED: tuple[str, ...] = (TIMESTAMP, USER_ID, POST_ID, POSITION, PROPENSITY, REWARD)
"""Every replay file has these columns (each row must fill them)."""

OPTIONAL: tuple[str, ...] = (DECISION_ID, REWARD_TYPE, REWARD_TIMESTAMP, SCORE, MODEL_VERSION, ARM)
"""Columns with a meaning of their own; a row may leave them empty (defaults apply)."""

RESERVED = frozenset(REQUIRED + OPTIONAL)

ITEM_FEATURE_PREFIX = "item_"
"""Feature columns with this prefix describe the shown post (``ShownItem.features``)."""

DEFAULT_REWARD_TYPE = "like"
DEFAULT_MODEL_VERSION = "replay"
DEFAULT_ARM = "replay"
