"""Secrets stay secret: the deploy token, Rank API keys and the Kafka SASL password never
show in a printed or dumped setting, a metric or a log line, even when a call with a
wrong or viewer token is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health
from prometheus_client import REGISTRY, generate_latest

from feedrank.core.clock import ManualClock
from feedrank.core.settings import ExploreSettings, load_settings, settings_to_environment
from feedrank.explore.api_keys import add_key
from feedrank.explore.grpc_service import build_server
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc
from tests.support.serving import EmptyFeed

SECRETS = {"deploy-token-s3cret", "rank-key-s3cret", "sasl-s3cret"}


def test_settings_never_print_their_secrets() -> None:
    settings = load_settings(
        deploy={"token": "deploy-token-s3cret"},
        world={"rank_api_key": "rank-key-s3cret"},
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_username": "app",
            "sasl_password": "sasl-s3cret",
        },
    )
    shown = f"{settings!r} {settings} {settings.model_dump_json()} {settings.kafka.access!r}"
    assert not any(secret in shown for secret in SECRETS)
    # A child process of the stack needs them, so its environment (never logged) has them.
    assert set(settings_to_environment(settings).values()) >= SECRETS


def test_refused_keys_reach_no_metric_and_no_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = tmp_path / "keys.json"
    valid = add_key(keys, "app")
    server, port = build_server(
        EmptyFeed(),
        ExploreSettings(api_keys_file=keys),
        ManualClock(1_000),
        health.HealthServicer(),
        address="127.0.0.1:0",
        reuse_port=False,
    )
    server.start()
    caplog.set_level(logging.DEBUG)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.Rank(
                    ranking_pb2.RankRequest(user_id="u1"),
                    timeout=5,
                    metadata=(("authorization", "Bearer rank-key-s3cret"),),
                )
            stub.Rank(
                ranking_pb2.RankRequest(user_id="u1"),
                timeout=5,
                metadata=(("authorization", f"Bearer {valid}"),),
            )
    finally:
        server.stop(None)
    exposed = generate_latest(REGISTRY).decode() + caplog.text
    assert "rank-key-s3cret" not in exposed
    assert valid not in exposed
