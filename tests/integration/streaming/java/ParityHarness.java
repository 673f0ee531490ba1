package feedrank.streaming.engine;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;

/**
 * The Java engine's pieces that must match Python's byte for byte, one request a line on
 * standard input, one answer a line on standard output (test_java_engine_parity.py):
 *
 * <pre>
 * blake2b HEX SIZE       the digest, hex
 * segment SALT USER      the user's position segment under the salt (both hex UTF-8)
 * repr BITS              Python's repr of the double with these raw bits
 * state HEX              a label state's bytes read and written again, hex
 * posts ID,ID,...        a decision's post hashes: the width, then the hashes, hex
 * json ID USER TYPE BITS a late or dangling reward's JSON (id and user hex UTF-8)
 * </pre>
 */
public final class ParityHarness {
  public static void main(String[] args) throws Exception {
    HexFormat hex = HexFormat.of();
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] words = line.split(" ", -1);
      String answer;
      switch (words[0]) {
        case "blake2b":
          answer = hex.formatHex(Blake2b.digest(hex.parseHex(words[1]), Integer.parseInt(words[2])));
          break;
        case "segment":
          answer = String.valueOf(config(text(words[1])).segmentOf(text(words[2])));
          break;
        case "repr":
          answer = PythonText.floatRepr(Double.longBitsToDouble(Long.parseLong(words[1])));
          break;
        case "state":
          answer = hex.formatHex(LabelState.fromBytes(hex.parseHex(words[1])).toBytes());
          break;
        case "posts":
          LabelState state = new LabelState();
          state.setPosts(Arrays.asList(words[1].split(",")));
          answer = state.hashWidth + " " + hex.formatHex(state.hashes);
          break;
        case "json":
          JoinLogic.RewardRecord reward =
              new JoinLogic.RewardRecord(
                  text(words[1]), "p1", text(words[2]), words[3],
                  Double.longBitsToDouble(Long.parseLong(words[4])), 1_764_000_000_000L);
          answer = new String(PythonText.rewardJson(reward), StandardCharsets.US_ASCII);
          break;
        default:
          answer = "unknown request " + words[0];
      }
      System.out.println(answer);
    }
  }

  private static String text(String hexText) {
    return new String(HexFormat.of().parseHex(hexText), StandardCharsets.UTF_8);
  }

  private static JoinConfig config(String salt) {
    return new JoinConfig(1, 0, 1, 1, 0, salt, "t", new HashMap<>(), 0, 0);
  }
}
