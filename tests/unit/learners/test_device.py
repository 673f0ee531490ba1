"""``learner.device``: cpu, cuda or auto; training moves the models there and back (on
this CPU-only machine every path runs on the CPU, and cuda is refused clearly)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.device import DeviceUnavailableError, collective_backend, training_device
from tests.unit.learners.factories import simulated_batches


def test_cpu_and_auto_train_on_the_cpu_here() -> None:
    assert training_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert training_device("auto").type == expected
    assert collective_backend(torch.device("cpu")) == "gloo"
    assert collective_backend(torch.device("cuda", 0)) == "nccl"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeviceUnavailableError, match="no GPU"):
        training_device("cuda")
    monkeypatch.setenv("FEEDRANK_LEARNER__DEVICE", "cuda")
    result = CliRunner().invoke(app, ["train", "--simulate", "100"])
    assert result.exit_code == 2
    assert "learner.device is cuda, but torch sees no GPU" in result.output


def test_training_on_the_resolved_device_brings_the_models_back_to_the_cpu() -> None:
    batch = simulated_batches(count=1, size=400)[0]
    trainer = BatchTrainer(TrainerConfig(max_epochs=1, seed=3), device=training_device("auto"))
    report = trainer.fit(batch)
    assert report.steps > 0
    assert trainer.model.device == torch.device("cpu")  # ready to evaluate, publish, serve
    assert report.metrics["auc"] == report.metrics["auc"]  # evaluated (not NaN)
