"""The durable state file: round trips, atomic replacement, torn writes, corruption."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from feedrank.deploy import state
from feedrank.deploy.errors import StateFileCorrupt
from feedrank.deploy.state import Rollout
from feedrank.deploy.store import DeployState, StateFile


def sample_state() -> DeployState:
    first = state.start(Rollout(), "v0001", (0.1, 1.0), 1)
    second = state.start(first, "v0002", (0.1, 1.0), 2)
    return DeployState(second, (first, second))


def test_missing_file_means_no_state(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "deploy" / "rollout.json").load() is None


def test_round_trip_is_exact(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "deploy" / "rollout.json")
    saved = sample_state()
    store.save(saved)
    assert StateFile(store.path).load() == saved


def test_a_torn_write_leaves_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateFile(tmp_path / "rollout.json")
    before = sample_state()
    store.save(before)
    after = DeployState(state.abort(before.rollout, 3), before.history)

    def crash(source: object, target: object) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.save(after)
    monkeypatch.undo()
    leftovers = list(tmp_path.glob(".tmp-*"))
    assert leftovers, "the crash left its half-written temporary file"
    leftovers[0].write_bytes(leftovers[0].read_bytes()[:20])  # and it is torn
    assert StateFile(store.path).load() == before
    assert not list(tmp_path.glob(".tmp-*")), "leftovers are cleaned up on load"


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "feedrank-deploy-state/1", "rollout": {"stable_ver',  # truncated
        "[]",
        '{"format": "something-else/1", "rollout": {}, "history": []}',
    ],
)
def test_a_corrupt_file_is_refused_not_reset(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rollout.json"
    path.write_text(text)
    with pytest.raises(StateFileCorrupt, match="unreadable"):
        StateFile(path).load()


def test_an_impossible_rollout_in_the_file_is_refused(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "rollout.json")
    store.save(sample_state())
    document = json.loads(store.path.read_text())
    document["rollout"]["canary_weight"] = 1.5
    store.path.write_text(json.dumps(document))
    with pytest.raises(StateFileCorrupt, match="canary_weight"):
        store.load()


def test_a_state_file_from_before_holdouts_and_actors_loads_without_them(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "rollout.json")
    store.save(sample_state())
    document = json.loads(store.path.read_text())
    for rollout in (document["rollout"], *document["history"]):
        del rollout["holdout_version"]
        del rollout["actor"]  # nor the audit trail
    store.path.write_text(json.dumps(document))
    loaded = store.load()
    assert loaded is not None
    assert loaded.rollout.holdout_version == ""
    assert loaded.rollout.actor == ""
    assert loaded.rollout.stable_version == "v0001"
