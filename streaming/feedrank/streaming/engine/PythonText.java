package feedrank.streaming.engine;

import java.math.BigDecimal;

/**
 * Text as the Python join writes it, so that dead letters read the same whichever
 * engine wrote them: a reward's JSON ({@code feedrank.core.codecs.encode_reward_json},
 * {@code json.dumps} with ASCII escapes) and Python's {@code repr} of a float.
 */
final class PythonText {
  private PythonText() {}

  static byte[] rewardJson(JoinLogic.RewardRecord reward) {
    StringBuilder json = new StringBuilder(160);
    json.append("{\"decision_id\":");
    string(json, reward.decisionId);
    json.append(",\"post_id\":");
    string(json, reward.postId);
    json.append(",\"user_id\":");
    string(json, reward.userId);
    json.append(",\"type\":");
    string(json, reward.rewardType);
    json.append(",\"value\":").append(floatRepr(reward.value));
    json.append(",\"ts_ms\":").append(reward.tsMs).append('}');
    return json.toString().getBytes(java.nio.charset.StandardCharsets.US_ASCII);
  }

  /** A JSON string as {@code json.dumps} writes it (ensure_ascii). */
  static void string(StringBuilder out, String text) {
    out.append('"');
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      switch (c) {
        case '"':
          out.append("\\\"");
          break;
        case '\\':
          out.append("\\\\");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        case '\b':
          out.append("\\b");
          break;
        case '\f':
          out.append("\\f");
          break;
        default:
          if (c < 0x20 || c > 0x7e) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
      }
    }
    out.append('"');
  }

  /** Python's {@code repr(value)} (and {@code json.dumps}'s): shortest round-trip digits. */
  static String floatRepr(double value) {
    if (Double.isNaN(value)) {
      return "NaN";
    }
    if (Double.isInfinite(value)) {
      return value > 0 ? "Infinity" : "-Infinity";
    }
    if (value == 0) {
      return (1 / value < 0) ? "-0.0" : "0.0";
    }
    BigDecimal shortest = new BigDecimal(Double.toString(value)).stripTrailingZeros();
    String digits = shortest.unscaledValue().abs().toString();
    int exponent = digits.length() - 1 - shortest.scale(); // of the first digit
    String sign = value < 0 ? "-" : "";
    if (exponent >= -4 && exponent < 16) {
      String plain = shortest.abs().toPlainString();
      return sign + (plain.contains(".") ? plain : plain + ".0");
    }
    String mantissa =
        digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
    String power = String.format("%s%02d", exponent < 0 ? "-" : "+", Math.abs(exponent));
    return sign + mantissa + "e" + power;
  }
}
