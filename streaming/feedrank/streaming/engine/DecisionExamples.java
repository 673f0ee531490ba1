package feedrank.streaming.engine;

import com.google.protobuf.InvalidProtocolBufferException;
import feedrank.v1.Events;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A decision's bytes, ready to label any of its shown items: Python's
 * {@code feedrank.streaming.example_wire.DecisionExamples}. An example is the
 * concatenation of the decision's header fields (encoded once per decision), the item's
 * fields (once per item) and its label: a message's encoding followed by more fields of
 * the same message parses as their merge, so the bytes parse to the
 * {@code LabelledExample} {@code feedrank.core.labelled.labelled_example} builds.
 */
final class DecisionExamples {
  private static final int LABEL_TIME = 5;
  private static final int REWARD = 14;
  private static final int ENGAGED = 15;
  private static final int BREAKDOWN = 16;

  final byte[] header;
  final Map<String, byte[]> items; // post id -> its fields (its first showing)
  final List<String> shown; // the shown post ids in feed order, repeats included

  private DecisionExamples(byte[] header, Map<String, byte[]> items, List<String> shown) {
    this.header = header;
    this.items = items;
    this.shown = shown;
  }

  /** Not a Decision: the examples of a pending state cannot be written from them. */
  static final class NotADecision extends RuntimeException {
    NotADecision(String message) {
      super(message);
    }
  }

  static DecisionExamples fromDecisionBytes(byte[] payload) {
    Events.Decision decision;
    try {
      decision = Events.Decision.parseFrom(payload);
    } catch (InvalidProtocolBufferException error) {
      throw new NotADecision("not a Decision: " + error.getMessage());
    }
    return of(decision);
  }

  static DecisionExamples of(Events.Decision decision) {
    Map<String, byte[]> items = new HashMap<>();
    List<String> shown = new ArrayList<>(decision.getItemsCount());
    for (Events.ShownItem item : decision.getItemsList()) {
      String postId = item.getPostId();
      shown.add(postId);
      items.computeIfAbsent(postId, ignored -> itemFields(item));
    }
    return new DecisionExamples(header(decision), items, shown);
  }

  /** The example of {@code postId} with {@code label} ({@link #labelBytes}). */
  byte[] labelled(String postId, byte[] label) {
    byte[] item = items.get(postId);
    byte[] example = new byte[header.length + item.length + label.length];
    System.arraycopy(header, 0, example, 0, header.length);
    System.arraycopy(item, 0, example, header.length, item.length);
    System.arraycopy(label, 0, example, header.length + item.length, label.length);
    return example;
  }

  /** An example's label fields: label time, reward, engaged and the breakdown. */
  static byte[] labelBytes(long labelTimeMs, double reward, Breakdown breakdown) {
    Wire.Out label = new Wire.Out();
    if (labelTimeMs != 0) {
      label.tag(LABEL_TIME, Wire.VARINT).varint(labelTimeMs);
    }
    if (reward != 0) {
      label.tag(REWARD, Wire.I64).fixedDouble(reward);
    }
    if (reward > 0) {
      label.tag(ENGAGED, Wire.VARINT).varint(1);
    }
    byte[] encoded = breakdown == null ? new byte[0] : breakdown.toBytes();
    label.tag(BREAKDOWN, Wire.LEN).blob(encoded);
    return label.toByteArray();
  }

  /** The fields every example of {@code decision} shares (user features always set). */
  private static byte[] header(Events.Decision decision) {
    return Events.LabelledExample.newBuilder()
        .setDecisionId(decision.getDecisionId())
        .setUserId(decision.getUserId())
        .setDecisionTimeMs(decision.getEventTimeMs())
        .setModelVersion(decision.getModelVersion())
        .setArm(decision.getArm())
        .setExplorationPolicyValue(decision.getExplorationPolicyValue())
        .setUserFeatures(decision.getUserFeatures())
        .addAllPostFeatureNames(decision.getItemFeatureNamesList())
        .build()
        .toByteArray();
  }

  /** A shown item's fields as a {@code LabelledExample}'s (post features always set). */
  private static byte[] itemFields(Events.ShownItem item) {
    return Events.LabelledExample.newBuilder()
        .setPostId(item.getPostId())
        .setPosition(item.getPosition())
        .setScore(item.getScore())
        .setPropensity(item.getPropensity())
        .setPostFeatures(item.getFeatures())
        .setCatalogueVersion(item.getCatalogueVersion())
        .build()
        .toByteArray();
  }
}
