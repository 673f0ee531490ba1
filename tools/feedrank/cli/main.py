"""The ``feedrank`` command line: one console script, a subcommand per job.

A run imports only the module of the command it runs (:data:`COMMANDS`): ``feedrank
status`` or ``feedrank deploy`` need neither torch nor the simulator, and importing
every command's module cost each of them (and every component the stack starts, and
every status poll) about 4 s of CPU on a 2-core box. ``--help``, no command or an
unknown one loads them all. ``app``, the whole command line, is built on first use (the
tests' ``CliRunner`` takes it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from feedrank.cli.context import CliState
from feedrank.core.settings import load_settings
from feedrank.learners.batch.launch import worker_arguments

COMMANDS = {
    "setup": "stack_commands",
    "up": "stack_commands",
    "status": "stack_commands",
    "down": "stack_commands",
    "supervise": "stack_commands",
    "serve": "serve_command",
    "train": "train_command",
    "learn": "learn_command",
    "join": "join_command",
    "replay": "replay_command",
    "evaluate": "evaluate_command",
    "simulate": "simulate_command",
    "deploy": "deploy_command",
    "rollout": "rollout_command",
    "catalogue": "catalogue_command",
    "api-keys": "security_commands",
    "certs": "security_commands",
}
"""Each top-level command and the module (in ``feedrank.cli``) whose ``register`` adds it."""
OPTIONS_WITH_VALUES = ("--config", "-c")  # the callback's; a command comes after them


def main(
    context: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML settings file (also FEEDRANK_CONFIG). Env vars FEEDRANK_* override it.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """feedrank: explore, log, learn, deploy."""
    # One BLAS thread per process. Torch does the heavy maths on its own threads, and the
    # processes of the stack share the cores. numpy's OpenBLAS would otherwise start a
    # thread per core for each product, and those threads busy-wait between calls. In the
    # simulated apps' oracle scoring that cost 6.3 s of CPU where 2.4 s did the same work.
    threadpool_limits(limits=1, user_api="blas")
    try:
        settings = load_settings(config)
    except (ValidationError, ValueError, FileNotFoundError) as error:
        typer.secho(f"invalid settings: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    context.obj = CliState(settings=settings)


def command_line(modules: Sequence[str] = tuple(dict.fromkeys(COMMANDS.values()))) -> typer.Typer:
    """The command line with the commands of ``modules`` (all by default), in help's order."""
    line = typer.Typer(
        name="feedrank",
        help="Real-time feed ranking: explore (gRPC), log (Kafka), learn, deploy.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    line.callback()(main)
    for module in modules:
        importlib.import_module(f"feedrank.cli.{module}").register(line)
    return line


def command_named(arguments: Sequence[str]) -> str | None:
    """The command ``arguments`` run (the first one past the callback's options), or None
    for help, none or an unknown one."""
    at = 0
    while at < len(arguments):
        argument = arguments[at]
        if argument in OPTIONS_WITH_VALUES:
            at += 2
        elif argument.startswith("-"):
            if argument in ("--help", "-h"):
                return None
            at += 1
        else:
            return argument if argument in COMMANDS else None
    return None


def run(arguments: Sequence[str] | None = None) -> None:
    """The console script: ``arguments`` (default: this process's; in a torchrun worker,
    the ones its launcher passed) with only the module of their command loaded."""
    if arguments is None:
        arguments = worker_arguments() or sys.argv[1:]
    command = command_named(arguments)
    if command is None:
        command_line()(args=list(arguments))
    else:
        command_line([COMMANDS[command]])(args=list(arguments))


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole command line, built once, on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    whole = command_line()
    globals()["app"] = whole
    return whole


if __name__ == "__main__":
    run()
