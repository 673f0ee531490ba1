"""Each worker follows the serving plan: polls it, loads new versions, switches them in.

A background thread per worker process reads the plan (``plan_sources``) every
``explore.plan_poll_interval_s``. When it changes, the versions the worker does not
serve yet are loaded and verified in this thread (``model_loader``), then the whole
new set (versions by arm and weights) replaces the current one atomically
(``model_slots``). A plan that changes only weights or salt applies at once.

Nothing here stops serving: a plan that cannot be read, a version that is refused and
any unexpected error are logged and counted (``feedrank_explore_model_swaps_total``,
``feedrank_explore_plan_fetch_errors_total``, ``feedrank_explore_model_refused``) while
the current set keeps serving. A refused plan is not retried until it changes or
``explore.refused_retry_s`` has passed; one whose version could not be fetched yet
(``ModelUnavailable``: the deploy service unreachable) is retried at the next poll.
The thread runs at a lower CPU priority (``explore.loader_nice``) so loading yields to
requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from feedrank.explore import metrics
from feedrank.explore.errors import ModelRefused, ModelUnavailable
from feedrank.explore.model_slots import ModelSlots, VersionLoader, free_when_unused
from feedrank.explore.plan_sources import PlanSource, PlanSourceError
from feedrank.explore.serving_plan import ServingPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowerTiming:
    interval_s: float = 2.0
    refused_retry_s: float = 300.0
    nice: int = 0  # niceness of the polling thread (Linux: per thread)
    free_timeout_s: float = 60.0  # longest wait for requests to let go of the previous set


@dataclass
class FollowerStatus:
    """What the follower last did; read by tests and operators (logs carry the same)."""

    applied: ServingPlan | None = None
    last_outcome: str = ""
    last_error: str = ""
    refused: dict[str, str] = field(default_factory=dict)  # version → reason


class PlanFollower:
    def __init__(
        self,
        slots: ModelSlots,
        source: PlanSource,
        load: VersionLoader,
        timing: FollowerTiming | None = None,
    ) -> None:
        self.slots = slots
        self.source = source
        self.load = load
        self.timing = timing or FollowerTiming()
        self.status = FollowerStatus()
        self._refused_plan: tuple[ServingPlan, float] | None = None  # plan, when refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> str:
        """Read the plan and act on it; returns the outcome (never raises)."""
        outcome = self._sync()
        self.status.last_outcome = outcome
        return outcome

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="feedrank-plan-follower", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.source.close()

    def _run(self) -> None:
        _lower_thread_priority(self.timing.nice)
        while not self._stop.wait(self.timing.interval_s):
            self.sync_once()

    def _sync(self) -> str:
        try:
            plan = self.source.fetch()
        except PlanSourceError as error:
            metrics.PLAN_FETCH_ERRORS.inc()
            if str(error) != self.status.last_error:
                log.warning("serving plan unavailable, serving %s: %s", self._serving(), error)
            self.status.last_error = str(error)
            return "plan_error"
        if not plan.arms or plan == self.status.applied:
            return "unchanged"
        if self._refused_plan is not None:
            refused, when = self._refused_plan
            if plan == refused and time.monotonic() - when < self.timing.refused_retry_s:
                return "unchanged"
        return self._apply(plan)

    def _apply(self, plan: ServingPlan) -> str:
        try:
            serving, loaded = self.slots.build(plan, self.load)
        except ModelRefused as error:
            return self._refuse(plan, error.version, error.check, error.message, outcome="refused")
        except ModelUnavailable as error:
            return self._postpone(error)
        except Exception as error:  # whatever a load raises, the current set keeps serving
            log.exception("loading the plan %s failed", plan.describe())
            reason = f"{type(error).__name__}: {error}"
            return self._refuse(plan, "", "error", reason, outcome="failed")
        previous = self.slots.swap(serving)
        retiring = [previous] if previous is not None else []
        del previous  # ``retiring`` must be our only reference
        if not free_when_unused(retiring, self.timing.free_timeout_s):
            log.warning("a request held the previous models for %ss", self.timing.free_timeout_s)
        outcome = "swapped" if loaded else "reweighted"
        metrics.MODEL_SWAPS.labels(outcome=outcome).inc()
        self.status.applied, self.status.last_error = plan, ""
        self._refused_plan = None
        log.info("now serving %s (loaded: %s)", plan.describe(), ", ".join(loaded) or "none")
        return outcome

    def _refuse(
        self, plan: ServingPlan, version: str, check: str, reason: str, *, outcome: str
    ) -> str:
        metrics.MODEL_SWAPS.labels(outcome=outcome).inc()
        if version:
            metrics.MODEL_REFUSED.labels(version=version, check=check).set(1)
            self.status.refused[version] = reason
        self.status.last_error = reason
        self._refused_plan = (plan, time.monotonic())
        log.warning(
            "plan %s not applied, still serving %s: %s", plan.describe(), self._serving(), reason
        )
        return outcome

    def _postpone(self, error: ModelUnavailable) -> str:
        """Not applied yet, not refused either: the next poll tries again."""
        metrics.MODEL_SWAPS.labels(outcome="unavailable").inc()
        if error.message != self.status.last_error:
            log.warning("plan not applied yet, still serving %s: %s", self._serving(), error)
        self.status.last_error = error.message
        return "unavailable"

    def _serving(self) -> str:
        serving = self.slots.current()
        if serving is None:
            return "nothing"
        return " ".join(f"{arm}={version}" for arm, version in serving.versions.items())


def _lower_thread_priority(nice: int) -> None:
    """Make the calling thread yield the CPU to request threads (Linux niceness is per
    thread); a no-op where that is not supported."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as error:
        log.debug("could not lower the plan follower's priority: %s", error)
