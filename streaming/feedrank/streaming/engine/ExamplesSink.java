package feedrank.streaming.engine;

import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.typeutils.TupleTypeInfo;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.header.Header;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.flink.util.OutputTag;

/**
 * The examples topic's sink: each labelled example (one per shown item) as one Kafka
 * record (key the user id, value the {@code LabelledExample}, header {@code content-type:
 * application/x-protobuf}), written by Flink's {@link KafkaSink} in transactions that
 * commit with the job's checkpoints (exactly once).
 *
 * <p>The join hands its examples over as a side output ({@link #EXAMPLES}): they never
 * become table rows, so no SQL unnests, copies or re-encodes their bytes (docs/streaming.md,
 * "The examples' own sink"). The records are those the SQL sink of the Python engine writes:
 * the producer's partitioner on the key, its clock for the record time.
 */
final class ExamplesSink {
  private ExamplesSink() {}

  /** (key, value) of one example record. */
  static final TupleTypeInfo<Tuple2<byte[], byte[]>> RECORD =
      new TupleTypeInfo<>(
          PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO,
          PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);

  static final OutputTag<Tuple2<byte[], byte[]>> EXAMPLES = new OutputTag<>("examples", RECORD);

  static KafkaSink<Tuple2<byte[], byte[]>> sink(JoinConfig config, ExamplesTarget target) {
    Properties properties = new Properties();
    properties.putAll(config.kafkaProperties); // bootstrap.servers and its security
    properties.putAll(target.producerProperties);
    return KafkaSink.<Tuple2<byte[], byte[]>>builder()
        .setKafkaProducerConfig(properties)
        .setRecordSerializer(new Records(target.topic))
        .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .setTransactionalIdPrefix(target.transactionalIdPrefix)
        .build();
  }

  /** One example as its Kafka record. */
  static final class Records implements KafkaRecordSerializationSchema<Tuple2<byte[], byte[]>> {
    private static final long serialVersionUID = 1L;
    private static final byte[] PROTOBUF =
        "application/x-protobuf".getBytes(StandardCharsets.US_ASCII);
    private final String topic;

    Records(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
        Tuple2<byte[], byte[]> example, KafkaSinkContext context, Long timestamp) {
      // A fresh header set each time: the producer marks a record's headers read-only.
      RecordHeaders headers =
          new RecordHeaders(new Header[] {new RecordHeader("content-type", PROTOBUF)});
      return new ProducerRecord<>(topic, null, null, example.f0, example.f1, headers);
    }
  }
}
