package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.DefaultRecord;
import org.apache.kafka.common.record.DefaultRecordBatch;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** KafkaProducer against Shoal: acks, idempotence, codecs, headers, record size limits, keys. */
class ProducerTest extends ShoalTestBase {

    private static List<ConsumerRecord<byte[], byte[]>> readAll(String topic, int partitions, int expected) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(
                "max.partition.fetch.bytes", 1 << 20))) {
            c.assign(partitions(topic, partitions));
            c.seekToBeginning(partitions(topic, partitions));
            return pollExactly(c, expected, Duration.ofSeconds(60));
        }
    }

    /** Records of one partition in offset order, checking the offsets are dense from 0. */
    private static Map<Integer, List<ConsumerRecord<byte[], byte[]>>> byPartition(List<ConsumerRecord<byte[], byte[]>> records) {
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> out = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : records) {
            out.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
        }
        for (var e : out.entrySet()) {
            List<ConsumerRecord<byte[], byte[]>> rs = e.getValue();
            for (int i = 0; i < rs.size(); i++) {
                assertEquals(i, rs.get(i).offset(), "partition " + e.getKey() + ": offsets must be dense from 0");
            }
        }
        return out;
    }

    @ParameterizedTest(name = "acks={0}")
    @ValueSource(strings = {"0", "1", "all"})
    void acksModesDeliverEverythingInOrder(String acks) throws Exception {
        String topic = createTopic(unique("acks" + acks), 2);
        int n = 400;
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, acks,
                ProducerConfig.LINGER_MS_CONFIG, 5, ProducerConfig.BATCH_SIZE_CONFIG, 2048))) {
            for (int i = 0; i < n; i++) {
                futures.add(p.send(new ProducerRecord<>(topic, i % 2, null, bytes("v" + i))));
            }
            p.flush();
        }
        long[] next = new long[2];
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
            assertEquals(i % 2, md.partition());
            if (!acks.equals("0")) {
                // Acknowledged offsets follow send order, dense from 0.
                assertEquals(next[i % 2]++, md.offset(), "acked offset of record " + i);
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 2, n);
        assertEquals(n, got.size(), "records read back");
        var parts = byPartition(got);
        for (int p = 0; p < 2; p++) {
            List<ConsumerRecord<byte[], byte[]>> rs = parts.get(p);
            assertEquals(n / 2, rs.size());
            for (int j = 0; j < rs.size(); j++) {
                assertEquals("v" + (2 * j + p), str(rs.get(j).value()));
            }
        }
        assertEquals(Map.of(new TopicPartition(topic, 0), (long) n / 2, new TopicPartition(topic, 1), (long) n / 2),
                endOffsets(partitions(topic, 2)));
    }

    @Test
    void idempotentProducerHasNoDuplicatesAndOrderedOffsets() throws Exception {
        String topic = createTopic(unique("idem"), 3);
        int n = 3000;
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
                ProducerConfig.LINGER_MS_CONFIG, 0,
                ProducerConfig.BATCH_SIZE_CONFIG, 512))) {
            for (int i = 0; i < n; i++) {
                futures.add(p.send(new ProducerRecord<>(topic, i % 3, bytes("k" + i), bytes("idem-" + i))));
            }
            p.flush();
        }
        Map<TopicPartition, String> valueAt = new HashMap<>();
        long[] last = {-1, -1, -1};
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
            assertEquals(last[md.partition()] + 1, md.offset(), "offset of record " + i + " (send order, dense)");
            last[md.partition()] = md.offset();
            valueAt.put(new TopicPartition(topic + "@" + md.offset(), md.partition()), "idem-" + i);
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 3, n);
        assertEquals(n, got.size(), "every record exactly once");
        Set<String> seen = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> r : got) {
            assertTrue(seen.add(str(r.value())), "duplicate " + str(r.value()));
            assertEquals(valueAt.get(new TopicPartition(topic + "@" + r.offset(), r.partition())), str(r.value()),
                    "value at the acknowledged offset");
        }
        byPartition(got);
        // The producer really was idempotent: the broker tracks one producer id per partition
        // whose last sequence is the partition's record count - 1.
        var described = admin.describeProducers(partitions(topic, 3));
        for (TopicPartition tp : partitions(topic, 3)) {
            List<ProducerState> states = get(described.partitionResult(tp)).activeProducers();
            assertEquals(1, states.size(), "active producers on " + tp + ": " + states);
            ProducerState s = states.get(0);
            assertTrue(s.producerId() >= 0, "producer id " + s.producerId());
            assertEquals(n / 3 - 1, s.lastSequence(), "last sequence on " + tp);
        }
    }

    @Test
    void idempotentRetriesAfterRequestTimeoutsAreDeduplicated() throws Exception {
        // A request timeout far below the broker's fsync time makes the client give up on
        // requests the broker still appends, reconnect and send the same batches again (same
        // producer id, epoch and sequence): the broker must answer them with the original
        // offsets instead of appending them twice.
        String topic = createTopic(unique("idem-retry"), 2);
        int n = 1000;
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        double retries;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
                ProducerConfig.LINGER_MS_CONFIG, 0,
                ProducerConfig.BATCH_SIZE_CONFIG, 1024,
                ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 2,
                ProducerConfig.RETRY_BACKOFF_MS_CONFIG, 10,
                ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 110000))) {
            for (int i = 0; i < n; i++) {
                futures.add(p.send(new ProducerRecord<>(topic, i % 2, null, bytes("retry-" + i))));
            }
            p.flush();
            retries = p.metrics().entrySet().stream()
                    .filter(e -> e.getKey().name().equals("record-retry-total") && e.getKey().group().equals("producer-metrics"))
                    .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue()).sum();
        }
        long[] last = {-1, -1};
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get(30, TimeUnit.SECONDS);
            assertEquals(last[md.partition()] + 1, md.offset(), "offset of record " + i + " (retries: " + retries + ")");
            last[md.partition()] = md.offset();
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 2, n);
        assertEquals(n, got.size(), "every record exactly once (client retries: " + retries + ")");
        var parts = byPartition(got);
        for (int p = 0; p < 2; p++) {
            for (int j = 0; j < parts.get(p).size(); j++) {
                assertEquals("retry-" + (2 * j + p), str(parts.get(p).get(j).value()));
            }
        }
        System.err.println("idempotentRetriesAfterRequestTimeoutsAreDeduplicated: client retried " + retries + " records");
    }

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTrips(String codec) throws Exception {
        String topic = createTopic(unique("codec-" + codec), 1);
        int n = 1000;
        long t0 = System.currentTimeMillis() - 60_000;
        String filler = "shoal compresses nothing itself but must store what it gets ".repeat(8);
        long rawValueBytes = 0;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 20, ProducerConfig.BATCH_SIZE_CONFIG, 128 * 1024))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                byte[] value = bytes(filler + i);
                rawValueBytes += value.length;
                List<Header> headers = List.of(new RecordHeader("codec", bytes(codec)), new RecordHeader("i", bytes(String.valueOf(i))));
                fs.add(p.send(new ProducerRecord<>(topic, 0, t0 + i, bytes("key-" + i), value, headers)));
            }
            p.flush();
            for (Future<RecordMetadata> f : fs) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 1, n);
        assertEquals(n, got.size());
        for (int i = 0; i < n; i++) {
            ConsumerRecord<byte[], byte[]> r = got.get(i);
            assertEquals(i, r.offset());
            assertEquals("key-" + i, str(r.key()));
            assertEquals(filler + i, str(r.value()));
            assertEquals(t0 + i, r.timestamp());
            Header[] hs = r.headers().toArray();
            assertEquals(2, hs.length);
            assertEquals("codec", hs[0].key());
            assertEquals(codec, str(hs[0].value()));
            assertEquals(String.valueOf(i), str(hs[1].value()));
        }
        // The broker stored the batches as the producer compressed them (topic compression.type
        // is "producer"): the partition's size on disk shows it.
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(0)).allDescriptions()).get(0);
        long size = -1;
        for (LogDirDescription d : dirs.values()) {
            ReplicaInfo ri = d.replicaInfos().get(tp);
            if (ri != null) {
                size = ri.size();
            }
        }
        assertTrue(size > 0, "DescribeLogDirs size of " + tp + ": " + size);
        if (codec.equals("none")) {
            assertTrue(size >= rawValueBytes, "uncompressed size " + size + " < raw value bytes " + rawValueBytes);
        } else {
            assertTrue(size < rawValueBytes / 3, codec + ": stored " + size + " bytes for " + rawValueBytes + " raw value bytes");
        }
    }

    @Test
    void headersRoundTripExactly() throws Exception {
        String topic = createTopic(unique("headers"), 1);
        byte[] binary = new byte[256];
        for (int i = 0; i < 256; i++) {
            binary[i] = (byte) i;
        }
        List<List<Header>> sent = List.of(
                List.of(),
                List.of(new RecordHeader("a", bytes("1")), new RecordHeader("b", bytes("2"))),
                List.of(new RecordHeader("dup", bytes("x")), new RecordHeader("dup", bytes("y")), new RecordHeader("dup", bytes("z"))),
                List.of(new RecordHeader("null-value", (byte[]) null), new RecordHeader("empty", new byte[0])),
                List.of(new RecordHeader("ключ", "значение".getBytes(StandardCharsets.UTF_8)), new RecordHeader("bin", binary)));
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 10))) {
            for (List<Header> hs : sent) {
                p.send(new ProducerRecord<byte[], byte[]>(topic, 0, (byte[]) null, bytes("v"), hs));
            }
            p.flush();
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 1, sent.size());
        assertEquals(sent.size(), got.size());
        for (int i = 0; i < sent.size(); i++) {
            Header[] want = sent.get(i).toArray(new Header[0]);
            Header[] have = got.get(i).headers().toArray();
            assertEquals(want.length, have.length, "header count of record " + i);
            for (int h = 0; h < want.length; h++) {
                assertEquals(want[h].key(), have[h].key(), "record " + i + " header " + h + " key");
                if (want[h].value() == null) {
                    assertNull(have[h].value(), "record " + i + " header " + h + " must stay null");
                } else {
                    assertArrayEquals(want[h].value(), have[h].value(), "record " + i + " header " + h + " value");
                }
            }
        }
    }

    /** Size of a one-record batch (null key, no headers) with a value of {@code valueSize} bytes. */
    private static int batchSize(int valueSize) {
        return DefaultRecordBatch.RECORD_BATCH_OVERHEAD + DefaultRecord.sizeInBytes(0, 0L, -1, valueSize, new Header[0]);
    }

    /** The largest value whose one-record batch is at most {@code limit} bytes. */
    private static int largestValue(int limit) {
        int v = limit - DefaultRecordBatch.RECORD_BATCH_OVERHEAD;
        while (batchSize(v) > limit) {
            v--;
        }
        return v;
    }

    private void checkLimit(String topic, int limit) throws Exception {
        int fits = largestValue(limit);
        assertTrue(batchSize(fits) <= limit && batchSize(fits + 1) > limit);
        byte[] big = new byte[fits];
        new Random(42).nextBytes(big);
        byte[] tooBig = Arrays.copyOf(big, fits + 1);
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                ProducerConfig.MAX_REQUEST_SIZE_CONFIG, limit + (1 << 20),
                ProducerConfig.BUFFER_MEMORY_CONFIG, 4L * limit + (32 << 20),
                ProducerConfig.LINGER_MS_CONFIG, 0,
                ProducerConfig.ACKS_CONFIG, "all"))) {
            RecordMetadata md = p.send(new ProducerRecord<>(topic, 0, null, big)).get(60, TimeUnit.SECONDS);
            assertEquals(0, md.offset());
            try {
                p.send(new ProducerRecord<>(topic, 0, null, tooBig)).get(60, TimeUnit.SECONDS);
                fail("a batch of " + batchSize(fits + 1) + " bytes was accepted by a topic with max.message.bytes=" + limit);
            } catch (ExecutionException e) {
                assertInstanceOf(RecordTooLargeException.class, e.getCause(), "error for an oversized batch");
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 1, 1);
        assertEquals(1, got.size(), "only the record that fits is stored");
        assertArrayEquals(big, got.get(0).value());
        assertEquals(1L, endOffsets(partitions(topic, 1)).get(new TopicPartition(topic, 0)));
    }

    @Test
    void recordsUpToKafkasDefaultOneMebibyteLimit() throws Exception {
        // Kafka's default message.max.bytes: 1 MiB + the 12-byte log overhead.
        int limit = 1048588;
        String topic = createTopic(unique("large1m"), 1, Map.of("max.message.bytes", String.valueOf(limit)));
        checkLimit(topic, limit);
    }

    @Test
    void recordsUpToTheBrokersDefaultLimit() throws Exception {
        String topic = createTopic(unique("largedefault"), 1);
        Config config = get(admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, topic))).all())
                .get(new ConfigResource(ConfigResource.Type.TOPIC, topic));
        ConfigEntry e = config.get("max.message.bytes");
        assertNotNull(e, "max.message.bytes is described");
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, e.source());
        int limit = Integer.parseInt(e.value());
        assertTrue(limit >= 1048588 && limit <= 64 << 20, "default max.message.bytes " + limit);
        checkLimit(topic, limit);
    }

    @Test
    void producingToAnUnknownTopicCreatesIt() throws Exception {
        String topic = unique("auto-created");
        assertFalse(topicNames().contains(topic));
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            RecordMetadata md = p.send(new ProducerRecord<>(topic, bytes("first"))).get(60, TimeUnit.SECONDS);
            assertEquals(0, md.offset());
            assertEquals(0, md.partition());
            assertEquals(1, p.partitionsFor(topic).size(), "auto-created topics get default_partitions (1)");
            assertEquals(0, p.partitionsFor(topic).get(0).leader().id());
        }
        assertTrue(topicNames().contains(topic));
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, 1, 1);
        assertEquals(1, got.size());
        assertEquals("first", str(got.get(0).value()));
    }

    @Test
    void keysGoToTheirPartitionInOrder() throws Exception {
        int parts = 6;
        String topic = createTopic(unique("keys"), parts);
        int keyed = 600;
        int unkeyed = 120;
        Map<String, List<String>> sentPerKey = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            List<String> keys = new ArrayList<>();
            for (int i = 0; i < keyed; i++) {
                String key = "key-" + (i % 37);
                keys.add(key);
                sentPerKey.computeIfAbsent(key, k -> new ArrayList<>()).add("v" + i);
                fs.add(p.send(new ProducerRecord<>(topic, bytes(key), bytes("v" + i))));
            }
            for (int i = 0; i < unkeyed; i++) {
                p.send(new ProducerRecord<>(topic, null, bytes("u" + i)));
            }
            p.flush();
            for (int i = 0; i < keyed; i++) {
                // The built-in partitioner: murmur2 of the key over the partition count the
                // broker's metadata reports.
                int expected = Utils.toPositive(Utils.murmur2(bytes(keys.get(i)))) % parts;
                assertEquals(expected, fs.get(i).get(30, TimeUnit.SECONDS).partition(), "partition of " + keys.get(i));
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(topic, parts, keyed + unkeyed);
        assertEquals(keyed + unkeyed, got.size());
        byPartition(got);
        Map<String, List<String>> readPerKey = new HashMap<>();
        Set<String> unkeyedSeen = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> r : got) {
            if (r.key() == null) {
                assertTrue(unkeyedSeen.add(str(r.value())));
                continue;
            }
            String key = str(r.key());
            assertEquals(Utils.toPositive(Utils.murmur2(r.key())) % parts, r.partition(), "partition of " + key);
            readPerKey.computeIfAbsent(key, k -> new ArrayList<>()).add(str(r.value()));
        }
        assertEquals(unkeyed, unkeyedSeen.size());
        // Records of one key live in one partition, so they are read back in send order.
        assertEquals(sentPerKey, readPerKey);
    }
}
