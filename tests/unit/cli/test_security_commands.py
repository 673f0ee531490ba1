"""`feedrank certs` and `feedrank api-keys add`: the files they write and what they print."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.explore.api_keys import read_keys


def test_certs_makes_a_ca_server_and_client_certificates(tmp_path: Path) -> None:
    target = tmp_path / "certs"
    result = CliRunner().invoke(app, ["certs", "--dir", str(target), "--client", "ops"])
    assert result.exit_code == 0, result.output
    assert "FEEDRANK_TLS__CERT_FILE" in result.output
    for name in ("ca.pem", "server.pem", "clients/ops.pem"):
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(target / "ca.pem"), str(target / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
    for key in ("ca.key", "server.key", "clients/ops.key"):
        assert stat.S_IMODE((target / key).stat().st_mode) == 0o600
    first = (target / "ca.pem").read_bytes()
    assert CliRunner().invoke(app, ["certs", "--dir", str(target)]).exit_code == 0
    assert (target / "ca.pem").read_bytes() == first  # kept: servers keep trusting it


def test_api_keys_add_prints_a_new_key_once_and_stores_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    runner = CliRunner()
    first = runner.invoke(app, ["api-keys", "add", "ios", "--file", str(keys)])
    second = runner.invoke(app, ["api-keys", "add", "web", "--file", str(keys)])
    assert (first.exit_code, second.exit_code) == (0, 0)
    ios_key = first.stdout.strip().splitlines()[0]
    web_key = second.stdout.strip().splitlines()[0]
    assert read_keys(keys) == {ios_key: "ios", web_key: "web"}
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
