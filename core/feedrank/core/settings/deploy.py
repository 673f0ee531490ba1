"""Settings of the deploy control service: rollouts and automatic canary analysis."""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from feedrank.core.settings.group import SettingsGroup


class DeploySettings(SettingsGroup):
    """The deploy control service: rollout steps, automatic canary analysis, the arm salt."""

    state_file: Path | None = Field(
        default=None,
        description="Durable rollout state (JSON; default: <state_dir>/deploy/rollout.json).",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token `feedrank rollout` sends (an operator's, to change a "
        "rollout); default: the local stack's, from credentials.json beside the rollout "
        "state. Never printed.",
    )
    steps: list[float] = Field(
        default=[0.01, 0.05, 0.25, 0.5, 1.0],
        description="Default canary weights of a rollout, increasing, in (0, 1], ending at 1.",
    )
    step_pause_s: float = Field(
        default=300.0, ge=0, description="Least time a step holds before it may advance."
    )
    salt: str = Field(
        default="feedrank-arms-1",
        min_length=1,
        description="Salt of the user-id hash that assigns users to stable or canary.",
    )
    analysis: bool = Field(
        default=True, description="Judge canaries automatically (advance, promote, roll back)."
    )
    auto_rollout: bool = Field(
        default=False,
        description="Start a rollout of each new registry version when none is active "
        "(the closed-loop demo turns it on).",
    )
    analysis_interval_s: float = Field(
        default=10.0, gt=0, description="How often the controller judges a running canary."
    )
    min_impressions: int = Field(
        default=5_000, ge=1, description="Impressions each arm needs before any verdict."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="False-alarm rate of each always-valid test."
    )
    mixture_effect: float = Field(
        default=0.25,
        gt=0,
        description="Relative effect the sequential test is tuned for (its mixture scale).",
    )
    rollback_on_engagement_drop: bool = Field(
        default=True, description="A significant drop of the engagement rate also rolls back."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Error-rate SLO of the canary (non-OK / calls)."
    )
    max_latency_p99_s: float = Field(
        default=0.25, gt=0, description="p99 Rank latency SLO of the canary (seconds)."
    )
    min_requests: int = Field(
        default=200, ge=1, description="Canary calls needed before the SLOs are judged."
    )
    gate_min_effective_samples: float = Field(
        default=500.0, ge=0, description="Least effective sample size of a counterfactual gate."
    )
    gate_margin: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Counterfactual gate: how much worse than the stable version a candidate "
        "may be estimated (a share of the stable version's value) before it is refused, at "
        "confidence 1 - alpha; 0 refuses any significant drop.",
    )
    advance_margin: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="Non-inferiority margin of a canary step, a share of stable's "
        "engagement rate: a step advances only once the canary is shown, at confidence "
        "1 - alpha, to be no more than this much worse (0.03: 3%); until then it holds. "
        "0: advance when nothing is significantly worse (absence of evidence: faster, "
        "but 5% drops reach the larger steps; docs/deploy.md, canary sensitivity).",
    )
    confident_first_step: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="A candidate the counterfactual gate finds significantly better than "
        "stable starts at the largest of its steps up to this weight instead of the first "
        "(the reason is in the rollout history). 0: every rollout starts at its first step.",
    )
    pre_period_s: float = Field(
        default=86_400.0,
        ge=0,
        description="The canary analysis takes off each comparison the difference the "
        "same users (the canary's and stable's) showed over this long before the rollout "
        "began, from the join's segment aggregates; 0: compare the arms as they are.",
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus HTTP API for error-rate and latency SLOs; unset: not judged.",
    )
    history_limit: int = Field(default=200, ge=1, description="Rollout history entries kept.")
    settle_s: float = Field(
        default=900.0,
        ge=0,
        description="After a step changes the split, the canary analysis ignores this "
        "long (event time): engagements still come from the previous split's impressions. "
        "Also the join's prompt horizon: the analysis compares engagements that came "
        "within this long of their impression.",
    )
    keep_versions: int = Field(
        default=20,
        ge=3,
        description="Registry versions kept: the newest this many, plus the stable, canary, "
        "previous stable and holdout ones; older versions are deleted.",
    )
    holdout_share: float = Field(
        default=0.0,
        ge=0,
        lt=0.5,
        description="Share of users kept on the first version ever made stable, for good "
        "(a long-term holdout: what the learned versions gain over a static model); "
        "rollouts share the rest. 0: no holdout.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing_steps(cls, value: list[float]) -> list[float]:
        ordered = all(earlier < later for earlier, later in itertools.pairwise(value))
        if not value or not ordered or value[0] <= 0 or value[-1] != 1.0:
            raise ValueError("steps must increase within (0, 1] and end at 1.0, e.g. [0.1, 1.0]")
        return value
