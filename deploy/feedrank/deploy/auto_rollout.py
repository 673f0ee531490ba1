"""Automatic rollouts: every new registry version the learners publish becomes a canary.

With ``deploy.auto_rollout`` on (the closed-loop demo), the controller calls
:func:`next_candidate` whenever no rollout is active: the newest registry version that
is newer than the stable one and was never rolled out before starts the default steps,
through the same counterfactual gate and canary analysis as a rollout a person starts.
Versions published while a rollout runs wait; only the newest is tried next.
"""

from __future__ import annotations

from feedrank.deploy.control import DeployControl

AUTO_ROLLOUT = "auto-rollout"
"""The actor of the rollouts started automatically."""


def _number(version: str) -> int:
    return int(version[1:]) if version[1:].isdigit() else -1


def next_candidate(control: DeployControl) -> str | None:
    """The version to roll out now, or None (a rollout is active, or nothing is new)."""
    rollout = control.rollout()
    if rollout.active:
        return None
    latest = control.registry.latest()
    if latest is None or _number(latest.version) <= _number(rollout.stable_version):
        return None
    tried = {entry.canary_version for entry in control.history()}
    tried.update(entry.stable_version for entry in control.history())
    return None if latest.version in tried else latest.version
