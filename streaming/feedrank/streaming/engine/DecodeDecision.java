package feedrank.streaming.engine;

import com.google.protobuf.InvalidProtocolBufferException;
import feedrank.v1.Events;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;

/**
 * A raw record of the decisions topic (value, partition, offset) → a decoded decision
 * (decision id, value, event time, error, partition, offset), validated as
 * {@code feedrank.core.codecs.decode_decision} validates it. A malformed one keeps its
 * bytes and its error, keyed by "" (the join sends it to the dead-letter topic).
 */
public final class DecodeDecision implements MapFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  static final int DECISION_ID = 0;
  static final int PAYLOAD = 1;
  static final int EVENT_TIME_MS = 2;
  static final int ERROR = 3;
  static final int PARTITION = 4;
  static final int OFFSET = 5;
  static final long MIN_EVENT_TIME_MS = 946_684_800_000L;
  static final long MAX_EVENT_TIME_MS = 4_102_444_800_000L;

  static final TypeInformation<Row> DECODED =
      Types.ROW_NAMED(
          new String[] {"decision_id", "payload", "event_time_ms", "error", "partition", "offset"},
          Types.STRING,
          Types.PRIMITIVE_ARRAY(Types.BYTE),
          Types.LONG,
          Types.STRING,
          Types.INT,
          Types.LONG);

  @Override
  public Row map(Row raw) {
    byte[] value = raw.getField(0) == null ? new byte[0] : (byte[]) raw.getField(0);
    int partition = ((Number) raw.getField(1)).intValue();
    long offset = ((Number) raw.getField(2)).longValue();
    Events.Decision decision;
    try {
      decision = Events.Decision.parseFrom(value);
    } catch (InvalidProtocolBufferException error) {
      return Row.of("", value, 0L, "not a protobuf Decision: " + error.getMessage(), partition, offset);
    }
    String problem = problem(decision);
    if (problem != null) {
      return Row.of("", value, 0L, problem, partition, offset);
    }
    return Row.of(decision.getDecisionId(), value, decision.getEventTimeMs(), "", partition, offset);
  }

  /** What makes {@code decision} invalid, in the Python decoder's words; null if valid. */
  static String problem(Events.Decision decision) {
    if (decision.getDecisionId().isBlank()) {
      return "'decision_id' must be a non-empty string";
    }
    if (decision.getUserId().isBlank()) {
      return "'user_id' must be a non-empty string";
    }
    long time = decision.getEventTimeMs();
    if (time < MIN_EVENT_TIME_MS || time >= MAX_EVENT_TIME_MS) {
      return "event_time_ms="
          + time
          + " is not a plausible event time (milliseconds since the epoch between 2000 and 2100)";
    }
    for (Events.ShownItem item : decision.getItemsList()) {
      if (item.getPostId().isBlank()) {
        return "'items.post_id' must be a non-empty string";
      }
      double propensity = item.getPropensity();
      if (!(propensity > 0.0 && propensity <= 1.0)) {
        return "propensity of '"
            + item.getPostId()
            + "' is "
            + PythonText.floatRepr(propensity)
            + "; it must be in (0, 1]";
      }
    }
    return null;
  }
}
