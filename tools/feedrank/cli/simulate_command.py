"""``feedrank simulate``: simulated users calling Rank and producing delayed rewards."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from feedrank.cli.context import settings_of
from feedrank.client import EventProducer, TopicNames
from feedrank.core.clock import AcceleratedClock, SystemClock, to_datetime
from feedrank.core.settings import Settings
from feedrank.core.time_units import HOUR_MS
from feedrank.simulate.catalogue_publisher import publish_world, wait_until_served
from feedrank.simulate.driver import Simulation, SimulationConfig
from feedrank.simulate.engagement import EngagementLedger
from feedrank.simulate.rank_client import GrpcRankClient
from feedrank.simulate.reward_sink import KafkaRewardSink
from feedrank.simulate.world import BehaviourModel, World, generate_world, world_config

console = Console()
CATALOGUE_SERVED_S = 600.0


def simulate(
    context: typer.Context,
    *,
    duration: Annotated[float, typer.Option(help="Wall-clock seconds to run.", min=1)] = 120.0,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per wall-clock second (3600: 1 h/s).", min=1)
    ] = 3600.0,
    rate: Annotated[float, typer.Option(help="Rank calls per wall-clock second.", min=0)] = 40.0,
    threads: Annotated[int, typer.Option(help="Concurrent request threads.", min=1)] = 4,
    feed_size: Annotated[int, typer.Option(help="Items asked for per Rank call.", min=1)] = 20,
    address: Annotated[
        str | None, typer.Option(help="Ranking gRPC address (default: the local service).")
    ] = None,
    bucket_hours: Annotated[
        float, typer.Option(help="Simulated hours per point of the engagement curve.", min=0.01)
    ] = 6.0,
    out: Annotated[
        Path | None, typer.Option(help="Where the CSV and plot go (default: <state>/simulate).")
    ] = None,
) -> None:
    """Play the apps: simulated users open their feed, engage later; rewards go to Kafka.

    Prints engagement per arm and model version beside a random feed and the ORACLE
    (the only reader of the world's hidden parameters), and writes engagement.csv and
    engagement.png (engagement rate per arm over simulated time).
    """
    settings = settings_of(context)
    options = SimulationOptions(
        duration_s=duration,
        speed=speed,
        requests_per_s=rate,
        threads=threads,
        feed_size=feed_size,
        address=address or f"{settings.ports.bind_host}:{settings.ports.ranking_grpc}",
        bucket_hours=bucket_hours,
        out_dir=out or settings.paths.state_dir / "simulate",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if not run_simulation(settings, options, stop):
        raise typer.Exit(1)


@dataclass(frozen=True)
class SimulationOptions:
    duration_s: float
    speed: float
    requests_per_s: float
    threads: int
    feed_size: int
    address: str
    bucket_hours: float
    out_dir: Path


def run_simulation(settings: Settings, options: SimulationOptions, stop: threading.Event) -> bool:
    """Run the simulated apps with a live table until done or ``stop``; False on failures."""
    # matplotlib (the report's plot) loads here, not with every feedrank command.
    from feedrank.simulate.report import (  # noqa: PLC0415
        holdout_summary,
        totals_table,
        write_csv,
        write_plot,
    )

    start_ms = settings.world.start_or(SystemClock().now_ms())
    with console.status(f"building the simulated world ({settings.world.num_posts:,} posts)…"):
        world = generate_world(world_config(settings.world, start_ms))
        behaviour = BehaviourModel(world, seed=settings.world.behaviour_seed)
    client = GrpcRankClient(options.address)
    try:
        client.wait_ready(timeout_s=30)
    except grpc.FutureTimeoutError:
        console.print(f"[red]no Ranking service at {options.address}[/]: start `feedrank serve`")
        return False
    if not publish_catalogue(settings, world):
        return False
    sink = KafkaRewardSink(settings.kafka.bootstrap, settings.topics.rewards)
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

    def view() -> Table:
        simulated = to_datetime(clock.now_ms()).strftime("%Y-%m-%d %H:%M")
        stats = simulation.stats
        title = (
            f"simulated {simulated} UTC · {time.monotonic() - started:.0f}/"
            f"{options.duration_s:.0f} s · {stats.requests:,} feeds · "
            f"{stats.rewards_delivered:,} rewards delivered · {len(simulation.pending):,} "
            f"pending · failures {dict(stats.failures) or 0}"
        )
        return totals_table(ledger, title)

    def on_tick(live: Live) -> None:
        if stop.is_set():
            simulation.stop()
        live.update(view())

    try:
        with Live(view(), console=console, refresh_per_second=2) as live:
            simulation.run(on_tick=lambda: on_tick(live))
    except KeyboardInterrupt:
        simulation.stop()
    finally:
        undelivered = sink.close()
        client.close()
    write_csv(ledger, options.out_dir / "engagement.csv")
    write_plot(ledger, options.out_dir / "engagement.png", "feedrank: engagement per arm")
    console.print(totals_table(ledger, "engagement over the whole run"))
    if (versus_holdout := holdout_summary(ledger)) is not None:
        console.print(versus_holdout)
    console.print(f"curve: {options.out_dir / 'engagement.png'} (data: engagement.csv beside it)")
    if undelivered or sink.failed:
        console.print(f"[red]{undelivered + sink.failed} rewards were not delivered to Kafka[/]")
        return False
    return True


def publish_catalogue(settings: Settings, world: World) -> bool:
    """Send the world's catalogue to the entity topics, as an app does, and wait until
    the local explore service serves all of it; False when it does not in time."""
    topics = settings.topics
    names = TopicNames(posts=topics.posts, users=topics.users, graph=topics.graph)
    printed: dict[str, int] = {}

    def progress(what: str, done: int, total: int) -> None:
        step = max(total // 5, 1)
        if done == total or done >= printed.get(what, -step) + step:
            printed[what] = done
            console.print(f"  {what}: {done:,}/{total:,}")

    console.print(f"publishing the simulated catalogue to {topics.users} and {topics.posts}…")
    with EventProducer(settings.kafka.bootstrap, topics=names) as producer:
        published = publish_world(world, producer, progress)
    console.print(
        f"published {published.posts:,} posts, {published.users:,} users and "
        f"{published.creators:,} creators in {published.seconds:.1f} s"
    )
    metrics_url = f"http://{settings.ports.bind_host}:{settings.ports.explore_metrics}/metrics"
    if not wait_until_served(metrics_url, published.posts, CATALOGUE_SERVED_S, progress):
        console.print(f"[red]explore did not serve the catalogue in {CATALOGUE_SERVED_S:.0f} s[/]")
        return False
    return True


def register(app: typer.Typer) -> None:
    app.command()(simulate)
