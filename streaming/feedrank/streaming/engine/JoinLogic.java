package feedrank.streaming.engine;

import feedrank.v1.Events;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * What the decision ⋈ reward join does for one decision, free of Flink: the semantics of
 * Python's {@code feedrank.streaming.join_logic} (its docstring states them), call for
 * call. Each item yields exactly one example: positive at its first engagement, or
 * negative when the window closes; late and dangling rewards are dead letters.
 */
final class JoinLogic {
  static final Set<String> ENGAGEMENT_TYPES = Set.of("like", "comment", "share", "save");

  /** The decision of a state, ready to write examples (re-read from the log). */
  interface DecisionFetch {
    DecisionExamples fetch(LabelState state);
  }

  /** The decision of a pending state can no longer be read: its examples are lost. */
  static final class DecisionUnavailable extends RuntimeException {
    DecisionUnavailable(String message) {
      super(message);
    }
  }

  /** A valid reward, as the intake hands it over. */
  static final class RewardRecord {
    final String decisionId;
    final String postId;
    final String userId;
    final String rewardType;
    final double value;
    final long tsMs;

    RewardRecord(
        String decisionId, String postId, String userId, String rewardType, double value, long tsMs) {
      this.decisionId = decisionId;
      this.postId = postId;
      this.userId = userId;
      this.rewardType = rewardType;
      this.value = value;
      this.tsMs = tsMs;
    }
  }

  /** What a call emits, and the event-time timers to register (or a cleared state). */
  static final class Result {
    final List<JoinOutput> outputs = new ArrayList<>();
    final List<Long> timers = new ArrayList<>();
    boolean clear;
  }

  private final JoinConfig config;

  JoinLogic(JoinConfig config) {
    this.config = config;
  }

  /** A decision arrives: keep its labels, replay early rewards, schedule the close. */
  Result onDecision(LabelState state, Events.Decision decision, int partition, long offset) {
    Result result = new Result();
    if (state.hasDecision) { // a duplicate delivery of the same decision
      return result;
    }
    state.hasDecision = true;
    state.decisionTimeMs = decision.getEventTimeMs();
    state.userId = decision.getUserId();
    state.modelVersion = decision.getModelVersion();
    state.arm = decision.getArm();
    List<String> postIds = new ArrayList<>(decision.getItemsCount());
    for (Events.ShownItem item : decision.getItemsList()) {
      postIds.add(item.getPostId());
    }
    state.setPosts(postIds);
    state.hasPosition = true;
    state.partition = partition;
    state.offset = offset;
    JoinOutput impressions =
        new JoinOutput(
            "impressions", utf8(state.userId), state.modelVersion, state.arm, state.decisionTimeMs);
    impressions.impressions = decision.getItemsCount();
    impressions.segment = config.segmentOf(state.userId);
    result.outputs.add(impressions);
    List<byte[]> early = state.early;
    state.early = new ArrayList<>();
    if (!early.isEmpty()) {
      DecisionExamples examples = DecisionExamples.of(decision);
      for (byte[] reward : early) {
        result.outputs.addAll(applyReward(state, ignored -> examples, record(reward)));
      }
    }
    result.timers.add(state.decisionTimeMs + config.rewardWindowMs);
    return result;
  }

  /** A reward arrives: join it, hold it for its decision, or route it as late. */
  Result onReward(LabelState state, RewardRecord reward, DecisionFetch fetch) {
    Result result = new Result();
    if (!state.hasDecision) {
      state.early.add(rewardProto(reward).toByteArray());
      result.timers.add(reward.tsMs + config.danglingWaitMs);
      return result;
    }
    result.outputs.addAll(applyReward(state, fetch, reward));
    return result;
  }

  /** Fire due work: dangling early rewards, the window's close, the tombstone's end. */
  Result onTimer(LabelState state, long timestampMs, DecisionFetch fetch) {
    Result result = new Result();
    if (!state.hasDecision) {
      List<byte[]> waiting = new ArrayList<>();
      for (byte[] encoded : state.early) {
        RewardRecord reward = record(encoded);
        if (reward.tsMs + config.danglingWaitMs <= timestampMs) {
          result.outputs.add(deadLetter("dangling", reward, "no decision arrived"));
        } else {
          waiting.add(encoded);
        }
      }
      state.early = waiting;
      result.clear = waiting.isEmpty();
      return result;
    }
    long closeAt = state.decisionTimeMs + config.rewardWindowMs;
    if (!state.closed && timestampMs >= closeAt) {
      negatives(state, fetch, closeAt, result.outputs);
      state.close();
      result.timers.add(closeAt + config.tombstoneMs);
      return result;
    }
    result.clear = state.closed && timestampMs >= closeAt + config.tombstoneMs;
    return result;
  }

  private List<JoinOutput> applyReward(
      LabelState state, DecisionFetch fetch, RewardRecord reward) {
    List<JoinOutput> outputs = new ArrayList<>(2);
    long windowEnd = state.decisionTimeMs + config.rewardWindowMs;
    if (state.closed || reward.tsMs > windowEnd) {
      outputs.add(deadLetter("late", reward, "after the reward window closed at " + windowEnd));
      return outputs;
    }
    if (reward.tsMs < state.decisionTimeMs - config.maxSkewMs) {
      outputs.add(deadLetter("dangling", reward, "too long before its decision"));
      return outputs;
    }
    int index = state.itemIndex(reward.postId);
    if (index < 0) {
      outputs.add(deadLetter("dangling", reward, "the decision did not show this post"));
      return outputs;
    }
    Breakdown breakdown = state.breakdowns.computeIfAbsent(index, ignored -> new Breakdown());
    breakdown.add(reward.rewardType, reward.value);
    boolean prompt = reward.tsMs - state.decisionTimeMs <= config.promptHorizonMs;
    outputs.add(attributed(state, reward, prompt));
    if (ENGAGEMENT_TYPES.contains(reward.rewardType) && !state.labelled.get(index)) {
      state.labelled.set(index);
      long labelMs = Math.max(reward.tsMs, 0);
      DecisionExamples examples;
      try {
        examples = fetch.fetch(state);
      } catch (DecisionUnavailable gone) {
        outputs.add(unavailable(state, gone.getMessage(), labelMs));
        return outputs;
      }
      String postId = examples.shown.get(index);
      JoinOutput example =
          new JoinOutput("example", utf8(state.userId), state.modelVersion, state.arm, labelMs);
      example.payload =
          examples.labelled(postId, DecisionExamples.labelBytes(labelMs, 1.0, breakdown));
      example.postId = postId;
      outputs.add(example);
    }
    return outputs;
  }

  /** The window closes: one "examples" output, a negative per item nothing labelled. */
  private void negatives(
      LabelState state, DecisionFetch fetch, long closeAt, List<JoinOutput> outputs) {
    int[] firsts = state.firstShowings();
    List<Integer> unlabelled = new ArrayList<>(firsts.length);
    for (int index = 0; index < firsts.length; index++) {
      if (!state.labelled.get(firsts[index])) {
        unlabelled.add(index);
      }
    }
    if (unlabelled.isEmpty()) {
      return;
    }
    DecisionExamples examples;
    try {
      examples = fetch.fetch(state);
    } catch (DecisionUnavailable gone) {
      outputs.add(unavailable(state, gone.getMessage(), closeAt));
      return;
    }
    byte[] quiet = DecisionExamples.labelBytes(closeAt, 0.0, null);
    List<byte[]> payloads = new ArrayList<>(unlabelled.size());
    for (int index : unlabelled) {
      Breakdown breakdown = state.breakdowns.get(firsts[index]);
      byte[] label =
          breakdown != null && !breakdown.isEmpty()
              ? DecisionExamples.labelBytes(closeAt, 0.0, breakdown)
              : quiet;
      payloads.add(examples.labelled(examples.shown.get(index), label));
    }
    JoinOutput batch =
        new JoinOutput("examples", utf8(state.userId), state.modelVersion, state.arm, closeAt);
    batch.payloads = payloads;
    outputs.add(batch);
  }

  /** A dead letter for examples that could not be written: their decision is gone. */
  private static JoinOutput unavailable(LabelState state, String why, long atMs) {
    String where =
        state.hasPosition ? " at partition " + state.partition + " offset " + state.offset : "";
    String error = "decision" + where + " unavailable, its examples are lost: " + why;
    JoinOutput output =
        new JoinOutput("malformed", utf8(state.userId), state.modelVersion, state.arm, atMs);
    output.payload =
        Events.DeadLetter.newBuilder()
            .setError(error)
            .setFailedAtMs(atMs)
            .setStage("join")
            .build()
            .toByteArray();
    output.detail = error;
    return output;
  }

  /** A joined reward, for the aggregates of its model version and arm. */
  private JoinOutput attributed(LabelState state, RewardRecord reward, boolean prompt) {
    String kind = reward.rewardType;
    JoinOutput output =
        new JoinOutput("reward", utf8(state.userId), state.modelVersion, state.arm, reward.tsMs);
    output.engagements = ENGAGEMENT_TYPES.contains(kind) ? 1 : 0;
    output.dwellSeconds = kind.equals("dwell") ? reward.value : 0.0;
    output.reports = kind.equals("report") ? 1 : 0;
    output.blocks = kind.equals("block") ? 1 : 0;
    output.hides = kind.equals("hide") ? 1 : 0;
    output.prompt = prompt ? 1 : 0;
    output.postId = reward.postId;
    output.segment = config.segmentOf(state.userId);
    return output;
  }

  static JoinOutput deadLetter(String kind, RewardRecord reward, String why) {
    String error = kind + " reward: " + why;
    JoinOutput output = new JoinOutput(kind, utf8(reward.userId), "", "", reward.tsMs);
    output.payload =
        Events.DeadLetter.newBuilder()
            .setSourceTopic("")
            .setKey(com.google.protobuf.ByteString.copyFrom(utf8(reward.userId)))
            .setValue(com.google.protobuf.ByteString.copyFrom(PythonText.rewardJson(reward)))
            .setError(error)
            .setFailedAtMs(reward.tsMs)
            .setStage("join")
            .build()
            .toByteArray();
    output.detail = error;
    return output;
  }

  private static RewardRecord record(byte[] encoded) {
    Events.Reward reward;
    try {
      reward = Events.Reward.parseFrom(encoded);
    } catch (com.google.protobuf.InvalidProtocolBufferException error) {
      throw new LabelState.FormatError("an early reward that is not a Reward: " + error);
    }
    return new RewardRecord(
        reward.getDecisionId(),
        reward.getPostId(),
        reward.getUserId(),
        rewardTypeName(reward.getTypeValue()),
        reward.getValue(),
        reward.getTsMs());
  }

  static Events.Reward rewardProto(RewardRecord reward) {
    return Events.Reward.newBuilder()
        .setDecisionId(reward.decisionId)
        .setPostId(reward.postId)
        .setUserId(reward.userId)
        .setType(
            Events.RewardType.valueOf(
                "REWARD_TYPE_" + reward.rewardType.toUpperCase(java.util.Locale.ROOT)))
        .setValue(reward.value)
        .setTsMs(reward.tsMs)
        .build();
  }

  /** The contract's name of a reward type ("like"), as the intake writes it. */
  static String rewardTypeName(int number) {
    Events.RewardType type = Events.RewardType.forNumber(number);
    if (type == null || type == Events.RewardType.REWARD_TYPE_UNSPECIFIED) {
      throw new LabelState.FormatError("an early reward of unknown type " + number);
    }
    return type.name().substring("REWARD_TYPE_".length()).toLowerCase(java.util.Locale.ROOT);
  }

  static byte[] utf8(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }
}
