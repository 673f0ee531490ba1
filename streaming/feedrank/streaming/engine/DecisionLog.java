package feedrank.streaming.engine;

import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.KafkaException;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Decisions re-read from the decisions topic by position, for the examples the join
 * writes: Python's {@code feedrank.streaming.decision_log.DecisionLog}. Recent decisions
 * come from a bounded cache (most positives come within minutes of their impression);
 * others from Kafka, read committed, going on forward from where the last read ended (the
 * window closes come in the log's order) and caching every decision passed. The Kafka
 * client is the one the Flink Kafka connector ships (relocated), so the job needs no
 * other jar. Nothing here is checkpointed: the log is immutable.
 */
final class DecisionLog implements AutoCloseable {
  static final int READ_BATCH = 500;

  private final JoinConfig config;
  private final LinkedHashMap<Long, byte[]> cache = new LinkedHashMap<>(1024, 0.75f, true);
  private long cachedBytes;
  private KafkaConsumer<byte[], byte[]> consumer;
  private final Map<Integer, Long> next = new HashMap<>(); // partition -> its next offset
  private final Set<TopicPartition> assigned = new HashSet<>();
  volatile long reads; // decisions fetched from Kafka, not the cache (one writer: the task)
  volatile long hits;

  DecisionLog(JoinConfig config) {
    this.config = config;
  }

  private static long key(int partition, long offset) {
    return (long) partition << 48 | offset;
  }

  /** Cache a decision the join has just seen. */
  void remember(int partition, long offset, byte[] payload) {
    long key = key(partition, offset);
    if (cache.get(key) != null) {
      return;
    }
    cache.put(key, payload);
    cachedBytes += payload.length;
    Iterator<byte[]> oldest = cache.values().iterator();
    while (cachedBytes > config.cacheBytes && oldest.hasNext()) {
      cachedBytes -= oldest.next().length;
      oldest.remove();
    }
  }

  /** The decision's bytes at {@code partition} and {@code offset}. */
  byte[] payload(int partition, long offset) {
    byte[] cached = cache.get(key(partition, offset));
    if (cached != null) {
      hits++;
      return cached;
    }
    reads++;
    return read(partition, offset);
  }

  @Override
  public void close() {
    if (consumer != null) {
      consumer.close();
      consumer = null;
    }
    next.clear();
    assigned.clear();
  }

  private byte[] read(int partition, long offset) {
    KafkaConsumer<byte[], byte[]> reader = consumerAt(partition, offset);
    long deadline = System.nanoTime() + config.readTimeoutMs * 1_000_000L;
    byte[] found = null;
    boolean passed = false; // the wanted partition was read past the wanted offset
    try {
      while (found == null && !passed && System.nanoTime() < deadline) {
        for (ConsumerRecord<byte[], byte[]> record : reader.poll(Duration.ofMillis(50))) {
          byte[] value = record.value() == null ? new byte[0] : record.value();
          next.put(record.partition(), record.offset() + 1);
          remember(record.partition(), record.offset(), value);
          if (record.partition() == partition) {
            if (record.offset() == offset) {
              found = value;
            }
            passed = passed || record.offset() > offset;
          }
        }
      }
    } catch (KafkaException error) {
      close();
      throw new JoinLogic.DecisionUnavailable(
          "reading " + config.decisionsTopic + ": " + error.getMessage());
    }
    if (found != null) {
      return found;
    }
    if (passed) { // the offset holds a transaction marker, not a decision
      throw new JoinLogic.DecisionUnavailable("no record at offset " + offset);
    }
    next.remove(partition);
    throw new JoinLogic.DecisionUnavailable(
        "timed out after " + config.readTimeoutMs / 1000 + "s reading " + config.decisionsTopic);
  }

  /**
   * The consumer, reading {@code partition} from at or before {@code offset}: left where it
   * is when the offset is just ahead, else moved there (a seek drops what was fetched
   * ahead for the old position).
   */
  private KafkaConsumer<byte[], byte[]> consumerAt(int partition, long offset) {
    Long at = next.get(partition);
    if (consumer != null && at != null && offset - at >= 0 && offset - at <= 4L * READ_BATCH) {
      return consumer;
    }
    if (consumer == null) {
      consumer = newConsumer();
    }
    TopicPartition wanted = new TopicPartition(config.decisionsTopic, partition);
    if (assigned.add(wanted)) {
      consumer.assign(assigned);
    }
    consumer.seek(wanted, offset);
    next.put(partition, offset);
    return consumer;
  }

  private KafkaConsumer<byte[], byte[]> newConsumer() {
    Properties properties = new Properties();
    properties.putAll(config.kafkaProperties);
    properties.put("group.id", "feedrank-join-decision-log"); // never commits: assigns, reads
    properties.put("enable.auto.commit", "false");
    properties.put("isolation.level", "read_committed");
    properties.put("auto.offset.reset", "none");
    properties.put("max.poll.records", String.valueOf(READ_BATCH));
    // A fetch parked at one partition's end must not hold up a read elsewhere.
    properties.put("fetch.max.wait.ms", "10");
    return new KafkaConsumer<>(properties, new ByteArrayDeserializer(), new ByteArrayDeserializer());
  }
}
