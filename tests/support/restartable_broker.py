"""A Kafka broker of one test alone, on fixed ports and data, so it can crash and return."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker
from feedrank.stack.process import ManagedProcess
from tests.support.kafka import free_port


class RestartableBroker:
    """A single KRaft broker under ``data_dir``: started, SIGKILLed, started again (same
    ports, same log); tied to the test process so a killed run leaves no JVM behind."""

    def __init__(self, data_dir: Path, jars: JarLocations, ready_timeout_s: float = 120) -> None:
        config = BrokerConfig(
            data_dir=data_dir, jar_dir=jars.kafka_dir, port=free_port(), controller_port=free_port()
        )
        self.broker = KafkaBroker(config, log_file=data_dir / "kafka.log")
        self.ready_timeout_s = ready_timeout_s
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> None:
        """Start (or start again) and wait until it answers."""
        self.process = self.broker.start(tie_to_parent=True)
        self.broker.wait_ready(self.process, timeout_s=self.ready_timeout_s)

    def crash(self) -> None:
        """SIGKILL: no flush, no controlled shutdown."""
        assert self.process is not None, "the broker was never started"
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextmanager
def started_broker(data_dir: Path, jars: JarLocations) -> Iterator[RestartableBroker]:
    """A started :class:`RestartableBroker`, stopped on the way out (a fixture's body)."""
    broker = RestartableBroker(data_dir, jars)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
