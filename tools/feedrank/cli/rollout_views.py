"""How ``feedrank rollout`` shows things: rich tables for people, plain JSON for scripts."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from feedrank.core.clock import to_datetime
from feedrank.registry.publish_verdict import PublishVerdict
from feedrank.v1 import deploy_pb2

PHASE_NAMES = {
    deploy_pb2.ROLLOUT_PHASE_UNSPECIFIED: "unspecified",
    deploy_pb2.ROLLOUT_PHASE_STABLE: "stable",
    deploy_pb2.ROLLOUT_PHASE_PROGRESSING: "progressing",
    deploy_pb2.ROLLOUT_PHASE_PAUSED: "paused",
    deploy_pb2.ROLLOUT_PHASE_PROMOTED: "promoted",
    deploy_pb2.ROLLOUT_PHASE_ABORTED: "aborted",
    deploy_pb2.ROLLOUT_PHASE_ROLLED_BACK: "rolled_back",
}
HEALTHY = frozenset({"stable", "promoted"})
DEGRADED = frozenset({"aborted", "rolled_back"})
PHASE_STYLES = {
    "stable": "green",
    "promoted": "green",
    "progressing": "cyan",
    "paused": "yellow",
    "aborted": "red",
    "rolled_back": "red",
}


def phase_name(rollout: deploy_pb2.Rollout) -> str:
    return PHASE_NAMES.get(rollout.phase, "unspecified")


def is_healthy(rollout: deploy_pb2.Rollout) -> bool:
    return phase_name(rollout) in HEALTHY


def rollout_dict(rollout: deploy_pb2.Rollout) -> dict[str, Any]:
    return {
        "stable_version": rollout.stable_version,
        "canary_version": rollout.canary_version,
        "phase": phase_name(rollout),
        "healthy": is_healthy(rollout),
        "canary_weight": rollout.canary_weight,
        "steps": list(rollout.steps),
        "current_step": rollout.current_step,
        "message": rollout.message,
        "analysis": rollout.analysis,
        "updated_ms": rollout.updated_ms,
        "holdout_version": rollout.holdout_version,
        "holdout_weight": rollout.holdout_weight,
        "actor": rollout.actor,
    }


def model_dict(model: deploy_pb2.ModelVersion) -> dict[str, Any]:
    return {
        "version": model.version,
        "parent": model.parent,
        "created_ms": model.created_ms,
        "feature_schema_hash": model.feature_schema_hash,
        "metrics": dict(model.metrics),
        "publish_gate": _gate_word(model),
    }


def rollout_table(rollout: deploy_pb2.Rollout) -> Table:
    phase = phase_name(rollout)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Phase", f"[{PHASE_STYLES.get(phase, 'white')}]{phase}[/]")
    table.add_row("Stable", rollout.stable_version or "-")
    table.add_row("Canary", rollout.canary_version or "-")
    table.add_row("Canary weight", f"{rollout.canary_weight:.1%}")
    if rollout.holdout_version:
        table.add_row(
            "Holdout", f"{rollout.holdout_version} ({rollout.holdout_weight:.0%} of users)"
        )
    if rollout.steps and phase in ("progressing", "paused"):
        steps = " → ".join(
            f"[bold]{step:.0%}[/]" if index == rollout.current_step else f"{step:.0%}"
            for index, step in enumerate(rollout.steps)
        )
        table.add_row("Step", f"{rollout.current_step + 1}/{len(rollout.steps)}: {steps}")
    table.add_row("Message", rollout.message)
    if rollout.analysis:
        table.add_row("Analysis", rollout.analysis)
    if rollout.updated_ms:
        by = f" by {rollout.actor}" if rollout.actor else ""
        table.add_row("Updated", f"{_time(rollout.updated_ms)}{by}")
    return table


def models_table(models: list[deploy_pb2.ModelVersion], rollout: deploy_pb2.Rollout) -> Table:
    table = Table(title="Model versions")
    for column in ("Version", "Role", "Parent", "Created (UTC)", "Schema", "Gate", "Metrics"):
        table.add_column(column)
    for model in models:
        roles = [
            role
            for role, version, serves in (
                ("stable", rollout.stable_version, True),
                ("canary", rollout.canary_version, rollout.canary_weight > 0),
                ("holdout", rollout.holdout_version, rollout.holdout_weight > 0),
            )
            if serves and model.version == version
        ]
        metrics = ", ".join(f"{name}={value:.4g}" for name, value in sorted(model.metrics.items()))
        table.add_row(
            model.version,
            ", ".join(roles),
            model.parent or "-",
            _time(model.created_ms),
            model.feature_schema_hash[:12],
            publish_gate(model),
            metrics or "-",
        )
    return table


def publish_gate(model: deploy_pb2.ModelVersion) -> str:
    """The learner's publish verdict: passed, FAILED (deploy refuses it) or '-'."""
    word = _gate_word(model)
    return "[red]FAILED[/]" if word == "failed" else word or "-"


def _gate_word(model: deploy_pb2.ModelVersion) -> str:
    """'passed', 'failed', or '' for a version no learner's gate judged."""
    verdict = PublishVerdict.from_metrics(model.metrics)
    if verdict is None:
        return ""
    return "passed" if verdict.passed else "failed"


def history_table(entries: list[deploy_pb2.Rollout]) -> Table:
    table = Table(title="Rollout history (oldest first)")
    for column in ("#", "Time (UTC)", "By", "Phase", "Stable", "Canary", "Weight", "Message"):
        table.add_column(column, overflow="fold")  # a narrow terminal wraps, never hides
    for index, entry in enumerate(entries, start=1):
        phase = phase_name(entry)
        table.add_row(
            str(index),
            _time(entry.updated_ms),
            entry.actor or "-",
            f"[{PHASE_STYLES.get(phase, 'white')}]{phase}[/]",
            entry.stable_version or "-",
            entry.canary_version or "-",
            f"{entry.canary_weight:.1%}",
            entry.message,
        )
    return table


def _time(epoch_ms: int) -> str:
    return to_datetime(epoch_ms).strftime("%Y-%m-%d %H:%M:%S")
