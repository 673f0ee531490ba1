"""``feedrank train``: the AUC gate refuses to publish unless forced; a publish records
its metrics and provenance."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core.feature_schema import LANGUAGES, post_index
from feedrank.core.settings import load_settings
from feedrank.learners.sources import write_examples
from feedrank.models.ann_index import CandidateIndex
from feedrank.registry import LocalModelRegistry, read_bundle
from feedrank.simulate.world import WorldConfig
from feedrank.simulate.world_views import local_world
from feedrank.stack.bootstrap import bootstrap_needed, train_bootstrap_model
from feedrank.stack.components import StackError
from tests.unit.learners.factories import simulated_examples

runner = CliRunner()


@pytest.fixture
def small_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name, value in {
        "WORLD__NUM_USERS": "60",
        "WORLD__NUM_CREATORS": "20",
        "WORLD__NUM_POSTS": "400",
        "LEARNER__USER_ID_BUCKETS": "256",
        "LEARNER__POST_ID_BUCKETS": "512",
        "PATHS__STATE_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(f"FEEDRANK_{name}", value)
    return tmp_path / "registry"


def test_below_the_gate_nothing_is_published(small_world: Path) -> None:
    result = runner.invoke(
        app, ["train", "--simulate", "1500", "--max-epochs", "1", "--min-auc", "0.99"]
    )
    assert result.exit_code == 3, result.output
    assert "below the gate" in result.output
    assert LocalModelRegistry(small_world).versions() == []


def test_forced_publish_records_metrics_and_provenance(small_world: Path) -> None:
    result = runner.invoke(
        app,
        ["train", "--simulate", "1500", "--max-epochs", "1", "--min-auc", "0.99", "--force"],
    )
    assert result.exit_code == 0, result.output
    assert "recall_at_50" in result.output
    registry = LocalModelRegistry(small_world)
    (manifest,) = registry.versions()
    assert manifest.training.source == "simulated"
    assert manifest.training.examples >= 1500
    world_start = WorldConfig().start_ms  # simulated logs are the history before it
    assert manifest.training.start_ms < manifest.training.end_ms < world_start
    assert {"auc", "log_loss", "recall_at_50", "epochs"} <= set(manifest.metrics)
    bundle = read_bundle(registry.open_verified(manifest.version))
    assert bundle.post_index.size == 400  # the whole simulated catalogue is embedded
    assert (registry.open_verified(manifest.version) / "ann" / "index.json").is_file()


def test_exactly_one_source_is_required(small_world: Path) -> None:
    result = runner.invoke(app, ["train"])
    assert result.exit_code != 0


@pytest.mark.parametrize("command", ["train", "learn"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_the_stack_bootstraps_once_into_an_empty_registry(small_world: Path) -> None:
    settings = load_settings(learner={"bootstrap_examples": 1500, "bootstrap_min_auc": 0.0})
    assert bootstrap_needed(settings)
    train_bootstrap_model(settings)  # a real `feedrank train` child process
    (manifest,) = LocalModelRegistry(small_world).versions()
    assert manifest.training.source == "simulated"
    assert not bootstrap_needed(settings)  # a version exists: never again
    assert not bootstrap_needed(load_settings())  # not configured (the default)


def test_every_bootstrap_round_is_history_before_the_world_starts(small_world: Path) -> None:
    settings = load_settings(
        learner={"bootstrap_examples": 1500, "bootstrap_rounds": 2, "bootstrap_min_auc": 0.0}
    )
    train_bootstrap_model(settings)
    (manifest,) = LocalModelRegistry(small_world).versions()
    assert manifest.training.examples >= 2 * 1500  # round 2 was logged by round 1's model
    assert manifest.training.end_ms < local_world(settings).config.start_ms


def test_a_bootstrap_below_its_gate_stops_the_stack(small_world: Path) -> None:
    settings = load_settings(learner={"bootstrap_examples": 1500, "bootstrap_min_auc": 0.99})
    with pytest.raises(StackError, match=r"did not reach AUC 0\.99"):
        train_bootstrap_model(settings)
    assert LocalModelRegistry(small_world).versions() == []


def test_posts_published_after_the_history_are_not_indexed_early(
    small_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDRANK_WORLD__PUBLISH_AHEAD_DAYS", "3")
    result = runner.invoke(
        app, ["train", "--simulate", "1500", "--max-epochs", "1", "--min-auc", "0", "--force"]
    )
    assert result.exit_code == 0, result.output
    registry = LocalModelRegistry(small_world)
    (manifest,) = registry.versions()
    directory = registry.open_verified(manifest.version)
    index = CandidateIndex.load(directory / "ann")
    world = local_world(load_settings())
    # The index names posts by the learner's rows; the bundle pairs each with its id.
    bundle = read_bundle(directory)
    world_row = {
        int(row): post_index(post)
        for row, post in zip(bundle.post_index, bundle.ids(), strict=True)
    }
    created_by_world_row = np.asarray(world.posts.created_ms)
    start = world.config.start_ms
    assert (created_by_world_row > start).sum() > 50  # the world does publish ahead
    for language in range(len(LANGUAGES)):
        found, _ = index.search(
            np.ones(index.config.dim, dtype=np.float32) / index.config.dim**0.5,
            400,
            languages=[language],
            country=0,
            min_created_ms=0,
            max_created_ms=start,
        )
        created = created_by_world_row[[world_row[int(row)] for row in found]]
        assert (created <= start).all()  # nothing from the future


def test_a_warm_retrain_continues_the_latest_version_on_the_recent_examples(
    small_world: Path, tmp_path: Path
) -> None:
    first = runner.invoke(
        app, ["train", "--simulate", "1500", "--max-epochs", "1", "--min-auc", "0", "--force"]
    )
    assert first.exit_code == 0, first.output
    examples = simulated_examples(1500, seed=2)
    exported = tmp_path / "logs.parquet"
    write_examples(examples, exported)
    times = sorted(example.decision_time_ms for example in examples)
    since_s = (int(time.time() * 1000) - times[len(times) // 2]) // 1000  # the later half
    source = ["--file", str(exported), "--no-catalogue", "--warm", "--since", f"{since_s}s"]
    gate = ["--max-epochs", "1", "--min-auc", "0", "--force", "--json"]
    warm = runner.invoke(app, ["train", *source, *gate])
    assert warm.exit_code == 0, warm.output
    assert "warm start from v0001" in warm.output
    newest = LocalModelRegistry(small_world).versions()[-1]
    assert newest.parent == "v0001"
    assert len(examples) * 0.4 < newest.training.examples < len(examples) * 0.6


def test_since_must_be_a_duration(small_world: Path) -> None:
    result = runner.invoke(app, ["train", "--from-kafka", "--since", "a week"])
    assert result.exit_code == 2
    assert "is not a duration" in result.output
