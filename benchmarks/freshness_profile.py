"""The freshness benchmark's profiles: traffic, world size and the settings that decide it.

``FULL`` is the default run, ``SMOKE`` the CI size; ``benchmarks.freshness`` overrides
single fields from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from feedrank.core.settings import LearnerSettings


@dataclass(frozen=True)
class Profile:
    """Traffic, world and the settings that decide freshness."""

    live_s: float  # seconds of measured likes
    rate: float  # decisions per second
    items: int  # shown posts per decision
    like_share: float  # share of decisions with a like
    like_delay_s: float  # like after its decision (< the reward window)
    warmup_s: float  # at least this long before measuring
    posts: int
    users: int
    creators: int
    reward_window_s: float
    checkpoint_interval_s: float  # the join's (its sink commits on checkpoints)
    publish_every_s: float  # the learner's publish cadence
    micro_batch: int  # the learner's micro-batch
    user_id_buckets: int | None = None  # None: the learner's defaults
    post_id_buckets: int | None = None


FULL = Profile(
    live_s=120.0,
    rate=10.0,
    items=10,
    like_share=0.5,
    like_delay_s=1.0,
    warmup_s=10.0,
    posts=50_000,
    users=10_000,
    creators=2_000,
    reward_window_s=10.0,
    checkpoint_interval_s=1.0,
    publish_every_s=10.0,
    micro_batch=LearnerSettings().micro_batch_size,
)
SMOKE = replace(
    FULL,
    live_s=12.0,
    rate=5.0,
    items=5,
    like_share=1.0,
    like_delay_s=0.5,
    warmup_s=0.0,
    posts=2_000,
    users=500,
    creators=100,
    reward_window_s=5.0,
    publish_every_s=3.0,
    user_id_buckets=4_096,
    post_id_buckets=8_192,
)
