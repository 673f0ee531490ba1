"""Explore replicas get model versions without a shared disk: a real deploy service
streams them from its registry (``Deploy.FetchModel``) into a replica's own, empty cache.

A version arrives byte-identical; one whose files changed after its manifest was
written is refused with nothing half-written left in the cache, and the worker keeps
serving the version it had.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from feedrank.core.clock import ManualClock
from feedrank.core.service_errors import call_violations
from feedrank.core.settings import Settings, load_settings
from feedrank.deploy.server import DeployServer
from feedrank.explore.app import (
    BackgroundBackend,
    ServingState,
    build_serving_state,
    explore_service,
    plan_follower,
)
from feedrank.explore.model_sources import DeployModelFetch, model_cache_dir
from feedrank.registry import (
    LocalModelRegistry,
    ReplicaRegistry,
    TransferRefusedError,
    VersionNotFoundError,
    VersionUnavailableError,
)
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc, ranking_pb2
from tests.support.model_versions import all_posts, index_of, publish, small_bundle, writable
from tests.support.serving import served, world_serving_state

START_MS = 1_764_000_000_000
BIG_FILE = "extra/big.bin"  # 2.5 MiB: three chunks
BIG = np.random.default_rng(0).integers(0, 256, size=5 << 19, dtype=np.uint8).tobytes()


@dataclass
class DeployWithRegistry:
    server: DeployServer
    registry: LocalModelRegistry
    state: ServingState
    versions: list[str]

    def replica(self, cache_dir: Path) -> ReplicaRegistry:
        return ReplicaRegistry(cache_dir, DeployModelFetch(self.server.address, timeout_s=60))

    def tamper(self, version: str, name: str, change: bytes | None = None) -> None:
        """Change a published file in place after its manifest was written (same size
        when ``change`` is None: one byte flipped in the middle)."""
        path = writable(self.registry.directory(version) / name)
        data = path.read_bytes()
        middle = len(data) // 2
        path.write_bytes(
            data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
            if change is None
            else change
        )


def explore_settings(tmp_path: Path, deploy_address: str) -> Settings:
    return load_settings(
        world={"num_users": 300, "num_creators": 200, "num_posts": 2_000},
        paths={"state_dir": tmp_path / "replica-state", "registry_dir": tmp_path / "not-here"},
        explore={
            "model_source": "deploy",
            "deploy_address": deploy_address,
            "model_cache_dir": tmp_path / "replica-0" / "models",
            "feature_updates": False,  # no broker here: models alone
        },
    )


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[DeployWithRegistry]:
    clock = ManualClock(START_MS)
    settings = load_settings(
        paths={"state_dir": tmp_path / "deploy-state", "registry_dir": tmp_path / "registry"},
    )
    state = world_serving_state(explore_settings(tmp_path, "unused:0"), clock)
    registry = LocalModelRegistry(settings.paths.registry)
    posts = all_posts(state.store, START_MS)

    def add_big_file(directory: Path) -> None:
        (directory / BIG_FILE).parent.mkdir()
        (directory / BIG_FILE).write_bytes(BIG)

    versions = []
    for seed in (1, 2, 3):
        bundle = small_bundle(posts, seed)
        versions.append(
            publish(registry, bundle, index=index_of(bundle, state.catalogue), tamper=add_big_file)
        )
    server = DeployServer(settings, clock, port=0, analysis=False)
    server.start()
    try:
        yield DeployWithRegistry(server, registry, state, versions)
    finally:
        server.stop(grace_s=0.5)


def tree(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def cache_entries(cache_dir: Path) -> list[str]:
    """The cache's top level and its versions (leftovers of a fetch would show here)."""
    top = sorted(path.name for path in cache_dir.iterdir())
    return top + sorted(f"versions/{path.name}" for path in (cache_dir / "versions").iterdir())


def fetched_total(outcome: str) -> float:
    value = REGISTRY.get_sample_value("feedrank_explore_model_fetches_total", {"outcome": outcome})
    return value or 0.0


def test_a_version_arrives_byte_identical_in_an_empty_cache(
    deploy: DeployWithRegistry, tmp_path: Path
) -> None:
    version = deploy.versions[0]
    stub = deploy_pb2_grpc.DeployStub(grpc.insecure_channel(deploy.server.address))
    messages = list(stub.FetchModel(deploy_pb2.FetchModelRequest(version=version), timeout=60))
    assert messages[0].WhichOneof("part") == "manifest"
    chunks = [m.file_chunk for m in messages[1:]]
    assert all(m.WhichOneof("part") == "file_chunk" for m in messages[1:])
    assert max(len(chunk.data) for chunk in chunks) == 1 << 20  # at most 1 MiB each
    assert [c.offset for c in chunks if c.path == BIG_FILE] == [0, 1 << 20, 2 << 20]
    names = {file.path for file in messages[0].manifest.files}
    assert BIG_FILE in names
    assert any(name.startswith("ann/") for name in names)

    cache_dir = tmp_path / "empty-cache"
    replica = deploy.replica(cache_dir)
    directory = replica.open_verified(version)
    assert tree(directory) == tree(deploy.registry.directory(version))
    assert cache_entries(cache_dir) == [".fetch.lock", "versions", f"versions/{version}"]


def test_an_unknown_version_is_not_found_with_details(
    deploy: DeployWithRegistry, tmp_path: Path
) -> None:
    stub = deploy_pb2_grpc.DeployStub(grpc.insecure_channel(deploy.server.address))
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.FetchModel(deploy_pb2.FetchModelRequest(version="v0099"), timeout=30))
    error = raised.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no version v0099" in (error.details() or "")
    assert [violation.field for violation in call_violations(error)] == ["version"]

    replica = deploy.replica(tmp_path / "cache")
    with pytest.raises(VersionNotFoundError, match="NOT_FOUND: no version v0099"):
        replica.open_verified("v0099")


@pytest.mark.parametrize(
    ("change", "message"),
    [(None, "extra/big.bin fails its checksum"), (b"short", "extra/big.bin is truncated")],
)
def test_a_file_changed_after_its_manifest_is_refused_leaving_nothing(
    deploy: DeployWithRegistry, tmp_path: Path, change: bytes | None, message: str
) -> None:
    version = deploy.versions[1]
    deploy.tamper(version, BIG_FILE, change)
    cache_dir = tmp_path / "cache"
    replica = deploy.replica(cache_dir)
    with pytest.raises(TransferRefusedError, match=message):
        replica.open_verified(version)
    assert cache_entries(cache_dir) == [".fetch.lock", "versions"]  # nothing half-written


def test_a_deploy_service_that_is_down_is_unavailable(
    deploy: DeployWithRegistry, tmp_path: Path
) -> None:
    deploy.server.stop(grace_s=0)
    replica = deploy.replica(tmp_path / "cache")
    with pytest.raises(VersionUnavailableError, match="UNAVAILABLE"):
        replica.open_verified(deploy.versions[0])


def test_a_replica_serves_fetched_versions_and_keeps_serving_through_a_corrupt_one(
    deploy: DeployWithRegistry, tmp_path: Path
) -> None:
    clock = ManualClock(START_MS)
    settings = explore_settings(tmp_path, deploy.server.address)
    stable, canary = deploy.versions[:2]
    control = deploy.server.control
    control.start(stable)  # the first version: stable at once

    # Before the fork: a spawned child fetches the plan's version into the replica's
    # cache and the parent loads it from there.
    state = build_serving_state(
        settings,
        clock,
        deploy.state.catalogue,
        show_progress=False,
        initial_version=stable,
    )
    assert state.model.version == stable
    cache_dir = model_cache_dir(settings)
    assert tree(cache_dir / "versions" / stable) == tree(deploy.registry.directory(stable))
    assert not (tmp_path / "not-here").exists()  # the registry directory was never used

    service = explore_service(settings, clock, state, log_decisions=False)
    follower = plan_follower(settings, clock, state, service.slots)
    assert follower is not None
    with served(BackgroundBackend(service, follower=follower), settings, clock) as ranking:
        assert follower.sync_once() == "reweighted"  # the parent's copy: nothing fetched

        control.start(canary)  # verified by deploy, then changed on its disk
        deploy.tamper(canary, BIG_FILE)
        refused_before = fetched_total("refused")
        assert follower.sync_once() == "refused"
        assert "extra/big.bin fails its checksum" in follower.status.refused[canary]
        assert fetched_total("refused") == refused_before + 1
        assert cache_entries(cache_dir) == [".fetch.lock", "versions", f"versions/{stable}"]
        for user in ("u1", "u2", "u3", "u4"):
            response = ranking.Rank(ranking_pb2.RankRequest(user_id=user, limit=5), timeout=10)
            assert (response.arm, response.model_version) == ("stable", stable)
            assert len(response.items) == 5

        control.abort("corrupt in the registry")
        control.start(deploy.versions[2])  # a sound version: fetched and switched in
        assert follower.sync_once() == "swapped"
        serving = service.slots.current()
        assert serving is not None
        assert serving.versions == {"stable": stable, "canary": deploy.versions[2]}

    # A replica restarting while the deploy service is down starts from its own cache.
    deploy.server.stop(grace_s=0)
    restarted = build_serving_state(
        settings, clock, deploy.state.catalogue, show_progress=False, initial_version=stable
    )
    assert restarted.model.version == stable
