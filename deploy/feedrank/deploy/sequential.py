"""An always-valid confidence sequence for the difference of two event rates.

Canary and stable are looked at again and again while a rollout runs, so a fixed-sample
test would raise false alarms far more often than its alpha. This is the normal-mixture
sequential probability ratio test (mSPRT; Robbins 1970, Johari et al. 2017, "Always
valid inference") in its confidence-sequence form: with the estimated difference
``d = r_c - r_s`` of the two rates, its variance ``V = v(r_c)/n_c + v(r_s)/n_s`` and a
normal mixture of scale ``tau`` over the true difference,

    d ± sqrt( V (V + tau²) / tau² · (2 log(1/alpha) + log((V + tau²) / V)) )

covers the true difference at every look at once with probability at least 1 - alpha
(asymptotically, as the counts grow; the minimum sample size keeps the looks out of the
small-count regime). ``tau`` is the size of effect the test is most sensitive to.

Rates are events per impression. ``v(r) = r (1 - r)`` (binomial) for rates below 1 and
``r`` (Poisson) above, where one impression can collect several events. A half event
and one impression are added to each arm's variance estimate, so an arm with no events
yet does not claim zero variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDifference:
    canary_rate: float
    stable_rate: float
    lower: float  # of canary_rate - stable_rate (less ``offset``), valid at every look
    upper: float
    offset: float = 0.0  # the same users' difference before the rollout, taken off

    @property
    def difference(self) -> float:
        return self.canary_rate - self.stable_rate

    @property
    def significantly_higher(self) -> bool:
        return self.lower > 0.0

    @property
    def significantly_lower(self) -> bool:
        return self.upper < 0.0


def rate_variance(events: int, trials: int) -> float:
    """Variance of one event count per trial, smoothed by half an event."""
    rate = (events + 0.5) / (trials + 1)
    return rate * (1.0 - rate) if rate < 1.0 else rate


def mixture_radius(variance: float, mixture_scale: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at this look."""
    tau_squared = mixture_scale**2
    log_term = 2.0 * math.log(1.0 / alpha) + math.log((variance + tau_squared) / variance)
    return math.sqrt(variance * (variance + tau_squared) / tau_squared * log_term)


def rate_difference(
    canary_events: int,
    canary_trials: int,
    stable_events: int,
    stable_trials: int,
    *,
    alpha: float,
    relative_effect: float,
) -> RateDifference:
    """The confidence sequence of ``canary rate - stable rate`` at this look.

    ``relative_effect`` sets the mixture scale relative to the pooled rate (0.25: tuned
    to a 25% change); both arms need at least one trial.
    """
    if canary_trials <= 0 or stable_trials <= 0:
        raise ValueError("both arms need at least one trial")
    if not 0.0 < alpha < 1.0 or relative_effect <= 0.0:
        raise ValueError("alpha must lie in (0, 1) and relative_effect be positive")
    canary_rate = canary_events / canary_trials
    stable_rate = stable_events / stable_trials
    variance = (
        rate_variance(canary_events, canary_trials) / canary_trials
        + rate_variance(stable_events, stable_trials) / stable_trials
    )
    pooled = (canary_events + stable_events + 1.0) / (canary_trials + stable_trials)
    radius = mixture_radius(variance, relative_effect * pooled, alpha)
    difference = canary_rate - stable_rate
    return RateDifference(canary_rate, stable_rate, difference - radius, difference + radius)


def corrected_rate_difference(
    during: tuple[int, int, int, int],
    before: tuple[int, int, int, int],
    *,
    alpha: float,
    relative_effect: float,
) -> RateDifference:
    """:func:`rate_difference` less the same users' difference before the rollout.

    ``during`` and ``before`` are (canary events, canary trials, stable events, stable
    trials), ``before`` counting the users now on each arm while all of them were on
    stable. The arms are fixed sets of users (a sticky hash), so one arm may simply hold
    users who engage more: a difference that no amount of data makes go away, and that
    an always-valid test eventually calls significant. Taking the pre-period difference
    off (a difference in differences: CUPED with its coefficient at 1) removes it; its
    variance adds the pre-period's, small when the pre-period is long. The rates
    reported stay the raw ones; the bounds are of the corrected difference.
    """
    raw = rate_difference(*during, alpha=alpha, relative_effect=relative_effect)
    canary_events, canary_trials, stable_events, stable_trials = before
    if canary_trials <= 0 or stable_trials <= 0:
        return raw  # no pre-period for one arm: nothing to correct with
    offset = canary_events / canary_trials - stable_events / stable_trials
    variance = sum(
        rate_variance(events, trials) / trials
        for events, trials in (
            (during[0], during[1]),
            (during[2], during[3]),
            (canary_events, canary_trials),
            (stable_events, stable_trials),
        )
    )
    pooled = (during[0] + during[2] + 1.0) / (during[1] + during[3])
    radius = mixture_radius(variance, relative_effect * pooled, alpha)
    difference = raw.difference - offset
    return RateDifference(
        raw.canary_rate, raw.stable_rate, difference - radius, difference + radius, offset
    )
