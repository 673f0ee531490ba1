"""Per-app API keys on Rank, over a real gRPC server with TLS: a missing or unknown key
is UNAUTHENTICATED and counted; an app's key is served; a key added to the file works
without a restart. ``feedrank.client`` sends the key and trusts the local CA."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.client import InvalidRequest, RankingClient, tls_credentials
from feedrank.client.errors import FeedrankError
from feedrank.core.clock import ManualClock
from feedrank.core.settings import ExploreSettings, TlsSettings
from feedrank.explore import metrics
from feedrank.explore.api_keys import add_key, read_keys
from feedrank.explore.grpc_service import build_server
from feedrank.stack.certificates import IssuedCertificates, make_certificates
from tests.support.serving import EmptyFeed


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, IssuedCertificates]]:
    """Rank over TLS, requiring keys from a file that holds the simulator's."""
    keys = tmp_path / "api-keys.json"
    add_key(keys, "simulator")
    issued = make_certificates(tmp_path / "certs")
    server, port = build_server(
        EmptyFeed(),
        ExploreSettings(api_keys_file=keys),
        ManualClock(1_000),
        health.HealthServicer(),
        address="127.0.0.1:0",
        reuse_port=False,
        tls=TlsSettings(cert_file=issued.server_cert, key_file=issued.server_key),
    )
    server.start()
    yield f"127.0.0.1:{port}", keys, issued
    server.stop(None)


def unauthenticated() -> float:
    return float(metrics.RANK_REQUESTS.labels(code="UNAUTHENTICATED", arm="stable")._value.get())


def client(address: str, issued: IssuedCertificates, key: str | None) -> RankingClient:
    return RankingClient(
        address, credentials=tls_credentials(issued.ca_cert), api_key=key, server_name="localhost"
    )


def test_rank_needs_an_app_s_key(served: tuple[str, Path, IssuedCertificates]) -> None:
    address, keys, issued = served
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    (simulator_key,) = read_keys(keys)
    with client(address, issued, simulator_key) as app:
        assert app.rank("u1").decision_id == "d1"
    for key in (None, "not-a-key"):
        before = unauthenticated()
        with client(address, issued, key) as stranger, pytest.raises(FeedrankError) as refused:
            stranger.rank("u1")
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert not isinstance(refused.value, InvalidRequest)
        assert "API key" in str(refused.value)
        assert unauthenticated() == before + 1


def test_a_key_added_to_the_file_is_taken_without_a_restart(
    served: tuple[str, Path, IssuedCertificates],
) -> None:
    address, keys, issued = served
    new_key = add_key(keys, "ios")
    deadline = time.monotonic() + 10
    with client(address, issued, new_key) as app:
        while True:
            try:
                assert app.rank("u1").arm == "stable"
                break
            except FeedrankError as error:  # the file is looked at once a second
                if error.code != grpc.StatusCode.UNAUTHENTICATED:
                    raise
                if time.monotonic() > deadline:
                    raise AssertionError("the new key was never accepted") from error
                time.sleep(0.2)


def test_a_broken_key_file_is_refused_when_extended(tmp_path: Path) -> None:
    broken = tmp_path / "keys.json"
    broken.write_text('{"keys": [{"app": "x"}]}')
    with pytest.raises(ValueError, match="an app and a key"):
        add_key(broken, "y")
    with pytest.raises(ValueError, match="app it is for"):
        add_key(tmp_path / "new.json", " ")
