package feedrank.streaming.engine;

import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;

/** The examples topic and its sink's transactions, built by the Python job. */
public final class ExamplesTarget implements Serializable {
  private static final long serialVersionUID = 1L;

  final String topic;
  final String transactionalIdPrefix;
  final HashMap<String, String> producerProperties; // transaction timeout, batching

  public ExamplesTarget(
      String topic, String transactionalIdPrefix, Map<String, String> producerProperties) {
    this.topic = topic;
    this.transactionalIdPrefix = transactionalIdPrefix;
    this.producerProperties = new HashMap<>(producerProperties);
  }
}
