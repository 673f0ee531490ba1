"""Where workers open versions (explore.model_source), the FetchModel messages, and a
version that cannot be fetched yet being retried rather than refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.core.settings import load_settings
from feedrank.deploy.service import chunk_message
from feedrank.explore.errors import ModelUnavailable
from feedrank.explore.model_loader import ModelLoader
from feedrank.explore.model_slots import ModelSlots
from feedrank.explore.model_sources import (
    CountedReplica,
    ModelSourceError,
    model_cache_dir,
    parent_versions,
    part_of,
    worker_versions,
)
from feedrank.explore.plan_follower import FollowerTiming, PlanFollower
from feedrank.explore.plan_sources import FilePlanSource
from feedrank.explore.serving_model import ServingModel
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.registry import (
    FileChunk,
    FileDigest,
    LocalModelRegistry,
    VersionHeader,
    VersionUnavailableError,
)
from tests.support.model_versions import publish, small_bundle
from tests.unit.explore.conftest import SwapWorld


def test_parts_survive_the_fetch_model_messages() -> None:
    header = VersionHeader(
        "v0003", b'{"format": "x"}', {"a.bin": FileDigest("ab" * 32, 3), "b/c": FileDigest("", 0)}
    )
    chunk = FileChunk("b/c", 1 << 20, b"\x00\xff" * 10)
    assert part_of(chunk_message(header)) == header
    assert part_of(chunk_message(chunk)) == chunk
    assert part_of(chunk_message(FileChunk("e", 0, b""))) == FileChunk("e", 0, b"")


def test_the_model_source_picks_where_versions_are_opened(tmp_path: Path) -> None:
    local = load_settings(paths={"state_dir": tmp_path, "registry_dir": tmp_path / "registry"})
    opened = worker_versions(local)
    assert isinstance(opened, LocalModelRegistry)
    assert opened.root == tmp_path / "registry"

    fetched = load_settings(
        paths={"state_dir": tmp_path},
        explore={"model_source": "deploy", "deploy_address": "127.0.0.1:1"},
    )
    assert isinstance(worker_versions(fetched), CountedReplica)
    parent = parent_versions(fetched)  # the cache alone: the parent never opens a channel
    assert isinstance(parent, LocalModelRegistry)
    assert parent.root == tmp_path / "explore" / "model-cache" == model_cache_dir(fetched)

    own = load_settings(
        explore={
            "model_source": "deploy",
            "deploy_address": "127.0.0.1:1",
            "model_cache_dir": tmp_path / "replica-1",
        },
    )
    assert model_cache_dir(own) == tmp_path / "replica-1"


def test_fetching_without_a_deploy_address_is_a_clear_error() -> None:
    settings = load_settings(explore={"model_source": "deploy"})
    with pytest.raises(ModelSourceError, match=r"needs explore\.deploy_address"):
        worker_versions(settings)
    with pytest.raises(ModelSourceError, match=r"needs explore\.deploy_address"):
        parent_versions(settings)


class Unreachable:
    def open_verified(self, version: str) -> Path:
        raise VersionUnavailableError("Deploy.FetchModel at 127.0.0.1:1: UNAVAILABLE: refused")


def test_an_unreachable_source_makes_the_loader_say_unavailable(swap_world: SwapWorld) -> None:
    loader: ModelLoader = swap_world.loader(LocalModelRegistry(Path("/nonexistent")))
    loader.registry = Unreachable()
    with pytest.raises(ModelUnavailable, match="UNAVAILABLE: refused"):
        loader.load("v0001")


def test_an_unavailable_version_is_tried_again_at_the_next_poll(
    swap_world: SwapWorld, registry: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish(registry, small_bundle(swap_world.posts, seed=1))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(ServingPlan((ArmPlan("stable", version, 1.0),)).to_json())
    load = swap_world.loader(registry)
    attempts: list[str] = []

    def flaky(wanted: str) -> ServingModel:
        attempts.append(wanted)
        if len(attempts) == 1:
            raise ModelUnavailable(wanted, "the deploy service is restarting")
        return load(wanted)

    slots = ModelSlots()
    follow = PlanFollower(slots, FilePlanSource(plan_file), flaky, FollowerTiming(0.05))
    assert follow.sync_once() == "unavailable"
    assert follow.status.refused == {}
    assert "restarting" in follow.status.last_error
    assert follow.sync_once() == "swapped"  # not held back for refused_retry_s
    serving = slots.current()
    assert serving is not None
    assert serving.versions == {"stable": version}
