package feedrank.streaming.engine;

import java.util.List;
import org.apache.flink.types.Row;

/**
 * One record out of the join ({@code feedrank.streaming.join_logic.JoinOutput}): as a
 * row, the fields of the Python job's {@code OUTPUT_ROW}, in its order.
 */
final class JoinOutput {
  final String kind;
  final byte[] key;
  byte[] payload = new byte[0];
  final String modelVersion;
  final String arm;
  final long eventTimeMs;
  int impressions;
  int engagements;
  double dwellSeconds;
  int reports;
  int blocks;
  int hides;
  int prompt;
  String detail = "";
  String postId = "";
  int segment = -1;
  List<byte[]> payloads = List.of();

  JoinOutput(String kind, byte[] key, String modelVersion, String arm, long eventTimeMs) {
    this.kind = kind;
    this.key = key;
    this.modelVersion = modelVersion;
    this.arm = arm;
    this.eventTimeMs = eventTimeMs;
  }

  boolean isExamples() {
    return kind.equals("example") || kind.equals("examples");
  }

  Row toRow() {
    return Row.of(
        kind,
        key,
        payload,
        modelVersion,
        arm,
        eventTimeMs,
        impressions,
        engagements,
        dwellSeconds,
        reports,
        blocks,
        hides,
        prompt,
        detail,
        postId,
        segment,
        payloads.toArray(new byte[0][]));
  }
}
