package feedrank.streaming.engine;

import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;

/** The examples topic and its sink's transactions, built by the Python job. */
public final class ExamplesTarget implements Serializable {
  private static final long serialVersionUID = 1L;

  final String topic;
  final String transactionalIdPrefix;
  final long transactionTimeoutMs;
  final HashMap<String, String> producerProperties; // batching and compression

  public ExamplesTarget(
      String topic,
      String transactionalIdPrefix,
      long transactionTimeoutMs,
      Map<String, String> producerProperties) {
    this.topic = topic;
    this.transactionalIdPrefix = transactionalIdPrefix;
    this.transactionTimeoutMs = transactionTimeoutMs;
    this.producerProperties = new HashMap<>(producerProperties);
  }
}
