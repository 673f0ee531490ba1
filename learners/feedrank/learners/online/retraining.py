"""Batch retrains the online learner starts: on a schedule, and when drift is detected.

Each retrain is a ``feedrank train --from-kafka --warm --since <window>`` child process
with the learner's own settings: it continues the registry's latest version on the
examples of the last ``learner.retrain_window_s`` (default 7 days), in
``learner.retrain_nproc`` data-parallel processes, and publishes through the same AUC
gate as any ``feedrank train`` (``learner.min_auc``). One runs at a time; a trigger
while one runs is skipped. Each finished retrain is counted by trigger and outcome
(``feedrank_learner_retrains_total{trigger,outcome}``: published, below_gate,
failed, or stopped with the learner) and reported. A retrain never outlives the learner
that started it.

:class:`RetrainSchedule` triggers one every ``learner.retrain_every_s`` (0: never).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings, child_environment
from feedrank.learners.online import metrics

BELOW_GATE_EXIT = 3  # feedrank train's exit status below the AUC gate
Starter = Callable[[Sequence[str], dict[str, str]], "subprocess.Popen[bytes]"]


def _popen(command: Sequence[str], environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(command), env=environment)


class Retrainer:
    """Starts one warm batch retrain at a time and accounts for each one that ends."""

    def __init__(self, settings: Settings, reporter: Reporter, start: Starter = _popen) -> None:
        self.settings = settings
        self.reporter = reporter
        self._start = start
        self.process: subprocess.Popen[bytes] | None = None
        self.trigger = ""
        self._stopped = False  # the running retrain was stopped with its learner
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        learner = self.settings.learner
        return [
            sys.executable,
            "-m",
            "feedrank.cli.main",
            "train",
            "--from-kafka",
            "--warm",
            "--since",
            f"{learner.retrain_window_s:.0f}s",
            "--nproc",
            str(learner.retrain_nproc),
        ]

    def start(self, trigger: str, why: str) -> bool:
        """Start a retrain (``trigger``: schedule or drift) unless one is running."""
        with self._lock:
            self._account()
            if self.process is not None:
                return False
            self.reporter.warn(f"{why}; starting a batch retrain")
            self.process = self._start(self.command(), child_environment(self.settings))
            self.trigger = trigger
            return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop a running retrain with its learner (SIGTERM, then SIGKILL after
        ``timeout_s``): a retrain never outlives the service that started it."""
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                self._account()
                return
            self.reporter.warn(f"stopping the running {self.trigger} retrain")
            self._stopped = True
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._account()

    def on_drift(self, event: object) -> None:
        """A :class:`StreamMonitor`'s ``on_drift``: retrain on the drift."""
        self.start("drift", f"drift detected ({event})")

    def poll(self) -> None:
        """Count the running retrain if it has ended."""
        with self._lock:
            self._account()

    def _account(self) -> None:
        if self.process is None:
            return
        code = self.process.poll()
        if code is None:
            return
        outcome = (
            "published" if code == 0 else "below_gate" if code == BELOW_GATE_EXIT else "failed"
        )
        if self._stopped and code != 0:
            outcome = "stopped"
        metrics.RETRAINS.labels(trigger=self.trigger, outcome=outcome).inc()
        say = self.reporter.say if outcome == "published" else self.reporter.warn
        say(f"the {self.trigger} retrain ended: {outcome.replace('_', ' ')} (exit {code})")
        self.process = None
        self._stopped = False


class RetrainSchedule:
    """Triggers a retrain every ``every_s`` seconds until ``stop`` is set; accounts for
    finished retrains in between."""

    def __init__(
        self, retrainer: Retrainer, every_s: float, stop: threading.Event, poll_s: float = 5.0
    ) -> None:
        self.retrainer = retrainer
        self.every_s = every_s
        self.stop = stop
        self.poll_s = poll_s
        self.thread = threading.Thread(target=self._run, name="retrain-schedule", daemon=True)

    def begin(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        waited = 0.0
        while not self.stop.wait(self.poll_s):
            waited += self.poll_s
            self.retrainer.poll()
            if waited >= self.every_s:
                waited = 0.0
                if not self.retrainer.start("schedule", f"{self.every_s:.0f}s since the last"):
                    self.retrainer.reporter.warn("scheduled retrain skipped: one still runs")
