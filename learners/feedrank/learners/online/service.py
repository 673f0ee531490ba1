"""The online learner service (``feedrank learn``): everything it is made of, set up from
the settings, and run until it is stopped.

The catalogue as it stands is replayed first and then followed: its live posts go into
the first version's index, their topics fill in for logs that do not carry them, and
compact decisions and examples get their post features re-joined from it (waiting up
to ``CATALOGUE_WAIT_S`` for a post version the feed has not applied yet). The learner
starts from the registry's latest version (or a fresh model), resumes from its
checkpoint, and reads ``topics.examples`` (and, learning fake negatives, the decisions)
until SIGINT, SIGTERM or, with ``until_idle_s``, a quiet stream stops it. With
``learner.retrain_on_drift``, detected drift starts a warm batch retrain, and with
``learner.retrain_every_s`` one starts on that schedule (``retraining``). Started while the
broker is down, it waits for Kafka (retrying with backoff) before anything else.
"""

from __future__ import annotations

import logging
import signal
import threading

import torch
from confluent_kafka.admin import AdminClient
from prometheus_client import start_http_server

from feedrank.core.clock import SystemClock
from feedrank.core.kafka_clients import KafkaAccess, admin_config
from feedrank.core.kafka_link import BrokerLink
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.learners.bootstrap import catalogue_posts, starting_model
from feedrank.learners.catalogue_replay import follow_catalogue
from feedrank.learners.evaluation.version_judge import CounterfactualJudge
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.learners.joint import StepConfig
from feedrank.learners.online import metrics
from feedrank.learners.online.checkpoint import StreamProgress
from feedrank.learners.online.consumer import ConsumerConfig, OnlineConsumer
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from feedrank.learners.online.monitoring import StreamMonitor
from feedrank.learners.online.publish_gate import PublishGate
from feedrank.learners.online.retraining import Retrainer, RetrainSchedule
from feedrank.learners.post_topics import CatalogueTopics
from feedrank.registry import LocalModelRegistry

log = logging.getLogger("feedrank.learners")
CATALOGUE_WAIT_S = 5.0
"""How long a compact item waits for the catalogue feed to apply the post version its
ranker saw (a post served within moments of its upsert) before it is skipped."""


def run_online_learner(
    settings: Settings,
    *,
    until_idle_s: float | None = None,
    serve_metrics: bool = True,
    stop: threading.Event | None = None,
    reporter: Reporter | None = None,
) -> StreamProgress:
    """Learn online from ``topics.examples`` until ``stop`` is set (by default SIGINT and
    SIGTERM set it: call from the main thread), or, with ``until_idle_s``, no example came
    for that long; checkpoint, commit and publish versions on the way. ``serve_metrics``
    serves /metrics on ``ports.learner_metrics``. Returns where the learner stopped."""
    reporter = reporter or Reporter.logging_to(log)
    if stop is None:
        stop = _stop_on_signals()
    link = BrokerLink("the online learner", on_change=metrics.KAFKA_UP.set)
    _wait_for_kafka(settings.kafka.access, link, stop, reporter)
    learner_settings = settings.learner
    torch.set_num_threads(learner_settings.torch_threads)
    registry = LocalModelRegistry(settings.paths.registry)
    now_ms = SystemClock().now_ms()
    followed = follow_catalogue(
        settings, without="learning without the catalogue", reporter=reporter
    )
    catalogue = followed.state
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

    rejoin = PostFeatureRejoin(
        catalogue, wait_s=CATALOGUE_WAIT_S, on_skip=metrics.count_rejoin_skip
    )
    retrainer = Retrainer(settings, reporter)
    monitor = StreamMonitor(
        window=learner_settings.monitor_window,
        adwin_delta=learner_settings.adwin_delta,
        on_drift=retrainer.on_drift if learner_settings.retrain_on_drift else None,
    )
    if learner_settings.retrain_every_s > 0:
        RetrainSchedule(retrainer, learner_settings.retrain_every_s, stop).begin()
    consumer = OnlineConsumer(
        ConsumerConfig(
            bootstrap=settings.kafka.access,
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
            idle_exit_s=until_idle_s,
        ),
        make_learner=make_learner,
        registry=registry,
        topics=CatalogueTopics(catalogue),
        monitor=monitor,
        initial_catalogue=catalogue_posts(catalogue, now_ms),
        rejoin=rejoin,
        link=link,
        judge=CounterfactualJudge(
            settings,
            registry,
            PostFeatureRejoin(catalogue),  # its own skips: not the learner's "not learned"
            on_outcome=lambda outcome: metrics.OPE_ESTIMATES.labels(outcome=outcome).inc(),
        )
        if registry is not None and learner_settings.ope_window_s > 0
        else None,
        gate=PublishGate(
            learner_settings.publish_min_auc, learner_settings.publish_calibration_range
        ),
    )
    if serve_metrics:
        start_http_server(settings.ports.learner_metrics, addr=settings.ports.bind_host)
    reporter.say(
        f"learning from {' + '.join(consumer.topics_read)} ({learner_settings.feedback}; "
        f"state in {consumer.config.state_dir}, "
        f"{consumer.progress.examples_applied:,} examples applied so far)"
    )
    try:
        progress = consumer.run(stop)
    finally:
        followed.stop()
        retrainer.stop()
    if rejoin.skipped:
        reporter.warn(f"not learned (post version not in the catalogue): {rejoin.skip_summary()}")
    reporter.say(
        f"stopped after {progress.examples_applied:,} examples; offsets {progress.offsets}; "
        f"latest version {progress.last_version or '-'}"
    )
    return progress


def _wait_for_kafka(
    bootstrap: KafkaAccess, link: BrokerLink, stop: threading.Event, reporter: Reporter
) -> None:
    """Return once Kafka answers a metadata request (or ``stop`` is set), retrying with
    backoff: the learner reads nothing without it, and its catalogue replay must not
    start against a broker that is down (it would go on without the posts)."""
    admin = AdminClient(admin_config(bootstrap, log_level=0))
    waited = False
    while not stop.is_set():
        link.attempt(lambda: admin.list_topics(timeout=5.0), "metadata request")
        if link.up:
            return
        if not waited:
            reporter.warn(f"waiting for Kafka at {bootstrap} ({link.last_error})")
            waited = True
        stop.wait(link.seconds_to_next_try())


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
