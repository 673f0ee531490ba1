"""`feedrank rollout` against a real Deploy server that requires mutual TLS: the
operator's client certificate alone (no token) changes the rollout and is named in the
history; the viewer's is denied; a plaintext client never gets through."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core.clock import ManualClock
from feedrank.core.settings import load_settings
from feedrank.deploy.server import DeployServer
from feedrank.registry import LocalModelRegistry
from feedrank.stack.certificates import IssuedCertificates, make_certificates
from tests.integration.deploy.conftest import START_MS
from tests.support.deploy import publish_versions


@pytest.fixture
def mtls_deploy(tmp_path: Path) -> Iterator[tuple[DeployServer, IssuedCertificates, list[str]]]:
    issued = make_certificates(tmp_path / "certs", clients=("local-operator", "local-viewer"))
    clock = ManualClock(START_MS)
    settings = load_settings(
        paths={"state_dir": tmp_path / "state"},
        tls={
            "cert_file": issued.server_cert,
            "key_file": issued.server_key,
            "client_ca_file": issued.ca_cert,
        },
    )
    versions = publish_versions(LocalModelRegistry(settings.paths.registry, clock=clock), 2)
    server = DeployServer(settings, clock, port=0, analysis=False)
    server.start()
    try:
        yield server, issued, versions
    finally:
        server.stop(grace_s=0.5)


def rollout(
    server: DeployServer, issued: IssuedCertificates, identity: str | None, *args: str
) -> tuple[int, str]:
    """``feedrank rollout ARGS`` as ``identity`` (its client certificate, no token; None:
    plaintext), with a state directory of its own (no local credentials to fall back on)."""
    environment = {"FEEDRANK_PATHS__STATE_DIR": str(issued.directory / "cli-state")}
    if identity is not None:
        pair = issued.client(identity)
        environment |= {
            "FEEDRANK_TLS__CA_FILE": str(issued.ca_cert),
            "FEEDRANK_TLS__CLIENT_CERT_FILE": str(pair.cert),
            "FEEDRANK_TLS__CLIENT_KEY_FILE": str(pair.key),
            "FEEDRANK_TLS__SERVER_NAME": "localhost",
        }
    result = CliRunner().invoke(
        app,
        ["rollout", *args, "--address", server.address, "--rpc-timeout", "5"],
        env=environment,
    )
    return result.exit_code, result.output


def test_mutual_tls_identities_map_to_roles_and_the_history_names_them(
    mtls_deploy: tuple[DeployServer, IssuedCertificates, list[str]],
) -> None:
    server, issued, (first, second) = mtls_deploy
    code, output = rollout(server, issued, "local-operator", "start", first, "--json")
    assert code == 0, output
    assert json.loads(output)["actor"] == "local-operator"

    code, output = rollout(server, issued, "local-viewer", "start", second, "--json")
    assert code == 1
    assert json.loads(output)["error"]["code"] == "PERMISSION_DENIED"
    code, output = rollout(server, issued, "local-viewer", "status", "--json")
    assert code == 0, output  # a viewer reads

    code, output = rollout(server, issued, None, "status", "--json")
    assert code == 1
    assert json.loads(output)["error"]["code"] == "UNAVAILABLE"  # plaintext never connects

    code, output = rollout(server, issued, "local-operator", "history", "--json")
    assert [(entry["actor"], entry["stable_version"]) for entry in json.loads(output)] == [
        ("local-operator", first)
    ]
