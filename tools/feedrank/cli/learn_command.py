"""``feedrank learn``: the online learner, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from typing import Annotated

import torch
import typer
from prometheus_client import start_http_server
from rich.console import Console

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import missing_entity_topics, replay_catalogue
from feedrank.cli.context import settings_of
from feedrank.core.clock import SystemClock
from feedrank.core.settings import Settings
from feedrank.learners.bootstrap import catalogue_posts, starting_model
from feedrank.learners.joint import StepConfig
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from feedrank.learners.post_topics import CatalogueTopics
from feedrank.registry import LocalModelRegistry

console = Console()


def learn(
    context: typer.Context,
    until_idle: Annotated[
        float | None,
        typer.Option(help="Stop (after a final checkpoint) once no example came for this long."),
    ] = None,
    metrics: Annotated[bool, typer.Option(help="Serve /metrics on ports.learner_metrics.")] = True,
) -> None:
    """Learn online from feedrank.examples; checkpoint, commit and publish versions."""
    # Imported here, not at the top: river and scipy take a second or two, which every
    # other feedrank command (serve's restart above all) would pay for nothing.
    from feedrank.learners.online.consumer import ConsumerConfig, OnlineConsumer  # noqa: PLC0415
    from feedrank.learners.online.monitoring import StreamMonitor  # noqa: PLC0415

    settings = settings_of(context)
    learner_settings = settings.learner
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(learner_settings.torch_threads)
    registry = LocalModelRegistry(settings.paths.registry)
    now_ms = SystemClock().now_ms()
    # The catalogue as it stands: its live posts go into the first version's index, and
    # their topics fill in for logs that do not carry them.
    catalogue = _catalogue(settings)
    step = StepConfig(
        learning_rate=learner_settings.learning_rate, weight_decay=learner_settings.weight_decay
    )
    config = OnlineLearnerConfig(
        step=step,
        inverse_propensity=learner_settings.inverse_propensity,
        max_propensity_weight=learner_settings.max_propensity_weight,
    )

    def make_learner() -> tuple[OnlineLearner, str]:
        model, parent = starting_model(settings, registry, step)
        return OnlineLearner(model, config), parent

    retrain = _Retrainer(settings) if learner_settings.retrain_on_drift else None
    monitor = StreamMonitor(
        window=learner_settings.monitor_window,
        adwin_delta=learner_settings.adwin_delta,
        on_drift=(retrain.start) if retrain else None,
    )
    consumer = OnlineConsumer(
        ConsumerConfig(
            bootstrap=settings.kafka.bootstrap,
            topic=settings.topics.examples,
            decisions_topic=settings.topics.decisions
            if learner_settings.feedback == "fake_negatives"
            else None,
            group_id=learner_settings.group_id,
            state_dir=learner_settings.state_dir or settings.paths.state_dir / "learner",
            micro_batch_size=learner_settings.micro_batch_size,
            checkpoint_every_examples=learner_settings.checkpoint_every_examples,
            checkpoint_every_s=learner_settings.checkpoint_every_s,
            publish_every_examples=learner_settings.publish_every_examples,
            publish_every_s=learner_settings.publish_every_s,
            idle_exit_s=until_idle,
        ),
        make_learner=make_learner,
        registry=registry,
        topics=CatalogueTopics(catalogue),
        monitor=monitor,
        initial_catalogue=catalogue_posts(catalogue, now_ms),
    )
    if metrics:
        start_http_server(settings.ports.learner_metrics, addr=settings.ports.bind_host)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    console.print(
        f"learning from {' + '.join(consumer.topics_read)} ({learner_settings.feedback}; "
        f"state in {consumer.config.state_dir}, "
        f"{consumer.progress.examples_applied:,} examples applied so far)"
    )
    progress = consumer.run(stop)
    console.print(
        f"stopped after {progress.examples_applied:,} examples; offsets {progress.offsets}; "
        f"latest version {progress.last_version or '-'}"
    )


def _catalogue(settings: Settings) -> CatalogueState:
    if missing := missing_entity_topics(settings):
        console.print(f"[yellow]no catalogue topics {missing}: learning without the catalogue[/]")
        return CatalogueState()
    return replay_catalogue(settings, SystemClock().now_ms).state


class _Retrainer:
    """Starts one ``feedrank train --from-kafka`` at a time when drift is detected."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, event: object) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        console.print(f"[yellow]drift detected ({event}); starting a batch retrain[/]")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feedrank.cli.main", "train", "--from-kafka"]
        )


def register(app: typer.Typer) -> None:
    app.command()(learn)
