"""Whether a long-running Kafka client can reach its brokers, for health and retries.

A service that must ride out a broker outage (the online learner, deploy's aggregate
feed) keeps one :class:`BrokerLink` per client. It goes down when librdkafka reports
that every broker is down (the client's ``error_cb``) or a request to the cluster
raises (a commit, a metadata request); it comes up again when a request succeeds
(a probe while down, records consumed). ``on_change`` sees each transition (a health
gauge); the log gets one line per outage, not one per failed retry, and retries wait
an exponential backoff (:class:`~feedrank.core.backoff.Backoff`)::

    link = BrokerLink("the learner", on_change=lambda up: KAFKA_UP.set(up))
    consumer = Consumer({**consumer_config(...), "error_cb": link.on_client_error})
    ...
    if link.probe_due():
        link.attempt(lambda: consumer.list_topics(topic, timeout=2.0), "metadata")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from feedrank.core.backoff import Backoff

log = logging.getLogger("feedrank.kafka")
T = TypeVar("T")


class BrokerLink:
    """Up or down, with when to retry next; starts down until a first success."""

    def __init__(
        self,
        client: str,
        *,
        on_change: Callable[[bool], None] | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client  # who talks to Kafka, for the log: "the online learner"
        self.on_change = on_change
        self.backoff = backoff or Backoff(initial_s=0.5, max_s=5.0)
        self.up = False
        self.last_error = ""
        self._clock = clock
        self._down_since: float | None = clock()
        self._next_try = 0.0

    def found(self) -> None:
        """A request succeeded: the brokers are reachable."""
        self.backoff.reset()
        self._next_try = 0.0
        if self.up:
            return
        if self._down_since is not None and self.last_error:
            down_s = self._clock() - self._down_since
            log.warning("%s reaches Kafka again after %.0fs", self.client, down_s)
        self.up, self._down_since, self.last_error = True, None, ""
        if self.on_change is not None:
            self.on_change(True)

    def lost(self, reason: str) -> None:
        """A request failed or every broker is down: retry after the next backoff."""
        now = self._clock()
        self._next_try = now + self.backoff.next_delay()
        if self.up or reason != self.last_error:
            log.warning("%s cannot reach Kafka (%s); retrying with backoff", self.client, reason)
        self.last_error = reason
        if self.up:
            self.up, self._down_since = False, now
            if self.on_change is not None:
                self.on_change(False)

    def on_client_error(self, error: KafkaError) -> None:
        """A librdkafka ``error_cb``: all brokers down means the link is down; a fatal
        error is logged; the rest (a connection dropped and tried again, many times a
        second during an outage) librdkafka handles itself.

        Clients with a link may so run at librdkafka ``log_level`` 0: the outage is in
        the log once, not every reconnection attempt."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.lost(error.str())
        elif error.fatal():
            log.error("%s: fatal Kafka client error %s", self.client, error)
        else:
            log.debug("%s: Kafka client error %s", self.client, error)

    def probe_due(self) -> bool:
        """Down, and its backoff has passed: time to try a request again."""
        return not self.up and self._clock() >= self._next_try

    def seconds_to_next_try(self) -> float:
        return max(self._next_try - self._clock(), 0.0)

    def attempt(self, request: Callable[[], T], what: str) -> T | None:
        """Run ``request``; its result and the link up, or None and the link down."""
        try:
            result = request()
        except KafkaException as error:
            self.lost(f"{what} failed: {error.args[0] if error.args else error}")
            return None
        self.found()
        return result
