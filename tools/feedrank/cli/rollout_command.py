"""``feedrank rollout …``: the deploy service's client, after the Argo Rollouts plugin.

Every command talks to the Deploy gRPC service (``--address``, default
``127.0.0.1:<ports.deploy_grpc>``), prints a table (or JSON with ``--json``) and exits
1 with a one-line error when the service refuses. ``status`` exits 0 only when the
rollout is healthy (stable or promoted).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from feedrank.cli import rollout_views as views
from feedrank.cli.context import settings_of
from feedrank.core.settings import TlsSettings
from feedrank.deploy.access import operator_token
from feedrank.deploy.client import DeployCallFailed, DeployClient
from feedrank.v1 import deploy_pb2

console = Console()
app = typer.Typer(
    name="rollout",
    help="Canary rollouts of registry model versions (talks to `feedrank deploy`).",
    no_args_is_help=True,
)
Reply = TypeVar("Reply")

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="Deploy service host:port (default: 127.0.0.1:<ports.deploy_grpc>)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DeadlineOption = Annotated[float, typer.Option("--rpc-timeout", help="Seconds per call.", min=0.1)]


class _RolloutClient(DeployClient):
    """A deploy client whose failed calls print the error (JSON with ``--json``), exit 1."""

    def __init__(
        self,
        address: str,
        timeout_s: float,
        as_json: bool,
        token: str | None,
        tls: TlsSettings,
    ) -> None:
        super().__init__(address, timeout_s, token, tls)
        self.as_json = as_json

    def call(self, method: Callable[..., Reply], request: object) -> Reply:
        try:
            return super().call(method, request)
        except DeployCallFailed as failure:
            self.fail(failure)

    def fail(self, failure: DeployCallFailed) -> NoReturn:
        if self.as_json:
            print(json.dumps({"error": failure.to_dict()}))
        else:
            console.print(f"[red]error:[/] {failure.code.name}: {failure.message}", soft_wrap=True)
        raise typer.Exit(1) from failure


def _client(
    context: typer.Context, address: str | None, rpc_timeout: float, as_json: bool
) -> _RolloutClient:
    settings = settings_of(context)
    address = address or f"127.0.0.1:{settings.ports.deploy_grpc}"
    token = operator_token(settings)
    return _RolloutClient(address, rpc_timeout, as_json, token, settings.tls)


def _show(client: _RolloutClient, rollout: deploy_pb2.Rollout) -> None:
    if client.as_json:
        print(json.dumps(views.rollout_dict(rollout)))
    else:
        console.print(views.rollout_table(rollout))


def _print_json(document: Any) -> None:
    print(json.dumps(document))
    sys.stdout.flush()


@app.command()
def models(
    context: typer.Context,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """List registry versions with their metrics and roles."""
    client = _client(context, address, rpc_timeout, as_json)
    listed = client.call(client.stub.ListModels, deploy_pb2.ListModelsRequest()).models
    rollout = client.call(client.stub.GetRollout, deploy_pb2.GetRolloutRequest())
    if as_json:
        _print_json([views.model_dict(model) for model in listed])
    else:
        console.print(views.models_table(list(listed), rollout))


@app.command()
def status(
    context: typer.Context,
    *,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow until healthy, degraded or timeout.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --watch: give up after this many seconds.", min=0)
    ] = 600.0,
    interval: Annotated[float, typer.Option(help="With --watch: poll period (s).", min=0.05)] = 1.0,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Show the rollout; exit 0 only when it is healthy (stable or promoted)."""
    client = _client(context, address, rpc_timeout, as_json)
    rollout = client.call(client.stub.GetRollout, deploy_pb2.GetRolloutRequest())
    _show(client, rollout)
    deadline = time.monotonic() + timeout
    while watch and views.phase_name(rollout) not in views.HEALTHY | views.DEGRADED:
        if time.monotonic() >= deadline:
            if not as_json:
                console.print(
                    f"[red]timed out after {timeout:.0f}s[/]: still {views.phase_name(rollout)}"
                )
            raise typer.Exit(1)
        time.sleep(interval)
        latest = client.call(client.stub.GetRollout, deploy_pb2.GetRolloutRequest())
        if latest != rollout:
            rollout = latest
            _show(client, rollout)
    raise typer.Exit(0 if views.is_healthy(rollout) else 1)


@app.command()
def start(
    context: typer.Context,
    version: Annotated[str, typer.Argument(help="Registry version to canary, e.g. v0002.")],
    *,
    steps: Annotated[
        str | None,
        typer.Option(help="Canary weights, comma-separated, e.g. 0.01,0.05,0.25,0.5,1.0."),
    ] = None,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 30.0,
) -> None:
    """Start a canary of VERSION (the counterfactual gate runs first)."""
    weights = _parse_steps(steps) if steps else []
    client = _client(context, address, rpc_timeout, as_json)
    rollout = client.call(
        client.stub.StartRollout, deploy_pb2.StartRolloutRequest(version=version, steps=weights)
    )
    _show(client, rollout)
    if views.phase_name(rollout) in views.DEGRADED:
        raise typer.Exit(1)


@app.command("set-weight")
def set_weight(
    context: typer.Context,
    weight: Annotated[str, typer.Argument(help="Canary share: 0.05 or 5%.")],
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Hold the canary at WEIGHT by hand (pauses the rollout)."""
    share = _parse_weight(weight)
    client = _client(context, address, rpc_timeout, as_json)
    _show(
        client, client.call(client.stub.SetWeight, deploy_pb2.SetWeightRequest(canary_weight=share))
    )


@app.command()
def pause(
    context: typer.Context,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Hold the canary at its current weight."""
    client = _client(context, address, rpc_timeout, as_json)
    _show(client, client.call(client.stub.PauseRollout, deploy_pb2.PauseRolloutRequest()))


@app.command()
def resume(
    context: typer.Context,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Let a paused rollout advance again."""
    client = _client(context, address, rpc_timeout, as_json)
    _show(client, client.call(client.stub.ResumeRollout, deploy_pb2.ResumeRolloutRequest()))


@app.command()
def promote(
    context: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step.")] = False,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Skip to the next step, or with --full make the canary stable now."""
    client = _client(context, address, rpc_timeout, as_json)
    request = deploy_pb2.PromoteRolloutRequest(full=full)
    _show(client, client.call(client.stub.PromoteRollout, request))


@app.command()
def abort(
    context: typer.Context,
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "",
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Send canary traffic to 0 now; the stable version serves everyone."""
    client = _client(context, address, rpc_timeout, as_json)
    request = deploy_pb2.AbortRolloutRequest(reason=reason)
    _show(client, client.call(client.stub.AbortRollout, request))


@app.command()
def undo(
    context: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="Version to make stable (default: the previous stable).")
    ] = "",
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 30.0,
) -> None:
    """Restore the previous stable version (or --to VERSION) at once."""
    client = _client(context, address, rpc_timeout, as_json)
    request = deploy_pb2.UndoRolloutRequest(to_version=to)
    _show(client, client.call(client.stub.UndoRollout, request))


@app.command()
def history(
    context: typer.Context,
    address: AddressOption = None,
    as_json: JsonOption = False,
    rpc_timeout: DeadlineOption = 5.0,
) -> None:
    """Every rollout state change, oldest first."""
    client = _client(context, address, rpc_timeout, as_json)
    entries = client.call(client.stub.RolloutHistory, deploy_pb2.RolloutHistoryRequest()).entries
    if as_json:
        _print_json([views.rollout_dict(entry) for entry in entries])
    else:
        console.print(views.history_table(list(entries)))


def _parse_steps(text: str) -> list[float]:
    try:
        return [_parse_weight(part) for part in text.split(",") if part.strip()]
    except typer.BadParameter as error:
        raise typer.BadParameter(f"--steps {text!r}: {error}") from error


def _parse_weight(text: str) -> float:
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not a share like 0.05 or 5%") from error
    if not math.isfinite(share):
        raise typer.BadParameter(f"{text!r} is not finite")
    return share


def register(parent: typer.Typer) -> None:
    parent.add_typer(app)
