from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from feedrank.cli.main import app

runner = CliRunner()
TS = 1_764_000_000_000


def _logs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["timestamp,user_id,post_id,position,propensity,reward,target_probability"]
    for row in range(400):
        arm = int(rng.integers(0, 2))
        reward = int(rng.random() < (0.2, 0.6)[arm])
        lines.append(f"{TS},u{row},p{arm},0,0.5,{reward},{(0.2, 0.8)[arm]}")
    lines.append(f"{TS},u1,p1,0,0,1,0.5")  # a bad row: zero propensity
    path = tmp_path / "logs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_prints_json_with_every_estimator(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--logs", str(_logs(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rejected_rows"] == 1
    assert [e["estimator"] for e in document["estimates"]] == ["IPS", "SNIPS", "DR"]
    for estimate in [*document["estimates"], document["logging"]]:
        assert estimate["ci_low"] < estimate["value"] < estimate["ci_high"]
        assert estimate["ess"] > 0
    assert document["logging"]["rows"] == 400
    # The target prefers the better arm: its value is above the logging policy's.
    assert document["estimates"][0]["value"] > document["logging"]["value"]


def test_evaluate_prints_a_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--logs", str(_logs(tmp_path))])
    assert result.exit_code == 0, result.output
    for text in ("IPS", "SNIPS", "DR", "logging (on-policy)", "95% CI", "ESS"):
        assert text in result.output


def test_evaluate_takes_target_probabilities_from_a_file(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    target = tmp_path / "target.csv"
    target.write_text(
        "line,target_probability\n" + "".join(f"{line},0.5\n" for line in range(2, 402))
    )
    result = runner.invoke(
        app, ["evaluate", "--logs", str(logs), "--target-probabilities", str(target), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # Target == logging policy: IPS is the on-policy mean.
    assert abs(document["estimates"][0]["value"] - document["logging"]["value"]) < 1e-12


def test_evaluate_needs_exactly_one_source() -> None:
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 2
    assert "--logs FILE or --from-kafka" in " ".join(result.output.split())


def test_a_target_column_may_differ_between_the_rows_of_a_decision(tmp_path: Path) -> None:
    path = tmp_path / "slates.csv"
    lines = ["decision_id,timestamp,user_id,post_id,position,propensity,reward,p_new,country"]
    for decision in range(100):
        lines.append(f"d{decision},{TS},u1,a{decision},0,0.5,1,0.25,US")
        lines.append(f"d{decision},{TS},u1,b{decision},1,0.5,0,0.75,US")
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        app, ["evaluate", "--logs", str(path), "--target-probabilities", "p_new", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rejected_rows"] == 0
    assert document["logging"]["rows"] == 200
    # Cascade weights: slot 0 has weight 0.5 and reward 1, slot 1 reward 0 -> 0.5 / 2.
    assert document["estimates"][0]["value"] == 0.25
