"""``feedrank simulate``: simulated users calling Rank and producing delayed rewards.

The run itself is ``feedrank.simulate.run``; this command parses its flags and shows
the run on the console (``ConsoleRunDisplay``: a live table while it runs).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console, RenderableType
from rich.live import Live

from feedrank.cli.context import settings_of
from feedrank.simulate.run import SimulationOptions, run_simulation

console = Console()


class ConsoleRunDisplay:
    """A simulation run on a rich console: its live table refreshes twice a second."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def show(self, item: object) -> None:
        self._console.print(item)

    def working(self, message: str) -> AbstractContextManager[object]:
        return self._console.status(message)

    @contextmanager
    def live(self, view: Callable[[], object]) -> Iterator[Callable[[], None]]:
        def renderable() -> RenderableType:
            return cast("RenderableType", view())

        with Live(renderable(), console=self._console, refresh_per_second=2) as live:
            yield lambda: live.update(renderable())


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
    if not run_simulation(settings, options, stop, display=ConsoleRunDisplay(console)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(simulate)
