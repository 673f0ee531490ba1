"""Engagement per arm over simulated time, beside the random and ORACLE baselines.

An impression counts as engaged when the behaviour model gives it a like, comment,
share or save inside the reward window (the join's definition of a positive), so the
rate here is the rate the join's examples will show, known at impression time because
the simulator drew the user's reaction then.

The baselines are counted the same way, from the user's drawn reaction to their feed:
``random`` shows uniformly chosen fresh posts; ``oracle`` reads the world's hidden
parameters (the only code that may) and shows the best posts in the best order. Both
are shown, on paper only, to a sample of the same users at the same simulated times as
the served feeds. (Until session 4 the baselines were expected rates of engagement at
any delay, while served feeds counted only engagement inside the reward window: in the
demo's 2-day window that understated every served arm against the oracle by about 9 %
(``benchmarks/serving_quality.py``: 0.738 expected against 0.67 counted).)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

from feedrank.v1 import events_pb2

ENGAGED_TYPES = frozenset(
    {
        events_pb2.REWARD_TYPE_LIKE,
        events_pb2.REWARD_TYPE_COMMENT,
        events_pb2.REWARD_TYPE_SHARE,
        events_pb2.REWARD_TYPE_SAVE,
    }
)
SAFEGUARD_TYPES = frozenset(
    {events_pb2.REWARD_TYPE_HIDE, events_pb2.REWARD_TYPE_REPORT, events_pb2.REWARD_TYPE_BLOCK}
)
RANDOM_ARM = "random (baseline)"
ORACLE_ARM = "oracle (baseline, reads hidden parameters)"


def engaged_posts(rewards: list[events_pb2.Reward], until_ms: int) -> set[str]:
    """The posts of a feed engaged with (like, comment, share, save) by ``until_ms``."""
    return {r.post_id for r in rewards if r.type in ENGAGED_TYPES and r.ts_ms <= until_ms}


@dataclass
class Tally:
    impressions: float = 0.0
    engagements: float = 0.0
    safeguards: float = 0.0

    @property
    def rate(self) -> float:
        return self.engagements / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class SeriesKey:
    bucket_start_ms: int
    arm: str  # "stable/v0003", or a baseline name


@dataclass
class EngagementLedger:
    """Thread-safe tallies per (time bucket, arm)."""

    bucket_ms: int
    reward_window_ms: int
    _tallies: dict[SeriesKey, Tally] = field(default_factory=lambda: defaultdict(Tally))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_feed(
        self, arm: str, impression_ms: int, shown: int, rewards: list[events_pb2.Reward]
    ) -> None:
        """One served feed of ``shown`` items and the rewards the user will give it."""
        horizon = impression_ms + self.reward_window_ms
        engaged = engaged_posts(rewards, horizon)
        flagged = {r.post_id for r in rewards if r.type in SAFEGUARD_TYPES and r.ts_ms <= horizon}
        self._add(arm, impression_ms, shown, len(engaged), len(flagged))

    def series(self) -> dict[str, list[tuple[int, Tally]]]:
        """Per arm, its buckets in time order."""
        with self._lock:
            items = sorted(self._tallies.items(), key=lambda kv: kv[0].bucket_start_ms)
        by_arm: dict[str, list[tuple[int, Tally]]] = defaultdict(list)
        for key, tally in items:
            by_arm[key.arm].append((key.bucket_start_ms, tally))
        return dict(by_arm)

    def totals(self, since_ms: int = 0) -> dict[str, Tally]:
        totals: dict[str, Tally] = defaultdict(Tally)
        with self._lock:
            for key, tally in self._tallies.items():
                if key.bucket_start_ms >= since_ms:
                    total = totals[key.arm]
                    total.impressions += tally.impressions
                    total.engagements += tally.engagements
                    total.safeguards += tally.safeguards
        return dict(totals)

    def versus_oracle(self, since_ms: int = 0) -> dict[str, float]:
        """Per arm, its engagements over what the ORACLE's rate would have earned on the
        same impressions at the same times (bucket by bucket): arms that served in
        different periods of a changing world compare fairly. Buckets the oracle has no
        rate for are left out."""
        with self._lock:
            oracle = {
                key.bucket_start_ms: tally.rate
                for key, tally in self._tallies.items()
                if key.arm == ORACLE_ARM and tally.impressions
            }
            earned: dict[str, float] = defaultdict(float)
            possible: dict[str, float] = defaultdict(float)
            for key, tally in self._tallies.items():
                rate = oracle.get(key.bucket_start_ms)
                if key.bucket_start_ms < since_ms or rate is None:
                    continue
                earned[key.arm] += tally.engagements
                possible[key.arm] += tally.impressions * rate
        return {arm: earned[arm] / possible[arm] for arm in earned if possible[arm] > 0}

    def _add(
        self, arm: str, impression_ms: int, shown: int, engaged: float, flagged: float
    ) -> None:
        key = SeriesKey(impression_ms - impression_ms % self.bucket_ms, arm)
        with self._lock:
            tally = self._tallies[key]
            tally.impressions += shown
            tally.engagements += engaged
            tally.safeguards += flagged
