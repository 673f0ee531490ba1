package feedrank.streaming.engine;

import java.time.Duration;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;

/**
 * The join's DataStream graph in the JVM, for the Python job ({@code join_job}) to call
 * through the gateway: decode the decisions, time both inputs by their events, key them
 * by decision id and join them, with no Python per record.
 */
public final class JoinStreams {
  private JoinStreams() {}

  /**
   * @param rawDecisions the decisions topic's records: (value, partition, offset)
   * @param rewards the intake's valid rewards: (decision id, post id, user id, type, value,
   *     time in ms)
   * @param outputType the Python job's {@code OUTPUT_ROW}
   * @param examples where the examples go: they leave the join through their own Kafka sink
   *     ({@link ExamplesSink}), and the returned stream carries every other output row
   */
  public static DataStream<Row> join(
      DataStream<Row> rawDecisions,
      DataStream<Row> rewards,
      JoinConfig config,
      TypeInformation<Row> outputType,
      long outOfOrdernessMs,
      long idlenessMs,
      ExamplesTarget examples) {
    DataStream<Row> decisions =
        rawDecisions
            .map(new DecodeDecision(), DecodeDecision.DECODED)
            .uid("decode-decisions-java")
            .assignTimestampsAndWatermarks(
                eventTime(DecodeDecision.EVENT_TIME_MS, outOfOrdernessMs, idlenessMs));
    DataStream<Row> timedRewards =
        rewards.assignTimestampsAndWatermarks(eventTime(5, outOfOrdernessMs, idlenessMs));
    SingleOutputStreamOperator<Row> joined =
        decisions
            .keyBy(new FieldKey(DecodeDecision.DECISION_ID), Types.STRING)
            .connect(timedRewards.keyBy(new FieldKey(0), Types.STRING))
            .process(new DecisionRewardJoin(config), outputType)
            .uid("decision-reward-join-java-v1");
    joined
        .getSideOutput(ExamplesSink.EXAMPLES)
        .sinkTo(ExamplesSink.sink(config, examples))
        .name("examples-sink")
        .uid("examples-sink-java-v1");
    return joined;
  }

  /** Bounded out-of-orderness on a row's time field (0: the record's own timestamp). */
  static WatermarkStrategy<Row> eventTime(int field, long outOfOrdernessMs, long idlenessMs) {
    return WatermarkStrategy.<Row>forBoundedOutOfOrderness(Duration.ofMillis(outOfOrdernessMs))
        .withTimestampAssigner(
            (row, recordTimestamp) -> {
              Object time = row.getField(field);
              long ms = time == null ? 0 : ((Number) time).longValue();
              return ms != 0 ? ms : recordTimestamp;
            })
        .withIdleness(Duration.ofMillis(idlenessMs));
  }

  /** A row's string field as its key. */
  static final class FieldKey implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;
    private final int field;

    FieldKey(int field) {
      this.field = field;
    }

    @Override
    public String getKey(Row row) {
      return (String) row.getField(field);
    }
  }
}
