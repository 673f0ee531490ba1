"""A simulation run without a server: its thinned progress, an absent Ranking service."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.simulate.run import SimulationOptions, run_simulation, thinned_progress


class RecordingDisplay:
    """A ``RunDisplay`` that keeps what it was asked to show."""

    def __init__(self) -> None:
        self.shown: list[object] = []
        self.working_on: list[str] = []

    def show(self, item: object) -> None:
        self.shown.append(item)

    @contextmanager
    def working(self, message: str) -> Iterator[None]:
        self.working_on.append(message)
        yield

    @contextmanager
    def live(self, view: Callable[[], object]) -> Iterator[Callable[[], None]]:
        self.shown.append(view())
        yield lambda: self.shown.append(view())


def test_progress_shows_about_every_fifth_of_each_total_and_its_end() -> None:
    lines: list[str] = []
    progress = thinned_progress(lines.append)
    for done in range(0, 101, 10):
        progress("users", done, 100)
    progress("posts", 3, 3)
    assert lines == [
        "  users: 0/100",
        "  users: 20/100",
        "  users: 40/100",
        "  users: 60/100",
        "  users: 80/100",
        "  users: 100/100",
        "  posts: 3/3",
    ]


def test_a_run_without_a_ranking_service_fails_and_says_where_it_looked(tmp_path: Path) -> None:
    settings = Settings().model_copy(
        update={
            "world": Settings().world.model_copy(
                update={"num_users": 50, "num_creators": 10, "num_posts": 200}
            )
        }
    )
    options = SimulationOptions(
        duration_s=1.0,
        speed=3600.0,
        requests_per_s=1.0,
        threads=1,
        feed_size=5,
        address="127.0.0.1:1",
        bucket_hours=6.0,
        out_dir=tmp_path,
        ready_timeout_s=0.2,
    )
    display = RecordingDisplay()

    assert not run_simulation(settings, options, threading.Event(), display=display)

    assert display.working_on == ["building the simulated world (200 posts)…"]
    assert display.shown == ["[red]no Ranking service at 127.0.0.1:1[/]: start `feedrank serve`"]
    assert not list(tmp_path.iterdir())
