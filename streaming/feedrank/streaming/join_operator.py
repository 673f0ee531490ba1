"""The join as a Flink keyed operator: decisions and rewards keyed by decision id.

State per decision is one Flink ``ValueState`` holding a ``label_state.LabelState``
(labels only, a few hundred bytes, no pickle), checkpointed with the job: exactly once,
restored after a crash. The examples' features are re-read from the decisions topic
by the decision's position (``decision_log``). Timers are event-time timers, so two
simulated weeks pass as fast as the watermark moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedCoProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueState, ValueStateDescriptor

from feedrank.core import codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.streaming.decision_log import DecisionLog, DecisionLogConfig
from feedrank.streaming.example_wire import DecisionExamples
from feedrank.streaming.join_logic import (
    JoinConfig,
    JoinOutput,
    RewardRecord,
    inline_decision,
    on_decision,
    on_reward,
    on_timer,
)
from feedrank.streaming.label_state import LabelState, LogPosition
from feedrank.v1 import events_pb2

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# A decoded decision on its way to the join: id ("" when malformed), bytes, time, error,
# and where it is on the decisions topic.
DECISION_FIELDS = ["decision_id", "payload", "event_time_ms", "error", "partition", "offset"]
DECISION_ROW = Types.ROW_NAMED(
    DECISION_FIELDS,
    [Types.STRING(), BYTES, Types.LONG(), Types.STRING(), Types.INT(), Types.LONG()],
)
# What the decoder emits: Row(decision_id, DECISION_ROW), keyed in the JVM by the first.
KEYED_DECISION_ROW = Types.ROW([Types.STRING(), DECISION_ROW])
# The Kafka record columns of the decisions' source table the decoder reads.
DECISION_SOURCE_COLUMNS = ("value", "partition", "offset")
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
    ("segment", Types.INT()),
    ("payloads", Types.OBJECT_ARRAY(BYTES)),
]
OUTPUT_NAMES = tuple(name for name, _ in OUTPUT_FIELDS)
assert OUTPUT_NAMES[-1] == "payloads"
OUTPUT_ROW = Types.ROW_NAMED([n for n, _ in OUTPUT_FIELDS], [t for _, t in OUTPUT_FIELDS])


def decode_decision_row(record: Row) -> Row:
    """Raw Kafka record (DECISION_SOURCE_COLUMNS) → KEYED_DECISION_ROW; malformed ones
    keep their bytes (and all go to the one key "")."""
    value = bytes(record[0]) if record[0] is not None else b""
    partition, offset = int(record[1]), int(record[2])
    try:
        decision = codecs.decode_decision(value)
    except EventDecodeError as error:
        row = Row("", value, 0, str(error), partition, offset)
    else:
        row = Row(decision.decision_id, value, decision.event_time_ms, "", partition, offset)
    # Named, because the timestamp assigner chained after it reads event_time_ms by name.
    row.set_field_names(DECISION_FIELDS)
    return Row(row[0], row)


class EventTimeOf(TimestampAssigner):  # type: ignore[misc]
    """Event time of a row's field (decisions' ``event_time_ms``, rewards' ``ts_ms``);
    ``keyed``: of ``Row(key, value)`` rows, the field of the value."""

    def __init__(self, field: str | int, *, keyed: bool = False) -> None:
        self.field = field
        self.keyed = keyed

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        time_ms = (value[1] if self.keyed else value)[self.field]
        return int(time_ms) if time_ms else record_timestamp


class DecisionRewardJoin(KeyedCoProcessFunction):  # type: ignore[misc]
    """Input 1: DECISION_ROW; input 2: valid reward rows. Output: OUTPUT_ROW."""

    def __init__(self, config: JoinConfig, log: DecisionLogConfig) -> None:
        self.config = config
        self.log_config = log
        self.state: ValueState | None = None
        self.log: DecisionLog | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        # PyFlink hands a byte-array state to Python as a tuple of ints, one per byte;
        # "pickled bytes" holding a bytes object is the bytes plus a 15-byte frame.
        self.state = runtime_context.get_state(
            ValueStateDescriptor("labels", Types.PICKLED_BYTE_ARRAY())
        )
        self.log = DecisionLog(self.log_config)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def process_element1(self, value: Row, ctx: Any) -> Iterator[Row]:
        if value["error"]:
            yield _malformed_decision(bytes(value["payload"]), value["error"])
            return
        state = self._load()
        payload = bytes(value["payload"])
        position = LogPosition(int(value["partition"]), int(value["offset"]))
        assert self.log is not None
        self.log.remember(position, payload)
        decision = codecs.decode(events_pb2.Decision, payload)
        outputs, timers = on_decision(
            state, decision, self.config, position=position, payload=payload
        )
        yield from self._emit(state, outputs, timers.at_ms, ctx)

    def process_element2(self, value: Row, ctx: Any) -> Iterator[Row]:
        # join_job.REWARD_FIELDS, by position: SQL's nested row carries no names.
        decision_id, post_id, user_id, reward_type, reward_value, ts_ms = value
        reward = RewardRecord(
            decision_id=decision_id,
            post_id=post_id,
            user_id=user_id,
            reward_type=reward_type,
            value=float(reward_value),
            ts_ms=int(ts_ms),
        )
        state = self._load()
        outputs, timers = on_reward(state, reward, self.config, self._decision)
        yield from self._emit(state, outputs, timers.at_ms, ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Row]:
        state = self._load()
        outputs, clear, timers = on_timer(state, timestamp, self.config, self._decision)
        assert self.state is not None
        if clear:
            self.state.clear()
            yield from output_rows(outputs)
        else:
            yield from self._emit(state, outputs, timers.at_ms, ctx)

    def _decision(self, state: LabelState) -> DecisionExamples:
        """The state's decision, from the bytes it carries or re-read from the log."""
        if state.inline is not None or state.position is None:
            return inline_decision(state)
        assert self.log is not None
        return DecisionExamples.from_decision_bytes(self.log.payload(state.position))

    def _load(self) -> LabelState:
        assert self.state is not None
        stored = self.state.value()
        return LabelState.from_bytes(stored) if stored else LabelState()

    def _emit(
        self, state: LabelState, outputs: list[JoinOutput], timers: tuple[int, ...], ctx: Any
    ) -> Iterator[Row]:
        assert self.state is not None
        self.state.update(state.to_bytes())
        for at_ms in timers:
            ctx.timer_service().register_event_time_timer(at_ms)
        yield from output_rows(outputs)


def output_rows(outputs: list[JoinOutput]) -> Iterator[Row]:
    """The rows of ``outputs``, a call's examples batched into one "examples" row.

    Each row crosses from the embedded Python into the JVM field by field; a window
    close of 30 shown items as 30 rows of 16 fields cost more than labelling them. The
    examples of one call (one decision, one user key) go as one row whose ``payloads``
    the SQL sink unnests into one Kafka record each: a window close makes one
    "examples" output already, a reward's positive an "example" of its own.
    """
    payloads: list[bytes] = []
    last: JoinOutput | None = None
    for output in outputs:
        if output.kind == "example":
            payloads.append(output.payload)
        elif output.kind == "examples":
            payloads.extend(output.payloads)
        else:
            yield output_row(output)
            continue
        last = output
    if last is not None:
        yield output_row(
            JoinOutput(
                "examples",
                last.key,
                b"",
                last.model_version,
                last.arm,
                last.event_time_ms,
                payloads=tuple(payloads),
            )
        )


def output_row(output: JoinOutput) -> Row:
    """One OUTPUT_ROW, built from the field names so that it never has fewer values.

    PyFlink's compiled row coder reads as many values as the declared type has fields,
    without bounds checks: a Row one value short once read past its list and crashed
    the Python worker (SIGSEGV) as soon as records flowed.
    """
    values = [getattr(output, name) for name in OUTPUT_NAMES]
    values[-1] = list(output.payloads)  # PyFlink's Beam coder takes arrays as lists only
    return Row(*values)


def _malformed_decision(payload: bytes, error: str) -> Row:
    letter = events_pb2.DeadLetter(value=payload, error=error, stage="join")
    return output_row(JoinOutput("malformed", b"", codecs.encode(letter), "", "", 0, detail=error))
