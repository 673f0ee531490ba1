"""The ``feedrank`` command line: one console script, a subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from feedrank.cli import (
    catalogue_command,
    deploy_command,
    evaluate_command,
    join_command,
    learn_command,
    replay_command,
    rollout_command,
    security_commands,
    serve_command,
    simulate_command,
    stack_commands,
    train_command,
)
from feedrank.cli.context import CliState
from feedrank.core.settings import load_settings
from feedrank.learners.batch.launch import worker_arguments

app = typer.Typer(
    name="feedrank",
    help="Real-time feed ranking: explore (gRPC), log (Kafka), learn, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
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


stack_commands.register(app)
serve_command.register(app)
train_command.register(app)
learn_command.register(app)
join_command.register(app)
replay_command.register(app)
evaluate_command.register(app)
simulate_command.register(app)
deploy_command.register(app)
rollout_command.register(app)
catalogue_command.register(app)
security_commands.register(app)


if __name__ == "__main__":
    app(args=worker_arguments())
