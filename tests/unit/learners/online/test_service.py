"""The online learner service: set up from the settings, its progress reported; drift
starts one batch retrain at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from feedrank.catalogue import CatalogueState
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings, load_settings
from feedrank.learners.online import service
from feedrank.learners.online.checkpoint import StreamProgress
from feedrank.learners.online.service import run_online_learner


class FakeConsumer:
    """Records how it was made; its run stops at once, where a resumed learner would."""

    made: list[FakeConsumer] = []  # noqa: RUF012 - the instances a test made

    def __init__(self, config: Any, **parts: Any) -> None:
        self.config, self.parts = config, parts
        self.progress = StreamProgress(examples_applied=1200)
        self.topics_read = [config.topic, config.decisions_topic]
        FakeConsumer.made.append(self)

    def run(self, stop: threading.Event) -> StreamProgress:
        assert stop.is_set()
        self.progress.offsets["feedrank.examples:0"] = 1300
        self.progress.last_version = "v7"
        return self.progress


class StoppableCatalogue:
    """Stands in for the followed catalogue (no Kafka): an empty state, a stop flag."""

    def __init__(self) -> None:
        self.state = CatalogueState()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(learner={"torch_threads": 1}, paths={"state_dir": tmp_path})


def test_the_learner_is_set_up_from_the_settings_and_reports_where_it_stopped(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeConsumer.made.clear()
    monkeypatch.setattr(service, "OnlineConsumer", FakeConsumer)
    followed = StoppableCatalogue()
    monkeypatch.setattr(service, "follow_catalogue", lambda *_, **__: followed)
    said: list[str] = []
    stop = threading.Event()
    stop.set()
    progress = run_online_learner(
        settings,
        until_idle_s=2.5,
        serve_metrics=False,
        stop=stop,
        reporter=Reporter(say=said.append),
    )
    (consumer,) = FakeConsumer.made
    assert followed.stopped  # the catalogue feed stops with the learner
    assert consumer.parts["rejoin"].catalogue is followed.state
    assert consumer.config.idle_exit_s == 2.5
    assert consumer.config.state_dir == settings.paths.state_dir / "learner"
    assert consumer.config.decisions_topic == settings.topics.decisions  # fake negatives
    assert progress.last_version == "v7"
    assert said == [
        "learning from feedrank.examples + feedrank.decisions (fake_negatives; state in "
        f"{settings.paths.state_dir / 'learner'}, 1,200 examples applied so far)",
        "stopped after 1,200 examples; offsets {'feedrank.examples:0': 1300}; latest version v7",
    ]
