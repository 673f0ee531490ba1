"""`feedrank catalogue load` without a broker: --dry-run, bad rows, exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from feedrank.cli.main import app

runner = CliRunner()
TS = 1_764_000_000_000


def test_dry_run_reports_each_bad_row_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "post_id,creator_id,created_ms,language\n"
        f"p1,c1,{TS},en\n"
        f"p2,,{TS},en\n"
        f"p3,c1,{TS},en\n"
        f"p4,c1,yesterday,en\n"
    )
    result = runner.invoke(app, ["catalogue", "load", str(path), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "line 3: creator_id:" in result.output
    assert "line 5: created_ms:" in result.output
    assert "checked 2 posts, skipped 2 bad rows" in result.output


def test_a_clean_file_exits_0_and_jsonl_is_told_by_its_suffix(tmp_path: Path) -> None:
    path = tmp_path / "graph.ndjson"
    path.write_text(f'{{"op": "follow", "user_id": "u1", "target_id": "c1", "ts_ms": {TS}}}\n')
    result = runner.invoke(app, ["catalogue", "load", str(path), "--kind", "graph", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "checked 1 graph events, skipped 0 bad rows" in result.output


def test_the_format_option_beats_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("user_id,language\nu1,en\n")
    args = ["catalogue", "load", str(path), "--kind", "users", "--format", "csv", "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "checked 1 users" in result.output


def test_a_file_that_cannot_be_read_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("creator_id,language\n")
    result = runner.invoke(app, ["catalogue", "load", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "missing required columns" in " ".join(result.output.split())
    missing = runner.invoke(app, ["catalogue", "load", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("user_id\n" + "".join(f"u{index}\n" for index in range(20_001)))
    result = runner.invoke(app, ["catalogue", "load", str(path), "--kind", "users", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "read 10,000 rows: 10,000 loaded, 0 skipped" in result.output
    assert "read 20,000 rows" in result.output
    assert "checked 20,001 users, skipped 0 bad rows" in result.output


def test_catalogue_load_has_help() -> None:
    result = runner.invoke(app, ["catalogue", "load", "--help"])
    assert result.exit_code == 0
    assert "--kind" in result.output
