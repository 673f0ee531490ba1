package feedrank.streaming.engine;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;

/**
 * What the join keeps per pending decision: labels only, a few hundred bytes. The same
 * bytes as Python's {@code feedrank.streaming.label_state.LabelState} (format version 2):
 * where the decision is on the log, its time, user, model version and arm, a short hash
 * per shown post, which items are labelled, each rewarded item's breakdown so far, and
 * the rewards that came before their decision. A closed decision shrinks to a tombstone.
 */
final class LabelState {
  static final int FORMAT_VERSION = 2;
  private static final int CLOSED = 1;
  private static final int HAS_DECISION = 2;
  private static final int HAS_POSITION = 4;
  private static final int HAS_INLINE = 8;

  /** Bytes that are not a label state of this format. */
  static final class FormatError extends IllegalArgumentException {
    FormatError(String message) {
      super(message);
    }
  }

  long decisionTimeMs;
  boolean hasDecision;
  boolean closed;
  boolean hasPosition;
  int partition;
  long offset;
  byte[] inline; // the decision's bytes, only for states written without a log position
  String userId = "";
  String modelVersion = "";
  String arm = "";
  int hashWidth = 4;
  byte[] hashes = new byte[0];
  BitSet labelled = new BitSet(); // bit i: the item at index i (its first showing)
  Map<Integer, Breakdown> breakdowns = new LinkedHashMap<>();
  List<byte[]> early = new ArrayList<>(); // serialised Reward messages

  int shown() {
    return hashes.length / hashWidth;
  }

  /** The index of the first showing of {@code postId}, or -1 when it was not shown. */
  int itemIndex(String postId) {
    byte[] wanted = postHash(postId, hashWidth);
    int items = shown();
    for (int index = 0; index < items; index++) {
      if (matches(index, wanted)) {
        return index;
      }
    }
    return -1;
  }

  private boolean matches(int index, byte[] wanted) {
    int start = index * hashWidth;
    for (int i = 0; i < hashWidth; i++) {
      if (hashes[start + i] != wanted[i]) {
        return false;
      }
    }
    return true;
  }

  /** For each item, the index of the first item showing the same post. */
  int[] firstShowings() {
    int items = shown();
    int[] firsts = new int[items];
    Map<Long, Integer> seen = new HashMap<>();
    for (int index = 0; index < items; index++) {
      long key = 0;
      for (int i = 0; i < hashWidth; i++) {
        key = key << 8 | (hashes[index * hashWidth + i] & 0xffL);
      }
      Integer first = seen.putIfAbsent(key, index);
      firsts[index] = first == null ? index : first;
    }
    return firsts;
  }

  /** Keep only what a tombstone needs: the window's time and the closed flag. */
  void close() {
    closed = true;
    hasPosition = false;
    inline = null;
    hashes = new byte[0];
    labelled = new BitSet();
    breakdowns = new LinkedHashMap<>();
  }

  /** The width (4 or 8) and the hashes of {@code postIds} (see {@link #postHash}). */
  void setPosts(List<String> postIds) {
    hashWidth = distinctHashes(postIds, 4) ? 4 : 8;
    Wire.Out out = new Wire.Out();
    for (String postId : postIds) {
      out.bytes(postHash(postId, hashWidth));
    }
    hashes = out.toByteArray();
  }

  private static boolean distinctHashes(List<String> postIds, int width) {
    Map<Long, String> byHash = new HashMap<>();
    for (String postId : postIds) {
      byte[] hash = postHash(postId, width);
      long key = 0;
      for (byte b : hash) {
        key = key << 8 | (b & 0xffL);
      }
      String other = byHash.putIfAbsent(key, postId);
      if (other != null && !other.equals(postId)) {
        return false;
      }
    }
    return true;
  }

  /** {@code postId}'s hash: CRC-32, little-endian (4 bytes) or BLAKE2b (8). */
  static byte[] postHash(String postId, int width) {
    byte[] text = postId.getBytes(StandardCharsets.UTF_8);
    if (width == 8) {
      return Blake2b.digest(text, 8);
    }
    CRC32 crc = new CRC32();
    crc.update(text);
    long value = crc.getValue();
    return new byte[] {(byte) value, (byte) (value >>> 8), (byte) (value >>> 16), (byte) (value >>> 24)};
  }

  byte[] toBytes() {
    int flags =
        (closed ? CLOSED : 0)
            | (hasDecision ? HAS_DECISION : 0)
            | (hasPosition ? HAS_POSITION : 0)
            | (inline != null ? HAS_INLINE : 0);
    Wire.Out out = new Wire.Out();
    out.write(FORMAT_VERSION);
    out.varint(flags).varint(decisionTimeMs);
    if (hasPosition) {
      out.varint(partition).varint(offset);
    }
    if (inline != null) {
      out.blob(inline);
    }
    for (String text : new String[] {userId, modelVersion, arm}) {
      out.blob(text.getBytes(StandardCharsets.UTF_8));
    }
    out.write(hashWidth);
    out.blob(hashes);
    out.blob(labelled.toByteArray());
    out.varint(breakdowns.size());
    for (Map.Entry<Integer, Breakdown> entry : breakdowns.entrySet()) {
      out.varint(entry.getKey()).blob(entry.getValue().toBytes());
    }
    out.varint(early.size());
    for (byte[] reward : early) {
      out.blob(reward);
    }
    return out.toByteArray();
  }

  static LabelState fromBytes(byte[] data) {
    if (data == null || data.length == 0 || data[0] != FORMAT_VERSION) {
      throw new FormatError("not a label state of format " + FORMAT_VERSION);
    }
    Wire.In in = new Wire.In(data, 1);
    int flags = (int) in.varint();
    LabelState state = new LabelState();
    state.decisionTimeMs = in.varint();
    state.hasDecision = (flags & HAS_DECISION) != 0;
    state.closed = (flags & CLOSED) != 0;
    if ((flags & HAS_POSITION) != 0) {
      state.hasPosition = true;
      state.partition = (int) in.varint();
      state.offset = in.varint();
    }
    if ((flags & HAS_INLINE) != 0) {
      state.inline = in.blob();
    }
    state.userId = new String(in.blob(), StandardCharsets.UTF_8);
    state.modelVersion = new String(in.blob(), StandardCharsets.UTF_8);
    state.arm = new String(in.blob(), StandardCharsets.UTF_8);
    state.hashWidth = in.oneByte();
    state.hashes = in.blob();
    state.labelled = BitSet.valueOf(in.blob());
    for (long n = in.varint(); n > 0; n--) {
      int index = (int) in.varint();
      state.breakdowns.put(index, Breakdown.fromBytes(in.blob()));
    }
    for (long n = in.varint(); n > 0; n--) {
      state.early.add(in.blob());
    }
    return state;
  }
}
