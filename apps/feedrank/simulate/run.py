"""One run of the simulated apps, from the world to the report, shown through a display.

``run_simulation`` builds the world, waits for the Ranking service, publishes the
catalogue (``publish_catalogue``), drives the simulated users until the run is done or
stopped, then writes engagement.csv and engagement.png and shows the totals. What it
shows goes through a ``RunDisplay``: the CLI's puts it on a live console table, so this
module needs no terminal library of its own. Lines may hold console markup (``[red]…[/]``)
and the tables are ``feedrank.simulate.report``'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from feedrank.client import EventProducer, TopicNames
from feedrank.core.clock import AcceleratedClock, SystemClock, to_datetime
from feedrank.core.settings import Settings
from feedrank.core.time_units import HOUR_MS
from feedrank.simulate.catalogue_publisher import Progress, publish_world, wait_until_served
from feedrank.simulate.driver import Simulation, SimulationConfig
from feedrank.simulate.engagement import EngagementLedger
from feedrank.simulate.ope_report import gate_report_lines
from feedrank.simulate.rank_client import GrpcRankClient
from feedrank.simulate.reward_sink import KafkaRewardSink
from feedrank.simulate.world import BehaviourModel, World, generate_world, world_config

CATALOGUE_SERVED_S = 600.0


class RunDisplay(Protocol):
    """Where a run shows itself: lines and tables, a note while it works, a live view."""

    def show(self, item: object) -> None:
        """Show a line (console markup allowed) or a report table."""

    def working(self, message: str) -> AbstractContextManager[object]:
        """Show ``message`` while the block runs."""

    def live(self, view: Callable[[], object]) -> AbstractContextManager[Callable[[], None]]:
        """Show ``view()`` while the block runs; the block gets a callable that refreshes it."""


@dataclass(frozen=True)
class SimulationOptions:
    """What one run does: how long, how fast, how much traffic, where it reports."""

    duration_s: float
    speed: float
    requests_per_s: float
    threads: int
    feed_size: int
    address: str
    bucket_hours: float
    out_dir: Path
    ready_timeout_s: float = 30.0  # how long to wait for the Ranking service


def run_simulation(
    settings: Settings, options: SimulationOptions, stop: threading.Event, *, display: RunDisplay
) -> bool:
    """Run the simulated apps with a live view until done or ``stop``; False on failures."""
    # matplotlib (the report's plot) loads here, not with every feedrank command.
    from feedrank.simulate.report import (  # noqa: PLC0415
        holdout_summary,
        totals_table,
        write_csv,
        write_plot,
    )

    start_ms = settings.world.start_or(SystemClock().now_ms())
    with display.working(f"building the simulated world ({settings.world.num_posts:,} posts)…"):
        world = generate_world(world_config(settings.world, start_ms))
        behaviour = BehaviourModel(world, seed=settings.world.behaviour_seed)
    api_key = settings.world.rank_api_key
    client = GrpcRankClient(
        options.address,
        tls=settings.tls,
        api_key=api_key.get_secret_value() if api_key is not None else None,
    )
    try:
        client.wait_ready(timeout_s=options.ready_timeout_s)
    except grpc.FutureTimeoutError:
        client.close()
        display.show(f"[red]no Ranking service at {options.address}[/]: start `feedrank serve`")
        return False
    if not publish_catalogue(settings, world, display):
        return False
    sink = KafkaRewardSink(settings.kafka.access, settings.topics.rewards)
    clock = AcceleratedClock(start_ms, options.speed)
    ledger = EngagementLedger(
        bucket_ms=int(options.bucket_hours * HOUR_MS),
        reward_window_ms=int(settings.time.reward_window.total_seconds() * 1000),
    )
    simulation = Simulation(
        SimulationConfig(
            duration_s=options.duration_s,
            requests_per_s=options.requests_per_s,
            request_threads=options.threads,
            feed_size=options.feed_size,
            max_post_age_days=settings.explore.max_post_age_days,
            seed=settings.world.behaviour_seed,
        ),
        world=world,
        behaviour=behaviour,
        client=client,
        sink=sink,
        clock=clock,
        ledger=ledger,
    )
    started = time.monotonic()

    def view() -> object:
        simulated = to_datetime(clock.now_ms()).strftime("%Y-%m-%d %H:%M")
        stats = simulation.stats
        title = (
            f"simulated {simulated} UTC · {time.monotonic() - started:.0f}/"
            f"{options.duration_s:.0f} s · {stats.requests:,} feeds · "
            f"{stats.rewards_delivered:,} rewards delivered · {len(simulation.pending):,} "
            f"pending · failures {dict(stats.failures) or 0}"
        )
        return totals_table(ledger, title)

    def on_tick(refresh: Callable[[], None]) -> None:
        if stop.is_set():
            simulation.stop()
        refresh()

    try:
        with display.live(view) as refresh:
            simulation.run(on_tick=lambda: on_tick(refresh))
    except KeyboardInterrupt:
        simulation.stop()
    finally:
        undelivered = sink.close()
        client.close()
    write_csv(ledger, options.out_dir / "engagement.csv")
    write_plot(ledger, options.out_dir / "engagement.png", "feedrank: engagement per arm")
    display.show(totals_table(ledger, "engagement over the whole run"))
    if (versus_holdout := holdout_summary(ledger)) is not None:
        display.show(versus_holdout)
    display.show(f"curve: {options.out_dir / 'engagement.png'} (data: engagement.csv beside it)")
    ports = settings.ports
    deploy = settings.explore.deploy_address or f"{ports.bind_host}:{ports.deploy_grpc}"
    for line in gate_report_lines(ledger, deploy, settings.tls, options.out_dir):
        display.show(line)
    if undelivered or sink.failed:
        display.show(f"[red]{undelivered + sink.failed} rewards were not delivered to Kafka[/]")
        return False
    return True


def publish_catalogue(settings: Settings, world: World, display: RunDisplay) -> bool:
    """Send the world's catalogue to the entity topics, as an app does, and wait until
    the local explore service serves all of it; False when it does not in time."""
    topics = settings.topics
    names = TopicNames(posts=topics.posts, users=topics.users, graph=topics.graph)
    progress = thinned_progress(display.show)
    display.show(f"publishing the simulated catalogue to {topics.users} and {topics.posts}…")
    with EventProducer(settings.kafka.access, topics=names) as producer:
        published = publish_world(world, producer, progress)
    display.show(
        f"published {published.posts:,} posts, {published.users:,} users and "
        f"{published.creators:,} creators in {published.seconds:.1f} s"
    )
    for metrics_url in explore_metrics_urls(settings):
        if not wait_until_served(metrics_url, published.posts, CATALOGUE_SERVED_S, progress):
            display.show(
                f"[red]explore ({metrics_url}) did not serve the catalogue in "
                f"{CATALOGUE_SERVED_S:.0f} s[/]"
            )
            return False
    return True


def explore_metrics_urls(settings: Settings) -> list[str]:
    """The /metrics of every explore host of the local stack: one, or in the cluster
    topology each replica behind the balancer."""
    host, cluster = settings.ports.bind_host, settings.cluster
    if cluster.topology == "single":
        return [f"http://{host}:{settings.ports.explore_metrics}/metrics"]
    first = cluster.explore_first_metrics_port
    return [
        f"http://{host}:{first + replica}/metrics" for replica in range(cluster.explore_replicas)
    ]


def thinned_progress(show: Callable[[str], None]) -> Progress:
    """A ``Progress`` that shows ``  what: done/total`` about every fifth of each total,
    and always at its end."""
    shown: dict[str, int] = {}

    def progress(what: str, done: int, total: int) -> None:
        step = max(total // 5, 1)
        if done == total or done >= shown.get(what, -step) + step:
            shown[what] = done
            show(f"  {what}: {done:,}/{total:,}")

    return progress
