"""The arm names of the contract: what a Decision's ``arm`` field carries.

Explore serves each user from one arm of a traffic split and logs that arm's name on
every Decision (and the join copies it onto the LabelledExample and the aggregates);
the deploy service lays the split out under these names. They are part of the
contract, so both sides import them from here::

    from feedrank.core.arms import CANARY_ARM, HOLDOUT_ARM, STABLE_ARM
"""

from __future__ import annotations

import hashlib

STABLE_ARM = "stable"
"""The arm of the current stable version; a single model serves all traffic on it."""
CANARY_ARM = "canary"
"""The arm of the version being rolled out, while a rollout is active."""
HOLDOUT_ARM = "holdout"
"""The long-term holdout: laid out first on the split, so a rollout never moves its users."""

_HASH_BYTES = 8
_MANTISSA_BITS = 53  # a float64 holds this many bits exactly, so the position stays < 1
POSITION_SEGMENTS = 100
"""Equal segments of [0, 1) the users' positions fall in: the 5-minute segment
aggregates count each one's traffic, whatever version served it (a rollout's
pre-period: the same users' rates before it began)."""


def user_position(salt: str, user_id: str) -> float:
    """Where ``user_id`` falls on [0, 1) under ``salt`` (uniform over user ids): the
    traffic splitter gives the user the arm whose interval holds it."""
    keyed = hashlib.blake2b(salt.encode() + b"\x00" + user_id.encode(), digest_size=_HASH_BYTES)
    top_bits = int.from_bytes(keyed.digest(), "big") >> (8 * _HASH_BYTES - _MANTISSA_BITS)
    return top_bits / float(1 << _MANTISSA_BITS)


def position_segment(salt: str, user_id: str, segments: int = POSITION_SEGMENTS) -> int:
    """The segment of [0, 1) (one of ``segments`` equal ones) ``user_id``'s position is in."""
    return min(int(user_position(salt, user_id) * segments), segments - 1)
