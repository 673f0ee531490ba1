package feedrank.streaming.engine;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * The join's semantics ({@code feedrank.streaming.join_logic.JoinConfig}) and where its
 * decision log is ({@code feedrank.streaming.decision_log.DecisionLogConfig}), built by
 * the Python job from the same settings.
 */
public final class JoinConfig implements Serializable {
  private static final long serialVersionUID = 1L;
  private static final int POSITION_SEGMENTS = 100;
  private static final int MANTISSA_BITS = 53;

  final long rewardWindowMs;
  final long maxSkewMs;
  final long danglingWaitMs;
  final long tombstoneMs;
  final long promptHorizonMs;
  final String segmentSalt; // null: no segments
  final String decisionsTopic;
  final HashMap<String, String> kafkaProperties; // bootstrap.servers and its security
  final long cacheBytes;
  final long readTimeoutMs;

  public JoinConfig(
      long rewardWindowMs,
      long maxSkewMs,
      long danglingWaitMs,
      long tombstoneMs,
      long promptHorizonMs,
      String segmentSalt,
      String decisionsTopic,
      Map<String, String> kafkaProperties,
      long cacheBytes,
      long readTimeoutMs) {
    this.rewardWindowMs = rewardWindowMs;
    this.maxSkewMs = maxSkewMs;
    this.danglingWaitMs = danglingWaitMs;
    this.tombstoneMs = tombstoneMs;
    this.promptHorizonMs = promptHorizonMs;
    this.segmentSalt = segmentSalt;
    this.decisionsTopic = decisionsTopic;
    this.kafkaProperties = new HashMap<>(kafkaProperties);
    this.cacheBytes = cacheBytes;
    this.readTimeoutMs = readTimeoutMs;
  }

  /**
   * {@code userId}'s position segment under the salt, -1 without one: the segment of [0, 1)
   * {@code feedrank.core.arms.position_segment} finds (BLAKE2b of salt, NUL, user id).
   */
  public int segmentOf(String userId) {
    if (segmentSalt == null) {
      return -1;
    }
    byte[] salt = segmentSalt.getBytes(StandardCharsets.UTF_8);
    byte[] user = userId.getBytes(StandardCharsets.UTF_8);
    byte[] keyed = new byte[salt.length + 1 + user.length];
    System.arraycopy(salt, 0, keyed, 0, salt.length);
    System.arraycopy(user, 0, keyed, salt.length + 1, user.length);
    long top = ByteBuffer.wrap(Blake2b.digest(keyed, 8)).getLong() >>> (64 - MANTISSA_BITS);
    double position = top / (double) (1L << MANTISSA_BITS);
    return Math.min((int) (position * POSITION_SEGMENTS), POSITION_SEGMENTS - 1);
  }
}
