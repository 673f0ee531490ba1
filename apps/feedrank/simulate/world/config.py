"""Tunables of the simulated world and of the behaviour model, in one place.

:class:`WorldConfig` says how big the world is and how its observable tables and hidden
parameters are drawn; :class:`BehaviourConfig` says how a user reacts to a shown feed.
Both are frozen and validated on construction, so a bad value fails where it is set.

Time: every post is created in ``[start_ms - post_span_days, start_ms + publish_ahead_days)``.
With the default ``publish_ahead_days=0`` the whole catalogue exists when the simulation
starts at ``start_ms``; a positive value adds posts that appear while it runs (candidate
generation must then skip posts whose ``created_ms`` is after "now"). Post rows are in
creation order, so the freshest posts are the last rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import AGE_BUCKETS, COUNTRIES, LANGUAGES, NUM_TOPICS
from feedrank.core.settings import WorldSettings
from feedrank.core.time_units import DAY_MS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


# The language most people in each country use (a fact about the world, not a tunable).
COUNTRY_PRIMARY_LANGUAGE: dict[str, str] = {
    "US": "en",
    "BR": "pt",
    "IN": "hi",
    "GB": "en",
    "DE": "de",
    "FR": "fr",
    "JP": "ja",
    "MX": "es",
    "ES": "es",
    "EG": "ar",
}


def normalised(weights: tuple[float, ...]) -> npt.NDArray[np.float64]:
    """Non-negative weights scaled to sum to 1 (a probability vector)."""
    array = np.asarray(weights, dtype=np.float64)
    probabilities: npt.NDArray[np.float64] = array / array.sum()
    return probabilities


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _require_shares(config: DataclassInstance) -> None:
    """Every field whose name ends in ``_share`` or ``_prob`` must lie in [0, 1]."""
    for item in fields(config):
        if item.name.endswith(("_share", "_prob")):
            value = getattr(config, item.name)
            _require(0.0 <= value <= 1.0, f"{item.name} must be in [0, 1], got {value}")


def _require_weights(name: str, weights: tuple[float, ...], length: int) -> None:
    _require(len(weights) == length, f"{name} needs {length} weights, got {len(weights)}")
    _require(
        all(w >= 0 for w in weights) and sum(weights) > 0,
        f"{name} must be non-negative with a positive sum",
    )


@dataclass(frozen=True)
class WorldConfig:
    """Size, seed and generative tunables of a simulated world."""

    num_users: int = 10_000
    num_creators: int = 2_000
    num_posts: int = 100_000
    seed: int = 7
    start_ms: int = 1_764_000_000_000
    post_span_days: float = 14.0  # posts created over this span before start_ms
    publish_ahead_days: float = 0.0  # ... and over this span after it

    # Users and creators.
    country_weights: tuple[float, ...] = (
        0.25,
        0.12,
        0.18,
        0.08,
        0.07,
        0.07,
        0.07,
        0.07,
        0.05,
        0.04,
    )
    age_bucket_weights: tuple[float, ...] = (0.08, 0.24, 0.28, 0.18, 0.12, 0.10)
    primary_language_share: float = 0.85  # others speak a uniformly drawn language
    sessions_per_day_median: float = 2.0
    sessions_per_day_sigma: float = 0.8
    follow_count_median: float = 120.0
    follow_count_sigma: float = 1.2
    sensitive_filter_share: float = 0.3
    history_engagements_mean: float = 12.0  # engagements before the start, average user
    creator_followers_median: float = 800.0
    creator_followers_sigma: float = 2.0
    posting_frequency_median: float = 1.5  # posts per day
    posting_frequency_sigma: float = 0.9
    creator_rate_base: float = 0.06  # creator engagement rate at average quality
    creator_rate_noise: float = 0.01
    creator_rate_quality_gain: float = 0.5  # log-rate change per sd of creator quality
    creator_rate_floor: float = 0.001

    # Topics and content.
    topic_popularity_alpha: float = 2.0  # Dirichlet concentration of topic popularity
    creator_home_topics: int = 3
    max_topics_per_post: int = 3
    extra_topic_prob: float = 0.4  # chance of each slot after the first being used
    creator_topic_focus_share: float = 0.8  # extra slots drawn from the creator's topics
    content_noise: float = 0.35  # noise added to the topic-derived embedding
    region_locked_share: float = 0.03
    post_language_share: float = 0.9  # posts in the creator's language
    sensitive_creator_share: float = 0.1  # creators who often post sensitive content
    sensitive_post_share_edgy: float = 0.35
    sensitive_post_share_other: float = 0.01

    # Hidden parameters.
    interest_alpha: float = 0.08  # Dirichlet concentration: small means few interests
    cohort_interest_share: float = 0.3  # interest shared with the user's country+age cohort
    creator_quality_sd: float = 1.0
    post_quality_sd: float = 0.6
    user_bias_sd: float = 0.3
    user_bias_activity_weight: float = 0.2  # more active users engage a little more

    def __post_init__(self) -> None:
        for name in ("num_users", "num_creators", "num_posts"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be positive, got {value}")
        _require(self.post_span_days > 0, "post_span_days must be positive")
        _require(self.publish_ahead_days >= 0, "publish_ahead_days must be >= 0")
        _require(1 <= self.max_topics_per_post <= NUM_TOPICS, "max_topics_per_post out of range")
        _require(1 <= self.creator_home_topics <= NUM_TOPICS, "creator_home_topics out of range")
        _require(self.interest_alpha > 0 and self.topic_popularity_alpha > 0, "alphas must be > 0")
        _require(self.content_noise >= 0, "content_noise must be >= 0")
        _require(self.history_engagements_mean >= 0, "history_engagements_mean must be >= 0")
        _require_weights("country_weights", self.country_weights, len(COUNTRIES))
        _require_weights("age_bucket_weights", self.age_bucket_weights, AGE_BUCKETS)
        _require_shares(self)

    @property
    def first_post_ms(self) -> int:
        """Creation time of the oldest possible post."""
        return self.start_ms - int(self.post_span_days * DAY_MS)

    @property
    def last_post_ms(self) -> int:
        """Creation times are strictly before this."""
        return self.start_ms + int(self.publish_ahead_days * DAY_MS)


@dataclass(frozen=True)
class BehaviourConfig:
    """How a simulated user reacts to a feed; see :mod:`feedrank.simulate.world.behaviour`."""

    # Relevance of an examined post: sigmoid of a linear score.
    relevance_bias: float = -3.0
    match_weight: float = 5.0  # on cosine(user interests, post topics) in [0, 1]
    quality_weight: float = 0.6  # on the standardised hidden post quality
    language_mismatch_penalty: float = 1.5
    sensitive_filtered_penalty: float = 2.5  # sensitive post, user has the filter on

    # Examination (position bias) and freshness.
    position_decay: float = 0.8  # P(examine | position p) = (1 + p) ** -position_decay
    freshness_half_life_hours: float = 36.0
    freshness_floor_share: float = 0.15  # old posts keep this share of their appeal

    # Actions once engaged: one primary action, sometimes a second one.
    action_weights: tuple[float, float, float, float] = (0.70, 0.12, 0.08, 0.10)  # like..save
    second_action_prob: float = 0.15

    # Negative feedback of an examined, not engaged post.
    negative_base_prob: float = 0.003
    bad_match_threshold: float = 0.15  # cosine below this counts as a bad match
    negative_bad_match_prob: float = 0.08  # at cosine 0
    negative_sensitive_prob: float = 0.35  # sensitive post shown despite the filter
    negative_low_quality_prob: float = 0.03  # per standard deviation below average quality
    negative_weights: tuple[float, float, float] = (0.70, 0.18, 0.12)  # hide, report, block

    # Dwell (seconds) of an examined post.
    dwell_median_s: float = 6.0
    dwell_sigma: float = 0.7
    dwell_appeal_gain: float = 4.0  # dwell grows with relevance x freshness
    max_dwell_s: float = 600.0

    # Delays after the impression, lognormal. With the defaults about 4% of likes,
    # comments, shares, saves, reports and blocks arrive after 14 days.
    view_delay_median_s: float = 2.0
    view_delay_sigma: float = 0.8
    engagement_delay_median_s: float = 2_700.0
    engagement_delay_sigma: float = 3.5
    max_delay_days: float = 45.0  # the lognormal tail is cut here

    def __post_init__(self) -> None:
        _require_shares(self)
        _require_weights("action_weights", self.action_weights, 4)
        _require_weights("negative_weights", self.negative_weights, 3)
        for name in (
            "position_decay",
            "freshness_half_life_hours",
            "dwell_median_s",
            "view_delay_median_s",
            "engagement_delay_median_s",
            "max_delay_days",
            "max_dwell_s",
        ):
            _require(getattr(self, name) > 0, f"{name} must be positive")
        _require(self.bad_match_threshold > 0, "bad_match_threshold must be positive")
        _require(
            min(self.dwell_sigma, self.view_delay_sigma, self.engagement_delay_sigma) >= 0,
            "sigmas must be >= 0",
        )

    @property
    def max_delay_s(self) -> float:
        """The longest delay between an impression and any reward."""
        return self.max_delay_days * 86_400.0

    def share_beyond(self, days: float) -> float:
        """Expected share of engagement delays longer than ``days`` (before the cut)."""
        z = (math.log(days * 86_400.0) - math.log(self.engagement_delay_median_s)) / (
            self.engagement_delay_sigma
        )
        return 0.5 * math.erfc(z / math.sqrt(2.0))


LANGUAGE_OF_COUNTRY: tuple[int, ...] = tuple(
    LANGUAGES.index(COUNTRY_PRIMARY_LANGUAGE[country]) for country in COUNTRIES
)


def world_config(settings: WorldSettings, now_ms: int) -> WorldConfig:
    """The world every process of the stack generates (same seed, size and start)."""
    return WorldConfig(
        num_users=settings.num_users,
        num_creators=settings.num_creators,
        num_posts=settings.num_posts,
        seed=settings.seed,
        start_ms=settings.start_or(now_ms),
        publish_ahead_days=settings.publish_ahead_days,
    )
