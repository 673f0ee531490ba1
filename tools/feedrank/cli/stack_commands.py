"""``feedrank setup / up / status / down``: the local embedded stack."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import asdict
from enum import Enum
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from feedrank.cli.context import settings_of
from feedrank.core.settings import Settings
from feedrank.stack.components import StackError
from feedrank.stack.jars import JarLocations, fetch_jars
from feedrank.stack.kafka_broker import KafkaBrokerError
from feedrank.stack.maven import JarFetchError
from feedrank.stack.supervisor import ComponentStatus, LocalStack
from feedrank.stack.topology import (
    TOPOLOGIES,
    remember_topology,
    remembered_topology,
    wired_settings,
    with_topology,
)

console = Console()
STACK_ERRORS = (StackError, KafkaBrokerError, JarFetchError)
DEMO_SECONDS = 600.0  # ten minutes of wall clock …
DEMO_SPEED = 1440.0  # … at a simulated day per minute: ten simulated days


TopologyChoice = Enum("TopologyChoice", {name: name for name in TOPOLOGIES}, type=str)  # type: ignore[misc]


def setup(context: typer.Context) -> None:
    """Fetch the Kafka broker jars and the Flink Kafka connector through Maven and build the
    join's Java engine (once; the engine again when its sources change)."""
    settings = settings_of(context)
    missing = JarLocations.from_settings(settings).missing()
    if not missing:
        console.print(f"jars already cached in {settings.paths.jar_cache}")
        return
    started = time.monotonic()
    console.print(f"fetching or building {'; '.join(missing)}…")
    with console.status("Maven, protoc and javac at work…"):
        try:
            locations = fetch_jars(settings)
        except JarFetchError as error:
            _fail(str(error))
    console.print(
        f"[green]jars ready[/] in {time.monotonic() - started:.0f}s: "
        f"{locations.kafka_dir}, {locations.flink_connector}, {locations.join_engine}"
    )


def up(
    context: typer.Context,
    *,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Leave the stack running and return once healthy."),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(help="Run the closed-loop demo (simulated apps) once the stack is up."),
    ] = True,
    duration: Annotated[
        float, typer.Option(help="Wall-clock seconds of the demo.", min=1)
    ] = DEMO_SECONDS,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per wall-clock second in the demo.", min=1)
    ] = DEMO_SPEED,
    topology: Annotated[
        TopologyChoice | None,
        typer.Option(
            help="'single': one Kafka broker, the join on PyFlink's mini-cluster, one explore "
            "host. 'cluster': 3 Kafka brokers (replication 3), a Flink session cluster "
            "(JobManager on :8081, 2 TaskManagers) running the join, explore replicas behind "
            "HAProxy on :50051. Default: cluster.topology, or what the running stack uses.",
        ),
    ] = None,
) -> None:
    """Start the local stack (Kafka, explore, join, learner, deploy) and run the demo.

    In the foreground the closed-loop demo runs (simulated users call Rank, engage,
    and the loop learns and rolls out), then everything stops; Ctrl-C stops early.
    With --no-demo the stack runs until Ctrl-C.
    """
    try:
        chosen = topology.value if topology is not None else None
        stack = LocalStack(wired_settings(_stack_settings(context, chosen)))
        remember_topology(stack.settings)
        # Imported here: the registry imports torch (3 s of CPU), which status, down and
        # supervise do without.
        from feedrank.stack.bootstrap import bootstrap_needed, train_bootstrap_model  # noqa: PLC0415

        if bootstrap_needed(stack.settings):
            console.print(
                f"bootstrapping: training the first model on "
                f"{stack.settings.learner.bootstrap_examples:,} simulated historical examples"
            )
            train_bootstrap_model(stack.settings)
        if detach:
            with console.status("starting the local stack…"):
                stack.up(detach=True, on_progress=_announce_progress)
                stack.start_supervisor()
            statuses = stack.status()
            _print_statuses(statuses, supervisor=stack.supervisor_pid())
            if not all(status.healthy for status in statuses):
                raise typer.Exit(1)
            console.print(
                "stack is up (components that die are restarted); `feedrank down` stops it"
            )
            return
        task = None
        if demo:
            # Imported here, as the bootstrap above: the simulator imports torch too.
            from feedrank.cli.simulate_command import ConsoleRunDisplay  # noqa: PLC0415
            from feedrank.simulate.run import SimulationOptions, run_simulation  # noqa: PLC0415

            options = SimulationOptions(
                duration_s=duration,
                speed=speed,
                requests_per_s=40.0,
                threads=4,
                feed_size=20,
                address=f"127.0.0.1:{stack.settings.ports.ranking_grpc}",
                bucket_hours=6.0,
                out_dir=stack.settings.paths.state_dir / "demo",
            )

            def task(stop: threading.Event) -> None:
                run_simulation(stack.settings, options, stop, display=ConsoleRunDisplay(console))

        stack.run_foreground(
            on_ready=_announce_foreground,
            task=task,
            on_event=_announce_restart,
            on_progress=_announce_progress,
        )
    except STACK_ERRORS as error:
        _fail(str(error))
    console.print("stack stopped")


def _stack_settings(context: typer.Context, topology: str | None = None) -> Settings:
    """The CLI's settings in the topology asked for, else the one the last ``up`` on this
    state directory started (so status, down and the supervisor cover every piece)."""
    settings = settings_of(context)
    chosen = next((known for known in TOPOLOGIES if known == topology), None)
    chosen = chosen or remembered_topology(settings) or settings.cluster.topology
    if chosen == settings.cluster.topology:
        return settings
    return with_topology(settings, chosen)


def status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each component's process, health and restarts; exit code 0 only when all are
    healthy."""
    try:
        stack = LocalStack(_stack_settings(context))
    except STACK_ERRORS as error:
        _fail(str(error))
    statuses = stack.status()
    if as_json:
        typer.echo(json.dumps([asdict(item) for item in statuses], indent=2))
    else:
        _print_statuses(statuses, supervisor=stack.supervisor_pid())
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


def down(context: typer.Context) -> None:
    """Stop every component of the local stack (data stays under the state directory)."""
    try:
        stopped = LocalStack(_stack_settings(context)).down()
    except STACK_ERRORS as error:
        _fail(str(error))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def supervise(context: typer.Context) -> None:
    """Restart the detached stack's components that die (started by `up --detach`,
    stopped by `down`); runs until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    LocalStack(_stack_settings(context)).supervise(stop, tie_to_parent=False)


def register(app: typer.Typer) -> None:
    for command in (setup, up, status, down):
        app.command()(command)
    app.command(hidden=True)(supervise)


def _announce_foreground(statuses: list[ComponentStatus]) -> None:
    _print_statuses(statuses, supervisor=os.getpid())
    console.print("stack is up; press Ctrl-C to stop it")


def _announce_progress(line: str) -> None:
    console.print(f"  {line}")


def _announce_restart(event: str) -> None:
    console.print(f"[yellow]supervisor:[/] {event}")


def _print_statuses(statuses: list[ComponentStatus], *, supervisor: int | None) -> None:
    caption = None
    if supervisor is not None:
        caption = f"supervised by pid {supervisor}: components that die are restarted"
    elif any(item.pid is not None for item in statuses):
        caption = "not supervised: a component that dies stays down (`feedrank up` restarts it)"
    table = Table(title="feedrank local stack", caption=caption)
    for column in ("component", "state", "pid", "restarts", "endpoint", "detail"):
        table.add_column(column)
    colours = {
        "healthy": "green",
        "unhealthy": "red",
        "failed": "red",
        "stopped": "yellow",
        "restarting": "yellow",
    }
    for item in statuses:
        colour = colours.get(item.state, "white")
        table.add_row(
            item.name,
            f"[{colour}]{item.state}[/]",
            str(item.pid or "-"),
            str(item.restarts),
            item.endpoint,
            item.detail,
        )
    console.print(table)


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)
