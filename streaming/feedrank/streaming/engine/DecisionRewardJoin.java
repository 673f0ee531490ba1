package feedrank.streaming.engine;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import feedrank.v1.Events;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.co.KeyedCoProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The join as a Flink keyed operator, decisions and rewards keyed by decision id: the
 * Java engine of Python's {@code feedrank.streaming.join_operator.DecisionRewardJoin},
 * with the same label state bytes in a {@code ValueState<byte[]>} (RocksDB, checkpointed
 * with the job: exactly once) and event-time timers registered on the task thread.
 *
 * <p>Input 1: decoded decisions ({@link DecodeDecision}); input 2: the intake's valid
 * rewards (decision id, post id, user id, type, value, time); output: the Python job's
 * {@code OUTPUT_ROW}.
 */
public final class DecisionRewardJoin extends KeyedCoProcessFunction<String, Row, Row, Row> {
  private static final long serialVersionUID = 1L;

  private final JoinConfig config;
  private transient ValueState<byte[]> labels;
  private transient DecisionLog log;
  private transient JoinLogic logic;

  public DecisionRewardJoin(JoinConfig config) {
    this.config = config;
  }

  @Override
  public void open(OpenContext openContext) {
    labels =
        getRuntimeContext()
            .getState(
                new ValueStateDescriptor<>(
                    "labels", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
    log = new DecisionLog(config);
    logic = new JoinLogic(config);
    // On a session cluster's Prometheus reporter: flink_taskmanager_job_task_operator_...
    MetricGroup metrics = getRuntimeContext().getMetricGroup();
    metrics.gauge("decisionLogReads", (Gauge<Long>) () -> log.reads);
    metrics.gauge("decisionLogCacheHits", (Gauge<Long>) () -> log.hits);
  }

  @Override
  public void close() {
    if (log != null) {
      log.close();
    }
  }

  @Override
  public void processElement1(Row decisionRow, Context ctx, Collector<Row> out)
      throws Exception {
    byte[] payload = (byte[]) decisionRow.getField(DecodeDecision.PAYLOAD);
    String error = (String) decisionRow.getField(DecodeDecision.ERROR);
    if (!error.isEmpty()) {
      out.collect(malformedDecision(payload, error).toRow());
      return;
    }
    int partition = (Integer) decisionRow.getField(DecodeDecision.PARTITION);
    long offset = (Long) decisionRow.getField(DecodeDecision.OFFSET);
    log.remember(partition, offset, payload);
    Events.Decision decision;
    try {
      decision = Events.Decision.parseFrom(payload);
    } catch (InvalidProtocolBufferException impossible) { // the decoder parsed it already
      out.collect(malformedDecision(payload, "not a protobuf Decision: " + impossible).toRow());
      return;
    }
    LabelState state = load();
    JoinLogic.Result result = logic.onDecision(state, decision, partition, offset);
    emit(state, result, ctx, out);
  }

  @Override
  public void processElement2(Row rewardRow, Context ctx, Collector<Row> out) throws Exception {
    JoinLogic.RewardRecord reward =
        new JoinLogic.RewardRecord(
            (String) rewardRow.getField(0),
            (String) rewardRow.getField(1),
            (String) rewardRow.getField(2),
            (String) rewardRow.getField(3),
            ((Number) rewardRow.getField(4)).doubleValue(),
            ((Number) rewardRow.getField(5)).longValue());
    LabelState state = load();
    emit(state, logic.onReward(state, reward, this::decision), ctx, out);
  }

  @Override
  public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
    LabelState state = load();
    JoinLogic.Result result = logic.onTimer(state, timestamp, this::decision);
    if (result.clear) {
      labels.clear();
      collect(result.outputs, out, ctx);
    } else {
      emit(state, result, ctx, out);
    }
  }

  private DecisionExamples decision(LabelState state) {
    if (state.inline != null || !state.hasPosition) {
      if (state.inline == null) {
        throw new JoinLogic.DecisionUnavailable(
            "the state holds no decision bytes and no log to read");
      }
      return DecisionExamples.fromDecisionBytes(state.inline);
    }
    return DecisionExamples.fromDecisionBytes(log.payload(state.partition, state.offset));
  }

  private LabelState load() throws Exception {
    byte[] stored = labels.value();
    return stored == null || stored.length == 0 ? new LabelState() : LabelState.fromBytes(stored);
  }

  private void emit(LabelState state, JoinLogic.Result result, Context ctx, Collector<Row> out)
      throws Exception {
    labels.update(state.toBytes());
    for (long at : result.timers) {
      ctx.timerService().registerEventTimeTimer(at);
    }
    collect(result.outputs, out, ctx);
  }

  /**
   * The rows of {@code outputs}, but examples: those go to the examples' side output
   * ({@link ExamplesSink#EXAMPLES}), one (key, value) each, for their own Kafka sink.
   */
  static void collect(List<JoinOutput> outputs, Collector<Row> out, Context context) {
    for (JoinOutput output : outputs) {
      if (!output.isExamples()) {
        out.collect(output.toRow());
      } else if (output.kind.equals("example")) {
        context.output(ExamplesSink.EXAMPLES, Tuple2.of(output.key, output.payload));
      } else {
        for (byte[] payload : output.payloads) {
          context.output(ExamplesSink.EXAMPLES, Tuple2.of(output.key, payload));
        }
      }
    }
  }

  private static JoinOutput malformedDecision(byte[] payload, String error) {
    JoinOutput output = new JoinOutput("malformed", new byte[0], "", "", 0);
    output.payload =
        Events.DeadLetter.newBuilder()
            .setValue(ByteString.copyFrom(payload))
            .setError(error)
            .setStage("join")
            .build()
            .toByteArray();
    output.detail = error;
    return output;
  }
}
