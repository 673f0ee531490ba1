"""Assemble and run the deploy service: control plane, gRPC, metrics, canary controller.

``feedrank deploy`` runs one :class:`DeployServer` until told to stop. Health says
NOT_SERVING until the durable state is loaded and the gRPC server is up, and again on
shutdown. With ``analysis`` on, a background thread reads the 5-minute aggregates from
Kafka and another judges the running canary every ``analysis_interval_s``.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health
from prometheus_client import start_http_server

from feedrank.core.clock import Clock
from feedrank.core.settings import Settings
from feedrank.deploy.access import Credentials, credentials_path
from feedrank.deploy.aggregates import AggregateBook, KafkaAggregateFeed
from feedrank.deploy.analysis import AnalysisConfig, CanaryAnalysis
from feedrank.deploy.control import ControlConfig, DeployControl
from feedrank.deploy.controller import RolloutController
from feedrank.deploy.counterfactual import CounterfactualGate, PairedEstimateGate
from feedrank.deploy.learner_gate import PublishVerdictGate
from feedrank.deploy.pre_period import SegmentBook, SegmentPrePeriod
from feedrank.deploy.service import build_server, set_serving
from feedrank.deploy.slo import PrometheusSlo
from feedrank.deploy.store import StateFile, state_file_path
from feedrank.registry import LocalModelRegistry, ModelRegistry, RegistryError

log = logging.getLogger(__name__)


def default_gate(registry: ModelRegistry, settings: Settings) -> CounterfactualGate:
    """Enforce the learner's publish verdict, then judge the paired off-policy estimate
    a learner stored in the version's metrics."""

    def metrics_of(version: str) -> dict[str, float]:
        try:
            return registry.manifest(version).metrics
        except RegistryError:
            return {}

    return PublishVerdictGate(
        metrics_of,
        PairedEstimateGate(
            metrics_of,
            alpha=settings.deploy.alpha,
            margin=settings.deploy.gate_margin,
            min_effective_samples=settings.deploy.gate_min_effective_samples,
        ),
    )


def build_control(
    settings: Settings,
    clock: Clock,
    *,
    registry: ModelRegistry | None = None,
    gate: CounterfactualGate | None = None,
) -> DeployControl:
    registry = registry or LocalModelRegistry(settings.paths.registry, clock=clock)
    return DeployControl(
        registry,
        StateFile(state_file_path(settings)),
        clock,
        ControlConfig(
            default_steps=tuple(settings.deploy.steps),
            salt=settings.deploy.salt,
            history_limit=settings.deploy.history_limit,
            holdout_share=settings.deploy.holdout_share,
            confident_first_step=settings.deploy.confident_first_step,
        ),
        gate=gate or default_gate(registry, settings),
    )


class DeployServer:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        port: int | None = None,
        metrics_port: int | None = None,
        analysis: bool | None = None,
        registry: ModelRegistry | None = None,
        gate: CounterfactualGate | None = None,
    ) -> None:
        """``port`` 0 picks a free port; ``metrics_port`` None serves no /metrics."""
        self.settings = settings
        self.clock = clock
        self.health = health.HealthServicer()
        set_serving(self.health, serving=False)
        self.control = build_control(settings, clock, registry=registry, gate=gate)
        self.book = AggregateBook()
        # With a pre-period, the segment aggregates are kept for it (deploy.pre_period_s).
        pre_period_ms = int(settings.deploy.pre_period_s * 1000)
        self.segments = SegmentBook(keep_ms=2 * pre_period_ms) if pre_period_ms > 0 else None
        pre_period = (
            SegmentPrePeriod(
                self.segments,
                pre_period_ms=pre_period_ms,
                holdout_share=settings.deploy.holdout_share,
            )
            if self.segments is not None
            else None
        )
        self.controller = RolloutController(
            self.control,
            self.book,
            CanaryAnalysis(AnalysisConfig.from_settings(settings.deploy)),
            clock,
            step_pause_ms=int(settings.deploy.step_pause_s * 1000),
            slo=PrometheusSlo(settings.deploy.prometheus_url)
            if settings.deploy.prometheus_url
            else None,
            auto_rollout=settings.deploy.auto_rollout,
            keep_versions=settings.deploy.keep_versions,
            settle_ms=int(settings.deploy.settle_s * 1000),
            pre_period=pre_period,
        )
        self.analysis = settings.deploy.analysis if analysis is None else analysis
        self._grpc_port = settings.ports.deploy_grpc if port is None else port
        self._metrics_port = metrics_port
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feed: KafkaAggregateFeed | None = None
        self._http: WSGIServer | None = None
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        host = self.settings.ports.bind_host
        self._server, self.port = build_server(
            self.control,
            self.health,
            address=f"{host}:{self._grpc_port}",
            credentials=Credentials.load_or_create(credentials_path(self.settings)),
            tls=self.settings.tls,
        )
        self._server.start()
        if self._metrics_port is not None:
            self._http, _ = start_http_server(self._metrics_port, addr=host)
        if self.analysis:
            self._feed = KafkaAggregateFeed(
                self.book,
                self.settings.kafka.access,
                self.settings.topics.metrics,
                segments=self.segments,
            )
            self._feed.start()
            thread = threading.Thread(
                target=self.controller.run,
                args=(self._stop, self.settings.deploy.analysis_interval_s),
                name="deploy-controller",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        set_serving(self.health, serving=True)
        log.info("deploy service on %s:%d", host, self.port)

    def stop(self, grace_s: float = 2.0) -> None:
        set_serving(self.health, serving=False)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._feed is not None:
            self._feed.stop()
        if self._server is not None:
            self._server.stop(grace_s).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
