"""``feedrank certs`` and ``feedrank api-keys``: TLS certificates and Rank's per-app keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from feedrank.cli.context import settings_of
from feedrank.explore.api_keys import add_key
from feedrank.stack.certificates import CertificateError, make_certificates

console = Console()
api_keys_app = typer.Typer(
    help="Per-app API keys Rank requires when explore.api_keys_file is set.",
    no_args_is_help=True,
)


def certs(
    context: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the files go (default: <state_dir>/certs)."),
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Name or address in the server certificate (repeat; default: "
            "localhost and 127.0.0.1).",
        ),
    ] = None,
    clients: Annotated[
        list[str] | None,
        typer.Option(
            "--client",
            help="Client certificate to make, by identity name (repeat; default: "
            "local-operator and local-viewer, the deploy service's local identities).",
        ),
    ] = None,
) -> None:
    """Make a local CA, a server certificate and client certificates for TLS and mutual
    TLS (openssl; files already there are kept), and print the settings that use them."""
    settings = settings_of(context)
    target = directory or settings.paths.state_dir / "certs"
    try:
        issued = make_certificates(
            target,
            hosts=tuple(hosts or ("localhost", "127.0.0.1")),
            clients=tuple(clients or ("local-operator", "local-viewer")),
        )
    except CertificateError as error:
        console.print(f"[red]certificates not made:[/] {error}")
        raise typer.Exit(1) from error
    operator = issued.client((clients or ["local-operator"])[0])
    console.print(f"certificates in {target} (keys are private, mode 0600). Servers:")
    console.print(
        f"  FEEDRANK_TLS__CERT_FILE={issued.server_cert} "
        f"FEEDRANK_TLS__KEY_FILE={issued.server_key}\n"
        f"  FEEDRANK_TLS__CLIENT_CA_FILE={issued.ca_cert}   (mutual TLS: clients must "
        "present a certificate)\nClients (the CLI, the simulator):\n"
        f"  FEEDRANK_TLS__CA_FILE={issued.ca_cert}\n"
        f"  FEEDRANK_TLS__CLIENT_CERT_FILE={operator.cert} "
        f"FEEDRANK_TLS__CLIENT_KEY_FILE={operator.key}",
        soft_wrap=True,
    )


@api_keys_app.command("add")
def add(
    context: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app the key is for.")],
    file: Annotated[
        Path | None,
        typer.Option(
            help="The key file (default: explore.api_keys_file, else "
            "<state_dir>/explore/api-keys.json)."
        ),
    ] = None,
) -> None:
    """Make a new API key for APP, add it to the key file (0600) and print it once.
    A running explore service picks it up within a second."""
    settings = settings_of(context)
    path = (
        file
        or settings.explore.api_keys_file
        or settings.paths.state_dir / "explore" / ("api-keys.json")
    )
    try:
        key = add_key(path, app_name)
    except (OSError, ValueError) as error:
        console.print(f"[red]no key added:[/] {error}")
        raise typer.Exit(1) from error
    typer.echo(key)
    typer.echo(
        f"added for {app_name} to {path}; Rank requires keys once "
        f"FEEDRANK_EXPLORE__API_KEYS_FILE={path}. Send it as `authorization: Bearer <key>`.",
        err=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(certs)
    app.add_typer(api_keys_app, name="api-keys")
