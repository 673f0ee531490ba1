"""The learning path under test: ``feedrank join`` and ``feedrank learn`` as child processes.

Both are started as ``feedrank up`` starts them, configured through ``FEEDRANK_*``
variables; :class:`Stack` also runs the watchers over their output and fails fast,
with the log tails, when either exits.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.freshness_profile import Profile
from benchmarks.freshness_watchers import ExampleWatcher, RegistryWatcher
from benchmarks.local_broker import free_port
from benchmarks.progress import progress
from feedrank.core.settings import (
    Settings,
    TopicSettings,
    load_settings,
    settings_to_environment,
)
from feedrank.stack.process import ManagedProcess

say = progress("freshness")


def stack_settings(
    bootstrap: str, work: Path, topics: TopicSettings, profile: Profile, tag: str
) -> Settings:
    learner: dict[str, Any] = {
        "group_id": f"bench-freshness-{tag}",
        "state_dir": work / "learner",
        "micro_batch_size": profile.micro_batch,
        "publish_every_s": profile.publish_every_s,
    }
    if profile.user_id_buckets is not None:
        learner["user_id_buckets"] = profile.user_id_buckets
    if profile.post_id_buckets is not None:
        learner["post_id_buckets"] = profile.post_id_buckets
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics=topics.model_dump(),
        paths={"state_dir": work / "state", "registry_dir": work / "registry"},
        flink={"checkpoint_interval_s": profile.checkpoint_interval_s},
        time={"reward_window": profile.reward_window_s},
        world={
            "num_users": profile.users,
            "num_creators": profile.creators,
            "num_posts": profile.posts,
            # Pinned, so the learner and the traffic here build the same posts.
            "start_ms": int(time.time() * 1000),
        },
        ports={"streaming_metrics": free_port(), "learner_metrics": free_port()},
        learner=learner,
    )


def launch(name: str, arguments: list[str], settings: Settings, logs: Path) -> ManagedProcess:
    """``feedrank <arguments>`` with the run's settings in its environment."""
    tag = f"feedrank.component=bench-freshness-{name}"
    command = [sys.executable, "-X", tag, "-m", "feedrank.cli.main", *arguments]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
    environment.update(settings_to_environment(settings))
    return ManagedProcess.launch(
        command,
        log_file=logs / f"{name}.log",
        tie_to_parent=True,
        tag=tag,
        environment=environment,
    )


def log_tail(path: Path, characters: int = 3000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"


def join_running(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "feedrank_join_job_running":
                return sample.value == 1.0
    return False


class Stack:
    """The join and the learner as child processes, and the watchers over their output."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.processes: dict[str, ManagedProcess] = {}
        topics = settings.topics
        self.examples = ExampleWatcher(settings.kafka.bootstrap, topics.examples, topics.partitions)
        self.registry = RegistryWatcher(settings.paths.registry, topics.examples)

    def start(self) -> None:
        say("starting feedrank join and feedrank learn")
        self.processes["join"] = launch("join", ["join", "--fresh"], self.settings, self.logs)
        self.processes["learner"] = launch("learner", ["learn"], self.settings, self.logs)
        self.registry.start()
        self.examples.start()
        started = time.monotonic()
        self.wait(lambda: bool(self.registry.snapshot()), "the learner's first version", 180)
        say(f"learner ready (initial version published) after {time.monotonic() - started:.0f}s")
        port = self.settings.ports.streaming_metrics
        self.wait(lambda: join_running(port), "the join job RUNNING", 240)
        say(f"join RUNNING after {time.monotonic() - started:.0f}s")

    def check(self) -> None:
        for name, process in self.processes.items():
            if not process.is_running():
                raise RuntimeError(
                    f"feedrank {name} exited:\n{log_tail(self.logs / f'{name}.log')}"
                )

    def wait(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if condition():
                return
            time.sleep(0.1)
        tails = "\n".join(
            f"--- {name}:\n{log_tail(self.logs / f'{name}.log', 1500)}" for name in self.processes
        )
        raise RuntimeError(f"no {what} within {timeout_s:.0f}s\n{tails}")

    def close(self) -> None:
        for name in ("learner", "join"):  # the learner first: it still reads the join
            process = self.processes.get(name)
            if process is not None:
                process.stop(grace_s=30)
        self.examples.stop.set()
        self.registry.stop.set()
        for thread in (self.examples, self.registry):
            if thread.is_alive():
                thread.join(timeout=10)
