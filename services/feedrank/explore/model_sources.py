"""Where a worker's model versions come from: the registry directory, or the deploy service.

``explore.model_source`` chooses:

* ``registry`` (the default): the registry directory (``paths.registry``) on this
  machine, shared with the learners and the deploy service: the single-node stack.
* ``deploy``: ``Deploy.FetchModel`` at ``explore.deploy_address``, into this replica's
  own cache (``explore.model_cache_dir``, a :class:`ReplicaRegistry`): replicas that
  share no disk with the registry. A version is fetched once per replica (its workers
  share the cache), checked byte for byte against its manifest before it becomes
  visible, and kept while it may serve.

Either way the :class:`ModelLoader` gets the same thing: ``open_verified(version)``, a
directory whose every file matches its manifest. A download whose bytes disagree with
the manifest is refused (``feedrank_explore_model_fetches{outcome="refused"}``, the
version refused like any corrupt one); a deploy service that cannot be reached makes
the plan wait for the next poll. The current version keeps serving either way.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from feedrank.core.grpc_tls import open_channel
from feedrank.core.settings import Settings, TlsSettings
from feedrank.explore import metrics
from feedrank.explore.model_loader import VersionOpener
from feedrank.registry import (
    FileChunk,
    FileDigest,
    LocalModelRegistry,
    RegistryError,
    ReplicaRegistry,
    TransferRefusedError,
    VersionFetch,
    VersionHeader,
    VersionNotFoundError,
    VersionPart,
    VersionRefusedError,
    VersionUnavailableError,
)
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc

_SPAWN_ALLOWANCE_S = 60.0  # a spawned child's start-up (imports) on a loaded machine


class ModelSourceError(ValueError):
    """The settings name a model source that cannot work."""


class DeployModelFetch:
    """``Deploy.FetchModel`` as a registry fetch (``VersionFetch``). The channel opens
    at the first fetch: build this anywhere, fetch only after a fork."""

    def __init__(self, address: str, timeout_s: float, tls: TlsSettings | None = None) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.tls = tls or TlsSettings()
        self._channel: grpc.Channel | None = None

    def __call__(self, version: str) -> Iterator[VersionPart]:
        if self._channel is None:
            self._channel = open_channel(self.address, self.tls)
        stub = deploy_pb2_grpc.DeployStub(self._channel)
        request = deploy_pb2.FetchModelRequest(version=version)
        try:
            for message in stub.FetchModel(request, timeout=self.timeout_s):
                yield part_of(message)
        except grpc.RpcError as error:
            raise fetch_error(error, self.address) from error

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def part_of(message: deploy_pb2.ModelChunk) -> VersionPart:
    """A FetchModel message as the registry's transfer part."""
    kind = message.WhichOneof("part")
    if kind == "file_chunk":
        chunk = message.file_chunk
        return FileChunk(chunk.path, chunk.offset, chunk.data)
    if kind == "manifest":
        header = message.manifest
        files = {item.path: FileDigest(item.sha256, item.size_bytes) for item in header.files}
        return VersionHeader(header.version, header.manifest_json, files)
    raise TransferRefusedError("a FetchModel message carried neither a manifest nor a chunk")


def fetch_error(error: grpc.RpcError, address: str) -> RegistryError:
    """What a failed FetchModel means to the registry: an unknown version, a version that
    cannot serve, or a source to try again later (every other status)."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    message = f"Deploy.FetchModel at {address}: {code.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return VersionNotFoundError(message)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return VersionRefusedError(message)
    return VersionUnavailableError(message)


class CountedReplica:
    """A :class:`ReplicaRegistry` whose fetches are counted in the explore metrics."""

    def __init__(self, replica: ReplicaRegistry) -> None:
        self.replica = replica

    def open_verified(self, version: str) -> Path:
        self.ensure(version)
        return self.replica.open_verified(version)

    def ensure(self, version: str) -> None:
        """Fetch ``version`` unless cached, counting the outcome."""
        started = time.perf_counter()
        try:
            fetched_bytes = self.replica.ensure(version)
        except VersionRefusedError:
            metrics.MODEL_FETCHES.labels(outcome="refused").inc()
            raise
        except VersionNotFoundError:
            metrics.MODEL_FETCHES.labels(outcome="not_found").inc()
            raise
        except VersionUnavailableError:
            metrics.MODEL_FETCHES.labels(outcome="unavailable").inc()
            raise
        if fetched_bytes:
            metrics.MODEL_FETCHES.labels(outcome="fetched").inc()
            metrics.MODEL_FETCH_BYTES.inc(fetched_bytes)
            metrics.MODEL_FETCH_SECONDS.observe(time.perf_counter() - started)
        else:
            metrics.MODEL_FETCHES.labels(outcome="cached").inc()


def model_cache_dir(settings: Settings) -> Path:
    return settings.explore.model_cache_dir or settings.paths.state_dir / "explore" / "model-cache"


def deploy_fetch(settings: Settings) -> DeployModelFetch:
    """``Deploy.FetchModel`` at ``explore.deploy_address``; ModelSourceError without one."""
    explore = settings.explore
    if not explore.deploy_address:
        raise ModelSourceError(
            "explore.model_source 'deploy' needs explore.deploy_address, the deploy "
            "service's host:port (or model_source 'registry' with a registry directory)"
        )
    return DeployModelFetch(explore.deploy_address, explore.model_fetch_timeout_s, settings.tls)


def replica_registry(settings: Settings, fetch: VersionFetch) -> ReplicaRegistry:
    """This replica's cache (``explore.model_cache_dir``), filled by ``fetch``."""
    return ReplicaRegistry(
        model_cache_dir(settings), fetch, keep_versions=settings.explore.model_cache_versions
    )


def worker_versions(settings: Settings) -> VersionOpener:
    """Where a worker opens versions, per ``explore.model_source`` (call after the fork:
    with ``deploy`` it fetches over gRPC)."""
    if settings.explore.model_source == "registry":
        return LocalModelRegistry(settings.paths.registry)
    return CountedReplica(replica_registry(settings, deploy_fetch(settings)))


def parent_versions(settings: Settings) -> VersionOpener:
    """Where the parent opens versions before the workers fork: the registry directory,
    or (``deploy``) the cache alone, which :func:`prefetch` fills; no gRPC here."""
    if settings.explore.model_source == "registry":
        return LocalModelRegistry(settings.paths.registry)
    deploy_fetch(settings)  # the settings must work before anything starts
    return LocalModelRegistry(model_cache_dir(settings))


def prefetch(settings: Settings, version: str) -> None:
    """With ``deploy``, fetch ``version`` into the cache from a spawned child (no gRPC
    channel may cross the fork) unless it is there already (a restart);
    VersionUnavailableError saying why it failed. Nothing to do with ``registry``."""
    if settings.explore.model_source == "registry" or _cached(settings, version):
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pending = pool.apply_async(_fetch_into_cache, (settings, version))
        try:
            failure = pending.get(
                timeout=settings.explore.model_fetch_timeout_s + _SPAWN_ALLOWANCE_S
            )
        except multiprocessing.TimeoutError:
            failure = f"no answer within {settings.explore.model_fetch_timeout_s:.0f} s"
    if failure:
        raise VersionUnavailableError(f"fetching {version} before the fork failed: {failure}")


def _cached(settings: Settings, version: str) -> bool:
    """Whether ``version`` is in the cache (opening it verifies it)."""
    try:
        LocalModelRegistry(model_cache_dir(settings)).manifest(version)
    except RegistryError:
        return False
    return True


def _fetch_into_cache(settings: Settings, version: str) -> str:
    """In a spawned child: fetch ``version`` into the cache; "" or why it failed."""
    fetch = deploy_fetch(settings)
    try:
        CountedReplica(replica_registry(settings, fetch)).ensure(version)
    except RegistryError as error:
        return str(error)
    finally:
        fetch.close()
    return ""
