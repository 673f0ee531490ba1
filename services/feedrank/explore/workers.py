"""Serve Rank from several worker processes on one port (SO_REUSEPORT).

The parent builds the read-only serving state once (world, features, models, ANN
index) and forks the workers, so the big arrays are shared copy-on-write. Each worker
then creates what must not cross a fork — its gRPC server and its Kafka producer —
and reports readiness through a pipe. The parent serves every worker's metrics,
aggregated, on one ``/metrics`` port (prometheus_client's multiprocess mode:
``PROMETHEUS_MULTIPROC_DIR`` must be set before ``prometheus_client`` is imported).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol

from grpc_health.v1 import health
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from feedrank.core.clock import Clock
from feedrank.core.process_lifetime import die_with_parent
from feedrank.core.settings import ExploreSettings, TlsSettings
from feedrank.explore.grpc_service import RankingBackend, build_server, set_serving
from feedrank.explore.multiprocess_metrics import MULTIPROC_ENV


class WorkerBackend(RankingBackend, Protocol):
    """A ranking backend that a worker owns: ready once loaded, closed on shutdown."""

    def is_ready(self) -> bool: ...

    def close(self) -> None: ...


BackendFactory = Callable[[], WorkerBackend]


@dataclass(frozen=True)
class PoolConfig:
    address: str  # host:port every worker binds (a fixed port: SO_REUSEPORT needs one)
    workers: int
    metrics_address: tuple[str, int] | None  # (host, port) of the aggregated /metrics
    grace_s: float = 5.0
    start_timeout_s: float = 120.0
    tls: TlsSettings = field(default_factory=TlsSettings)  # the server's certificates


class WorkerPool:
    """Starts, watches and stops the worker processes."""

    def __init__(
        self,
        make_backend: BackendFactory,
        settings: ExploreSettings,
        clock: Clock,
        config: PoolConfig,
    ) -> None:
        self.make_backend = make_backend
        self.settings = settings
        self.clock = clock
        self.config = config
        self._context = multiprocessing.get_context("fork")
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def start(self) -> None:
        """Fork the workers and wait until each one serves (or raise)."""
        if self.config.metrics_address is not None:
            if MULTIPROC_ENV not in os.environ:
                raise RuntimeError(f"set {MULTIPROC_ENV} before importing prometheus_client")
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            host, port = self.config.metrics_address
            start_http_server(port, addr=host, registry=registry)
        for index in range(self.config.workers):
            receiver, sender = self._context.Pipe(duplex=False)
            process = self._context.Process(
                target=_worker_main,
                args=(self.make_backend, self.settings, self.clock, self.config, sender),
                name=f"feedrank-explore-{index}",
                daemon=False,
            )
            process.start()
            sender.close()
            self._processes.append(process)
            self._await_ready(process, receiver)

    def worker_pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    def alive(self) -> bool:
        return all(process.is_alive() for process in self._processes)

    def stop(self) -> None:
        """SIGTERM every worker (health flips to NOT_SERVING, in-flight calls finish)."""
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes:
            process.join(timeout=self.config.grace_s + 10)
            if process.is_alive():
                process.kill()
                process.join()
            if process.pid is not None and MULTIPROC_ENV in os.environ:
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
        self._processes.clear()

    def _await_ready(self, process: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        if not pipe.poll(self.config.start_timeout_s):
            self.stop()
            raise RuntimeError(f"{process.name} did not start in {self.config.start_timeout_s}s")
        message = pipe.recv()
        if message != "ready":
            self.stop()
            raise RuntimeError(f"{process.name} failed to start: {message}")


def _worker_main(
    make_backend: BackendFactory,
    settings: ExploreSettings,
    clock: Clock,
    config: PoolConfig,
    ready: Connection,
) -> None:  # pragma: no cover - runs in the forked worker (covered by integration tests)
    die_with_parent()  # never an orphan, even if the supervisor is SIGKILLed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        backend = make_backend()
        health_servicer = health.HealthServicer()
        set_serving(health_servicer, serving=False)
        server, _ = build_server(
            backend,
            settings,
            clock,
            health_servicer,
            address=config.address,
            reuse_port=config.workers > 1,
            tls=config.tls,
        )
        server.start()
        set_serving(health_servicer, serving=backend.is_ready())
    except Exception as error:
        ready.send(f"{type(error).__name__}: {error}")
        raise
    ready.send("ready")
    stop.wait()
    set_serving(health_servicer, serving=False)
    server.stop(config.grace_s).wait()
    backend.close()
