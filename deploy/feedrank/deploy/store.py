"""Durable rollout state: one JSON file, replaced atomically (write, fsync, rename, fsync).

A crash at any moment leaves either the old file or the new one, never a torn mix: the
new document is written to a temporary file beside the state file, flushed to disk and
renamed over it, and the directory entry is flushed too. Leftover temporary files from
a crash are ignored and cleaned up. A state file that does not parse, or that holds an
impossible rollout, is refused (StateFileCorrupt) rather than silently reset: resetting
could send traffic to a version someone had aborted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from feedrank.core.durable_files import replace_atomically
from feedrank.core.settings import Settings
from feedrank.deploy.errors import DeployError, StateFileCorrupt
from feedrank.deploy.state import Phase, Rollout

STATE_FORMAT = "feedrank-deploy-state/1"
# Fields added since the format began: a file written before them loads with their
# defaults (a state file from before holdouts has no holdout version, one from before
# the audit trail no actor).
_ADDED_FIELDS = frozenset({"holdout_version", "actor"})
_TEMP_PREFIX = ".tmp-"


def state_file_path(settings: Settings) -> Path:
    """Where the deploy service keeps its rollout state (``deploy.state_file``)."""
    return settings.deploy.state_file or settings.paths.state_dir / "deploy" / "rollout.json"


@dataclass(frozen=True)
class DeployState:
    rollout: Rollout
    history: tuple[Rollout, ...]  # every state a transition produced, oldest first


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DeployState | None:
        """The saved state, or None before the first save."""
        self._remove_leftovers()
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
                raise TypeError(f"not a {STATE_FORMAT} document")
            return DeployState(
                rollout=rollout_from_dict(document["rollout"]),
                history=tuple(rollout_from_dict(entry) for entry in document["history"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, DeployError) as error:
            raise StateFileCorrupt(
                f"rollout state {self.path} is unreadable ({error}); restore it from a backup "
                "or move it away to start with no rollout"
            ) from error

    def save(self, state: DeployState) -> None:
        document = {
            "format": STATE_FORMAT,
            "rollout": rollout_to_dict(state.rollout),
            "history": [rollout_to_dict(entry) for entry in state.history],
        }
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{_TEMP_PREFIX}{self.path.name}.{os.getpid()}")
        replace_atomically(self.path, data, temporary=temporary, mode=0o644)

    def _remove_leftovers(self) -> None:
        if self.path.parent.is_dir():
            for leftover in self.path.parent.glob(f"{_TEMP_PREFIX}{self.path.name}.*"):
                leftover.unlink(missing_ok=True)


def rollout_to_dict(rollout: Rollout) -> dict[str, Any]:
    values = asdict(rollout)
    values["phase"] = rollout.phase.value
    values["steps"] = list(rollout.steps)
    return values


def rollout_from_dict(raw: object) -> Rollout:
    """A Rollout from its JSON form, every field type-checked (TypeError otherwise)."""
    if not isinstance(raw, dict):
        raise TypeError("a rollout must be an object")
    expected = {item.name for item in fields(Rollout)}
    missing = expected - set(raw) - _ADDED_FIELDS
    if missing or set(raw) - expected:
        raise TypeError(f"rollout fields differ: {sorted((set(raw) - expected) | missing)}")
    for name in ("stable_version", "canary_version", "message"):
        _require(isinstance(raw[name], str), f"{name} must be text")
    for name in ("current_step", "updated_ms", "started_ms", "step_started_ms"):
        _require(type(raw[name]) is int, f"{name} must be an integer")
    _require(type(raw["canary_weight"]) in (int, float), "canary_weight must be a number")
    _require(isinstance(raw["steps"], list), "steps must be a list")
    _require(all(type(step) in (int, float) for step in raw["steps"]), "steps must be numbers")
    _require(isinstance(raw["previous_stable"], str), "previous_stable must be text")
    _require(isinstance(raw.get("holdout_version", ""), str), "holdout_version must be text")
    _require(isinstance(raw.get("actor", ""), str), "actor must be text")
    return Rollout(
        **{
            **raw,
            "phase": Phase(raw["phase"]),
            "canary_weight": float(raw["canary_weight"]),
            "steps": tuple(float(step) for step in raw["steps"]),
        }
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise TypeError(message)
