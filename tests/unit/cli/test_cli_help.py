from __future__ import annotations

import pytest
from typer.testing import CliRunner

from feedrank.cli.main import app

runner = CliRunner()


def test_top_level_help_lists_the_stack_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("setup", "up", "status", "down"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["setup", "up", "status", "down"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_invalid_settings_exit_with_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDRANK_KAFKA__BROKER_PORT", "not-a-port")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output
