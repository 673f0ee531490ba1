"""Simulated apps produce their rewards to ``feedrank.rewards``, as protobuf, keyed by user."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget, idempotent_producer_config
from feedrank.v1 import events_pb2


class KafkaRewardSink:
    """Idempotent producer of rewards; delivery failures are counted, not swallowed."""

    def __init__(self, bootstrap: KafkaTarget, topic: str) -> None:
        self.topic = topic
        self.failed = 0
        self._producer = Producer(idempotent_producer_config(bootstrap, linger_ms=20))

    def __call__(self, rewards: list[events_pb2.Reward]) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE.encode())
        ]
        for reward in rewards:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        key=reward.user_id.encode(),
                        value=codecs.encode(reward),
                        headers=headers,
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: wait for deliveries
        self._producer.poll(0)

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush; the number of rewards still undelivered (0 when all arrived)."""
        return int(self._producer.flush(timeout_s))

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failed += 1
