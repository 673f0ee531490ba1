from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from feedrank.cli.main import app

runner = CliRunner()
TS = 1_764_000_000_000


def test_dry_run_reports_bad_rows_by_line_and_counts_the_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text(
        "timestamp,user_id,post_id,position,propensity,reward\n"
        f"{TS},u1,p1,0,0.5,1\n"
        f"{TS},u1,p2,0,1.7,0\n"
        f"{TS},u1,p3,0,0.5,0\n"
    )
    result = runner.invoke(app, ["replay", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "rows loaded │ 2" in output
    assert "rows rejected │ 1" in output
    assert "│ 3 │ propensity │ is 1.7" in output  # the line number and the reason
    assert "nothing (--dry-run)" in output


def test_an_unreadable_file_exits_with_2(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("timestamp,user_id\n")
    result = runner.invoke(app, ["replay", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "missing required columns" in " ".join(result.output.split())


def test_replay_has_help() -> None:
    result = runner.invoke(app, ["replay", "--help"])
    assert result.exit_code == 0
    assert "--topic-prefix" in result.output
