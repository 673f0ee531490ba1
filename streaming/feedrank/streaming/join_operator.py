"""The join as a Flink keyed operator: decisions and rewards keyed by decision id.

State per decision is one Flink ``ValueState`` holding ``join_logic.DecisionState``
as JSON, so it is checkpointed with the job (exactly once, restored after a crash)
and needs no pickle. Timers are event-time timers, so two simulated weeks pass as
fast as the watermark moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedCoProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueState, ValueStateDescriptor

from feedrank.core import codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.streaming.join_logic import (
    DecisionState,
    JoinConfig,
    JoinOutput,
    RewardRecord,
    on_decision,
    on_reward,
    on_timer,
)
from feedrank.v1 import events_pb2

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# A decoded decision on its way to the join: id ("" when malformed), bytes, time, error.
DECISION_FIELDS = ["decision_id", "payload", "event_time_ms", "error"]
DECISION_ROW = Types.ROW_NAMED(
    DECISION_FIELDS,
    [Types.STRING(), BYTES, Types.LONG(), Types.STRING()],
)
OUTPUT_FIELDS = [
    ("kind", Types.STRING()),
    ("key", BYTES),
    ("payload", BYTES),
    ("model_version", Types.STRING()),
    ("arm", Types.STRING()),
    ("event_time_ms", Types.LONG()),
    ("impressions", Types.INT()),
    ("engagements", Types.INT()),
    ("dwell_seconds", Types.DOUBLE()),
    ("reports", Types.INT()),
    ("blocks", Types.INT()),
    ("hides", Types.INT()),
    ("prompt", Types.INT()),
    ("detail", Types.STRING()),
    ("post_id", Types.STRING()),
]
OUTPUT_NAMES = tuple(name for name, _ in OUTPUT_FIELDS)
OUTPUT_ROW = Types.ROW_NAMED([n for n, _ in OUTPUT_FIELDS], [t for _, t in OUTPUT_FIELDS])


def decode_decision_row(record: Row) -> Row:
    """Raw Kafka record (key, value, ...) → DECISION_ROW; malformed ones keep their bytes."""
    value = bytes(record[1]) if record[1] is not None else b""
    try:
        decision = codecs.decode_decision(value)
    except EventDecodeError as error:
        row = Row("", value, 0, str(error))
    else:
        row = Row(decision.decision_id, value, decision.event_time_ms, "")
    # Named, because the timestamp assigner chained after it reads event_time_ms by name.
    row.set_field_names(DECISION_FIELDS)
    return row


class EventTimeOf(TimestampAssigner):  # type: ignore[misc]
    """Event time of decision rows (``event_time_ms``) and reward rows (``ts_ms``)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[self.field]) if value[self.field] else record_timestamp


class DecisionRewardJoin(KeyedCoProcessFunction):  # type: ignore[misc]
    """Input 1: DECISION_ROW; input 2: valid reward rows. Output: OUTPUT_ROW."""

    def __init__(self, config: JoinConfig) -> None:
        self.config = config
        self.state: ValueState | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("decision", Types.STRING()))

    def process_element1(self, value: Row, ctx: Any) -> Iterator[Row]:
        if value["error"]:
            yield _malformed_decision(bytes(value["payload"]), value["error"])
            return
        state = self._load()
        payload = bytes(value["payload"])
        decision = codecs.decode(events_pb2.Decision, payload)
        outputs, timers = on_decision(state, decision, self.config, payload)
        yield from self._emit(state, outputs, timers.at_ms, ctx)

    def process_element2(self, value: Row, ctx: Any) -> Iterator[Row]:
        reward = RewardRecord(
            decision_id=value["decision_id"],
            post_id=value["post_id"],
            user_id=value["user_id"],
            reward_type=value["reward_type"],
            value=float(value["reward_value"]),
            ts_ms=int(value["ts_ms"]),
        )
        state = self._load()
        outputs, timers = on_reward(state, reward, self.config)
        yield from self._emit(state, outputs, timers.at_ms, ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Row]:
        state = self._load()
        outputs, clear = on_timer(state, timestamp, self.config)
        assert self.state is not None
        if clear:
            self.state.clear()
        else:
            self.state.update(json.dumps(state.to_json()))
        yield from (output_row(output) for output in outputs)

    def _load(self) -> DecisionState:
        assert self.state is not None
        stored = self.state.value()
        return DecisionState.from_json(json.loads(stored)) if stored else DecisionState()

    def _emit(
        self, state: DecisionState, outputs: list[JoinOutput], timers: tuple[int, ...], ctx: Any
    ) -> Iterator[Row]:
        assert self.state is not None
        self.state.update(json.dumps(state.to_json()))
        for at_ms in timers:
            ctx.timer_service().register_event_time_timer(at_ms)
        yield from (output_row(output) for output in outputs)


def output_row(output: JoinOutput) -> Row:
    """One OUTPUT_ROW, built from the field names so that it never has fewer values.

    PyFlink's compiled row coder reads as many values as the declared type has fields,
    without bounds checks: a Row one value short once read past its list and crashed
    the Python worker (SIGSEGV) as soon as records flowed.
    """
    return Row(*(getattr(output, name) for name in OUTPUT_NAMES))


def _malformed_decision(payload: bytes, error: str) -> Row:
    letter = events_pb2.DeadLetter(value=payload, error=error, stage="join")
    return output_row(JoinOutput("malformed", b"", codecs.encode(letter), "", "", 0, detail=error))
