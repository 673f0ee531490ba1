"""The chaos run's traffic: an app calling Rank through the balancer and liking posts.

Run as its own process (``python -m benchmarks.chaos_traffic``) so that the run's
probing and killing never slows the calls: ``--threads`` callers share one
``RankingClient`` at ``--rate`` calls per second in all, for users ``u0`` to
``u<users-1>``, and like the first post of every ``--like-every``-th feed through
``EventProducer`` (the app's contract). Every call is one JSON line in ``--out``:
``{"t": wall seconds, "ok": bool, "code": gRPC code, "decision": id}``, and every like
``{"t": ..., "like": decision_id}``. It runs until SIGTERM, then flushes the likes.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from pathlib import Path
from typing import IO

from feedrank.client import EventProducer, FeedrankError, RankingClient, TopicNames

CALL_DEADLINE_S = 5.0


class CallLog:
    """Thread-safe JSON lines, flushed as they come (the parent reads them while we run)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, record: dict[str, object]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def caller(
    client: RankingClient,
    producer: EventProducer,
    log: CallLog,
    arguments: argparse.Namespace,
    seed: int,
    stop: threading.Event,
) -> None:
    rng = random.Random(seed)
    interval = arguments.threads / arguments.rate
    next_call = time.monotonic() + rng.random() * interval
    count = 0
    while not stop.is_set():
        pause = next_call - time.monotonic()
        if pause > 0 and stop.wait(pause):
            break
        next_call += interval
        user = f"u{rng.randrange(arguments.users)}"
        started = time.time()
        try:
            feed = client.rank(user, limit=arguments.feed_size)
        except FeedrankError as error:
            code = error.code.name if error.code is not None else type(error).__name__
            log.write({"t": started, "ok": False, "code": code, "decision": ""})
            continue
        log.write({"t": started, "ok": True, "code": "OK", "decision": feed.decision_id})
        count += 1
        if feed.items and count % arguments.like_every == 0:
            producer.send_reward(
                decision_id=feed.decision_id,
                post_id=feed.items[0].post_id,
                user_id=user,
                type="like",
            )
            log.write({"t": time.time(), "like": feed.decision_id})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="The balancer (host:port).")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers.")
    parser.add_argument("--rewards-topic", default="feedrank.rewards")
    parser.add_argument("--rate", type=float, default=20.0, help="Rank calls per second.")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--feed-size", type=int, default=10)
    parser.add_argument("--like-every", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    topics = TopicNames(rewards=arguments.rewards_topic)
    with (
        arguments.out.open("a") as stream,
        RankingClient(arguments.address, timeout_s=CALL_DEADLINE_S) as client,
        EventProducer(arguments.bootstrap, topics=topics) as producer,
    ):
        log = CallLog(stream)
        threads = [
            threading.Thread(
                target=caller, args=(client, producer, log, arguments, seed, stop), daemon=True
            )
            for seed in range(arguments.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        producer.flush()


if __name__ == "__main__":
    main()
