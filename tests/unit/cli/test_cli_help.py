from __future__ import annotations

import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from feedrank.cli.main import COMMANDS, app, command_line, command_named

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


def test_the_command_table_names_what_each_module_registers() -> None:
    registered: dict[str, str] = {}
    for module in dict.fromkeys(COMMANDS.values()):
        names = get_command(command_line([module])).commands  # type: ignore[attr-defined]
        registered.update(dict.fromkeys(names, module))
    assert registered == COMMANDS


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        (["status", "--json"], "status"),
        (["--config", "stack.toml", "join", "--jobmanager", "x"], "join"),
        (["-c", "stack.toml", "api-keys", "add", "app"], "api-keys"),
        (["--config=stack.toml", "deploy"], "deploy"),
        (["--help"], None),
        (["no-such-command"], None),
        ([], None),
    ],
)
def test_a_run_finds_its_command_past_the_options(
    arguments: list[str], command: str | None
) -> None:
    assert command_named(arguments) == command


def test_status_loads_neither_torch_nor_the_simulator() -> None:
    """Every component the stack starts and every status poll is a `feedrank` run: with
    every command's module imported each paid about 4 s of CPU for torch."""
    script = (
        "import sys\n"
        "from feedrank.cli.main import run\n"
        "try:\n"
        "    run(['status', '--help'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print(sorted(m for m in ('torch', 'feedrank.simulate.run') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stdout
