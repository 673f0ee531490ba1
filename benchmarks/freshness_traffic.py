"""The freshness benchmark's traffic: live decisions and, later, likes of shown posts.

Decisions show posts of the simulated world the learner also builds, with the
impression-time features explore logs; the likes produced while measuring are the
sampled engagements.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from confluent_kafka import Producer

from benchmarks.freshness_profile import Profile
from feedrank.core import codecs
from feedrank.core.settings import Settings
from feedrank.learners.online.feedback import slate_decision
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world_views import local_world
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class PendingLike:
    due_s: float  # time.monotonic() to produce it at
    decision_id: str
    user_id: str
    post_id: str


class Traffic(threading.Thread):
    """Live decisions with impression-time features, and likes of shown posts.

    Likes produced while ``measuring`` is set are the sampled engagements: their key
    (decision id, post id) -> t0, the ``time.monotonic()`` of their produce call.
    """

    def __init__(self, producer: Producer, settings: Settings, profile: Profile, tag: str) -> None:
        super().__init__(name="traffic", daemon=True)
        self.producer, self.profile, self.tag = producer, profile, tag
        self.decisions_topic = settings.topics.decisions
        self.rewards_topic = settings.topics.rewards
        world = local_world(settings, settings.world.start_ms)
        config = SimulationConfig(slate_size=profile.items, pool_size=max(100, profile.items))
        self.simulator = ExampleSimulator(world, config, start_ms=settings.world.start_ms)
        self.users = world.num_users
        self.rng = random.Random(17)
        self.measuring = threading.Event()
        self.stop = threading.Event()
        self.sampled: dict[tuple[str, str], float] = {}
        self.decisions = 0
        self.likes = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.failure = error

    def _run(self) -> None:
        interval = 1.0 / self.profile.rate
        next_decision = time.monotonic()
        pending: deque[PendingLike] = deque()
        while not self.stop.is_set():
            now = time.monotonic()
            while pending and pending[0].due_s <= now:
                self._like(pending.popleft())
            if now >= next_decision:
                like = self._decision()
                if like is not None:
                    pending.append(like)
                next_decision += interval
            self.producer.poll(0)
            wake = min(next_decision, pending[0].due_s) if pending else next_decision
            time.sleep(min(0.05, max(0.0, wake - time.monotonic())))
        self.producer.flush(30)

    def _decision(self) -> PendingLike | None:
        now_ms = int(time.time() * 1000)
        self.simulator.now_ms = now_ms
        slate: list[events_pb2.LabelledExample] = []
        while not slate:  # a user with no eligible post gets no feed: ask another
            slate = self.simulator.decide(self.rng.randrange(self.users))
        decision_id = f"{self.tag}-{self.decisions}"
        self.decisions += 1
        first = slate[0]
        decision = slate_decision(slate)
        decision.decision_id, decision.event_time_ms = decision_id, now_ms
        decision.model_version, decision.arm = "bench", "stable"
        decision.context["surface"] = "home"
        key = first.user_id.encode()
        self.producer.produce(self.decisions_topic, codecs.encode(decision), key=key)
        if self.rng.random() >= self.profile.like_share:
            return None
        liked = self.rng.choice(slate).post_id
        due = time.monotonic() + self.profile.like_delay_s
        return PendingLike(due, decision_id, first.user_id, liked)

    def _like(self, like: PendingLike) -> None:
        document = {
            "decision_id": like.decision_id,
            "post_id": like.post_id,
            "user_id": like.user_id,
            "type": "like",
            "ts_ms": int(time.time() * 1000),
        }
        t0 = time.monotonic()
        self.producer.produce(
            self.rewards_topic, json.dumps(document).encode(), key=like.user_id.encode()
        )
        self.likes += 1
        if self.measuring.is_set():
            self.sampled[like.decision_id, like.post_id] = t0
