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

One drawn reaction is a noisy measure. The oracle is shown to one feed in ten, about
1,200 impressions and 160 engagements per 6-hour bucket, so its drawn rate alone moves
by about 8 % from bucket to bucket, and an arm's ratio to it with it. So the ledger also
keeps **expected** engaged counts (``BehaviourModel.expected_engaged_within``, an
ORACLE: the probability of each shown post being engaged inside the reward window), and
for each feed shown beside the baselines, the served arm's and the oracle's expected
counts for that same user at that same time (``record_pair``). ``paired_versus_oracle``
divides their sums: the same users, the same times, no sampling noise from the draws.

With a holdout (``deploy.holdout_share``: users kept on the first stable version), every
holdout feed is paired, and ``versus_holdout`` sets the served arms' paired ratio against
the holdout's over the same buckets: the closed loop against a static model on the same
days.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field, fields

from feedrank.core.arms import HOLDOUT_ARM
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
# Paired only, never drawn: the oracle's feed if it could show a returning user posts
# they were already served (no product rule allows it; see ``baselines``). Its paired
# ratio says how far above the feasible oracle that bar lies.
REPEATING_ORACLE_ARM = "oracle free to repeat posts (baseline, not a feasible feed)"


def engaged_posts(rewards: list[events_pb2.Reward], until_ms: int) -> set[str]:
    """The posts of a feed engaged with (like, comment, share, save) by ``until_ms``."""
    return {r.post_id for r in rewards if r.type in ENGAGED_TYPES and r.ts_ms <= until_ms}


@dataclass
class Tally:
    impressions: float = 0.0
    engagements: float = 0.0  # drawn: engaged inside the reward window
    safeguards: float = 0.0
    expected: float = 0.0  # expected engaged count inside the reward window (ORACLE-computed)
    paired: float = 0.0  # expected engaged count of the feeds shown beside the oracle's ...
    paired_oracle: float = 0.0  # ... and the oracle's expected count for those users and times

    @property
    def paired_ratio(self) -> float | None:
        """Expected engagement over the oracle's for the same users and times."""
        return self.paired / self.paired_oracle if self.paired_oracle > 0 else None

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
        self,
        arm: str,
        impression_ms: int,
        shown: int,
        rewards: list[events_pb2.Reward],
        expected: float = 0.0,
    ) -> None:
        """One served feed of ``shown`` items, the rewards the user will give it and its
        ``expected`` engaged count inside the reward window."""
        horizon = impression_ms + self.reward_window_ms
        engaged = engaged_posts(rewards, horizon)
        flagged = {r.post_id for r in rewards if r.type in SAFEGUARD_TYPES and r.ts_ms <= horizon}
        with self._lock:
            tally = self._tally(arm, impression_ms)
            tally.impressions += shown
            tally.engagements += len(engaged)
            tally.safeguards += len(flagged)
            tally.expected += expected

    def record_pair(
        self, arm: str, impression_ms: int, expected: float, oracle_expected: float
    ) -> None:
        """A feed of ``arm`` shown beside the oracle's: both expected engaged counts for
        the same user at the same time."""
        with self._lock:
            tally = self._tally(arm, impression_ms)
            tally.paired += expected
            tally.paired_oracle += oracle_expected

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
                    _add(total, tally)
        return dict(totals)

    def paired_versus_oracle(self, since_ms: int = 0) -> dict[str, float]:
        """Per arm, its expected engagement over the ORACLE's for the same users at the
        same times (the feeds shown beside the baselines): the low-noise comparison."""
        ratios = {arm: tally.paired_ratio for arm, tally in self.totals(since_ms).items()}
        return {arm: ratio for arm, ratio in ratios.items() if ratio is not None}

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

    def pooled(self, holdout: bool) -> dict[int, Tally]:
        """Per bucket, the served arms' tallies summed together (``holdout`` False) or
        the holdout arm's (``deploy.holdout_share``: the static first version)."""
        pooled: dict[int, Tally] = defaultdict(Tally)
        with self._lock:
            for key, tally in self._tallies.items():
                if not is_baseline(key.arm) and is_holdout(key.arm) == holdout:
                    _add(pooled[key.bucket_start_ms], tally)
        return dict(pooled)

    def versus_holdout(self, since_ms: int = 0) -> HoldoutComparison | None:
        """The served arms together against the holdout, over the buckets the holdout
        served from ``since_ms`` on. Each side's expected engagement is divided by the
        oracle's for the same users at the same times (every holdout feed is paired, the
        others one in ``baseline_every``), so the comparison does not depend on which
        users the holdout happened to get. None without paired feeds on both sides."""
        by_bucket = self.pooled(holdout=False)
        served, holdout = Tally(), Tally()
        for start_ms, tally in self.pooled(holdout=True).items():
            if start_ms >= since_ms:
                _add(holdout, tally)
                if start_ms in by_bucket:
                    _add(served, by_bucket[start_ms])
        if served.paired_ratio is None or not holdout.paired_ratio:
            return None
        return HoldoutComparison(served, holdout)

    def _tally(self, arm: str, impression_ms: int) -> Tally:
        """The tally of ``arm``'s bucket at ``impression_ms``; the caller holds the lock."""
        return self._tallies[SeriesKey(impression_ms - impression_ms % self.bucket_ms, arm)]


@dataclass(frozen=True)
class HoldoutComparison:
    """The served arms' and the holdout's tallies, both paired with the oracle."""

    served: Tally
    holdout: Tally

    @property
    def served_versus_oracle(self) -> float:
        return self.served.paired / self.served.paired_oracle

    @property
    def holdout_versus_oracle(self) -> float:
        return self.holdout.paired / self.holdout.paired_oracle

    @property
    def ratio(self) -> float:
        """How much more the closed loop earns than the static holdout."""
        return self.served_versus_oracle / self.holdout_versus_oracle


def is_holdout(arm: str) -> bool:
    """A ledger arm ("holdout/v0001") served by the deploy service's holdout arm."""
    return arm.startswith(f"{HOLDOUT_ARM}/")


def is_baseline(arm: str) -> bool:
    return arm in (RANDOM_ARM, ORACLE_ARM, REPEATING_ORACLE_ARM)


_SUMMED = tuple(column.name for column in fields(Tally))


def _add(total: Tally, tally: Tally) -> None:
    for name in _SUMMED:
        setattr(total, name, getattr(total, name) + getattr(tally, name))
