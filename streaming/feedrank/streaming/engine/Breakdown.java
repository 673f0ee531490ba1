package feedrank.streaming.engine;

/**
 * One shown item's rewards so far, by {@code RewardBreakdown} field: counts per reward
 * type and the dwell seconds summed (Python's breakdown dict of
 * {@code feedrank.streaming.join_logic}, keyed by field number instead of name).
 */
final class Breakdown {
  static final int VIEWS = 1;
  static final int LIKES = 2;
  static final int COMMENTS = 3;
  static final int SHARES = 4;
  static final int SAVES = 5;
  static final int DWELL_SECONDS = 6;
  static final int HIDES = 7;
  static final int REPORTS = 8;
  static final int BLOCKS = 9;

  private final double[] values = new double[10];

  /** The breakdown field a reward type counts in; dwell adds its value instead. */
  static int fieldOf(String rewardType) {
    switch (rewardType) {
      case "view":
        return VIEWS;
      case "like":
        return LIKES;
      case "comment":
        return COMMENTS;
      case "share":
        return SHARES;
      case "save":
        return SAVES;
      case "dwell":
        return DWELL_SECONDS;
      case "hide":
        return HIDES;
      case "report":
        return REPORTS;
      case "block":
        return BLOCKS;
      default:
        throw new IllegalArgumentException("unknown reward type " + rewardType);
    }
  }

  void add(String rewardType, double value) {
    int field = fieldOf(rewardType);
    values[field] += field == DWELL_SECONDS ? value : 1;
  }

  boolean isEmpty() {
    for (double value : values) {
      if (value != 0) {
        return false;
      }
    }
    return true;
  }

  /** The {@code RewardBreakdown} message's bytes (fields in order, zeros left out). */
  byte[] toBytes() {
    Wire.Out out = new Wire.Out();
    for (int field = VIEWS; field <= BLOCKS; field++) {
      double value = values[field];
      if (value == 0) {
        continue;
      }
      if (field == DWELL_SECONDS) {
        out.tag(field, Wire.I64).fixedDouble(value);
      } else {
        out.tag(field, Wire.VARINT).varint((long) value);
      }
    }
    return out.toByteArray();
  }

  static Breakdown fromBytes(byte[] encoded) {
    Breakdown breakdown = new Breakdown();
    Wire.In in = new Wire.In(encoded, 0);
    while (in.hasMore()) {
      long key = in.varint();
      int number = (int) (key >>> 3);
      int wireType = (int) (key & 7);
      double value;
      if (wireType == Wire.I64) {
        value = in.fixedDouble();
      } else if (wireType == Wire.VARINT) {
        value = (int) in.varint();
      } else {
        throw new LabelState.FormatError("a breakdown field of wire type " + wireType);
      }
      if (number >= VIEWS && number <= BLOCKS) {
        breakdown.values[number] = value;
      }
    }
    return breakdown;
  }
}
