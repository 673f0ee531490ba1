"""The model versions a worker serves, by arm, and their traffic split: swapped atomically.

A :class:`ServingSet` is immutable: arm → :class:`ServingModel` plus the splitter that
routes users to arms. :class:`ModelSlots` holds the current one. A request reads it
**once** (``current()``) and keeps that reference to the end, so it finishes on the
versions it started with. A new set is built off the request path (new versions are
loaded in the plan follower's thread, versions already served are reused) and switched
in with one reference assignment. The versions only the previous set held are freed
once the last request using it has returned: :func:`free_when_unused` waits for that
in the plan follower's thread, so a request thread never pays for freeing a model
(a large ANN index takes a while to free).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from feedrank.core.arms import STABLE_ARM
from feedrank.explore import metrics
from feedrank.explore.serving_model import ServingModel
from feedrank.explore.serving_plan import ServingPlan
from feedrank.explore.traffic_splitter import TrafficSplitter

VersionLoader = Callable[[str], ServingModel]
DEFAULT_ARM = STABLE_ARM
# References to a retired set when no request holds it: the retiring list, the
# generator's loop variable and getrefcount's own argument.
_UNUSED_REFERENCES = 3


@dataclass(frozen=True)
class ServingSet:
    models: Mapping[str, ServingModel]  # by arm
    splitter: TrafficSplitter
    plan: ServingPlan | None = None  # None: one model loaded directly, not from a plan

    def __post_init__(self) -> None:
        if set(self.models) != set(self.splitter.arms):
            raise ValueError(f"arms {sorted(self.models)} differ from the split's")

    @classmethod
    def single(cls, model: ServingModel, arm: str = DEFAULT_ARM) -> ServingSet:
        """All traffic to ``model`` on ``arm``."""
        return cls({arm: model}, TrafficSplitter({arm: 1.0}))

    def route(self, user_id: str) -> tuple[str, ServingModel]:
        """The arm of ``user_id`` and the model serving it."""
        arm = self.splitter.arm_of(user_id)
        return arm, self.models[arm]

    @property
    def versions(self) -> dict[str, str]:
        """Model version by arm."""
        return {arm: model.version for arm, model in self.models.items()}


class ModelSlots:
    """The current :class:`ServingSet`; one writer at a time, any number of readers."""

    def __init__(self) -> None:
        self._current: ServingSet | None = None
        self._writer = threading.Lock()
        self._swap_listeners: list[Callable[[ServingSet], None]] = []

    def on_swap(self, listener: Callable[[ServingSet], None]) -> None:
        """Call ``listener`` with each new set right after it is switched in (on the
        swapping thread; the catalogue indexer brings the set's new models up to date)."""
        self._swap_listeners.append(listener)

    def current(self) -> ServingSet | None:
        """What serves now; hold on to it for the whole request."""
        return self._current

    def swap(self, serving: ServingSet | None) -> ServingSet | None:
        """Switch to ``serving`` in one assignment; returns the previous set."""
        with self._writer:
            previous, self._current = self._current, serving
            _publish_metrics(previous, serving)
        if serving is not None:
            for listener in self._swap_listeners:
                listener(serving)
        return previous

    def build(self, plan: ServingPlan, load: VersionLoader) -> tuple[ServingSet, list[str]]:
        """The set ``plan`` asks for and the versions newly loaded for it.

        Versions the current set serves are reused as they are; the others are loaded
        with ``load`` (slow, so never call this on a request path). Raises whatever
        ``load`` raises, leaving the current set untouched.
        """
        current = self._current
        available = {m.version: m for m in current.models.values()} if current else {}
        loaded: list[str] = []
        models: dict[str, ServingModel] = {}
        for arm in plan.arms:
            if arm.model_version not in available:
                available[arm.model_version] = load(arm.model_version)
                loaded.append(arm.model_version)
            models[arm.arm] = available[arm.model_version]
        return ServingSet(models, TrafficSplitter(plan.weights, plan.salt), plan), loaded


def _publish_metrics(previous: ServingSet | None, serving: ServingSet | None) -> None:
    if previous is not None:
        for arm, version in previous.versions.items():
            metrics.SERVED_VERSIONS.labels(arm=arm, version=version).set(0)
            metrics.MODEL_INFO.labels(version=version, arm=arm).set(0)
            metrics.ARM_WEIGHT.labels(arm=arm).set(0)
    if serving is not None:
        for arm, version in serving.versions.items():
            metrics.SERVED_VERSIONS.labels(arm=arm, version=version).set(1)
            metrics.MODEL_INFO.labels(version=version, arm=arm).set(1)
            metrics.ARM_WEIGHT.labels(arm=arm).set(serving.splitter.shares[arm])


def free_when_unused(retiring: list[ServingSet], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Wait until no request holds the sets in ``retiring``, then drop them in this thread.

    A request holds its set for its whole duration (``ExploreService.rank``), and the
    set holds its models, so once the set's only reference is ``retiring`` no request
    can still use a model only it held: dropping it here frees those models here, not
    in a request thread. The caller must keep no other reference to the sets. False
    when a request still held one after ``timeout_s`` (that request then frees it).
    """
    deadline = time.monotonic() + timeout_s
    while any(sys.getrefcount(serving) > _UNUSED_REFERENCES for serving in retiring):
        if time.monotonic() > deadline:
            retiring.clear()
            return False
        time.sleep(poll_s)
    retiring.clear()
    return True
