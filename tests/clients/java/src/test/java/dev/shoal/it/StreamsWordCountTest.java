package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kafka Streams word count (the Streams quick-start topology: flatMap, groupBy, count into a
 * RocksDB state store, to an output topic), at-least-once, against Shoal. The groupBy goes through
 * a repartition topic that Streams creates itself (CreateTopics with its internal-topic configs),
 * writes and reads back, and purges with DeleteRecords after each commit; the group uses Streams'
 * own assignor over the classic protocol.
 *
 * <p>The first test runs the store without a changelog; the second is the full quick start, whose
 * store is backed by a changelog topic Streams creates with {@code cleanup.policy=compact} (log
 * compaction), and restores a fresh instance's store from it.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class StreamsWordCountTest extends ShoalTestBase {
    private static final List<String> LINES = List.of(
            "all streams lead to kafka",
            "hello kafka streams",
            "join kafka summit",
            "shoal speaks kafka",
            "streams of records flow into shoal");

    @TempDir
    Path stateDir;

    /** How the topology and the expected counts split a line. */
    private static List<String> words(String line) {
        return Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+"));
    }

    /** The word count: lines to words, regrouped by word (a repartition topic), counted into {@code store}. */
    private static Topology wordCount(String in, String out,
            Materialized<String, Long, KeyValueStore<Bytes, byte[]>> store) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(StreamsWordCountTest::words)
                .groupBy((key, word) -> word, Grouped.with("by-word", Serdes.String(), Serdes.String()))
                .count(store)
                .toStream()
                .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    private static Map<String, Long> expectedCounts(int rounds) {
        Map<String, Long> counts = new HashMap<>();
        for (int r = 0; r < rounds; r++) {
            for (String line : LINES) {
                for (String word : words(line)) {
                    counts.merge(word, 1L, Long::sum);
                }
            }
        }
        return counts;
    }

    private Properties streamsProps(String appId) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return p;
    }

    private void produceLines(String topic, int rounds) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int r = 0; r < rounds; r++) {
                for (int i = 0; i < LINES.size(); i++) {
                    producer.send(new ProducerRecord<>(topic, "line-" + r + "-" + i, LINES.get(i))).get();
                }
            }
        }
    }

    /** The newest count per word on the output topic, read until it equals {@code want}. */
    private Map<String, Long> readCounts(String topic, Map<String, Long> want, Duration within) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, unique("wc-reader"));
        Map<String, Long> latest = new HashMap<>();
        long deadline = System.nanoTime() + within.toNanos();
        try (KafkaConsumer<String, Long> consumer =
                new KafkaConsumer<>(p, new StringDeserializer(), new LongDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (System.nanoTime() < deadline && !latest.equals(want)) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                    latest.put(r.key(), r.value());
                }
            }
        }
        return latest;
    }

    private static void startAndAwaitRunning(KafkaStreams streams, Duration within) throws InterruptedException {
        AtomicReference<Throwable> failure = new AtomicReference<>();
        streams.setUncaughtExceptionHandler(e -> {
            failure.set(e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        long deadline = System.nanoTime() + within.toNanos();
        while (streams.state() != KafkaStreams.State.RUNNING) {
            if (failure.get() != null) {
                throw new AssertionError("streams failed: " + failure.get(), failure.get());
            }
            assertTrue(System.nanoTime() < deadline, "streams not RUNNING within " + within + ": " + streams.state());
            Thread.sleep(100);
        }
    }

    @Test
    void wordCountWithARocksDbStoreAndARepartitionTopic() throws Exception {
        String appId = unique("wordcount");
        String in = unique("wc-in");
        String out = unique("wc-out");
        createTopic(in, 2);
        createTopic(out, 2);
        Topology topology = wordCount(in, out,
                Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts").withLoggingDisabled());

        produceLines(in, 3);
        Map<String, Long> want = expectedCounts(3);
        try (KafkaStreams streams = new KafkaStreams(topology, streamsProps(appId))) {
            startAndAwaitRunning(streams, Duration.ofSeconds(60));
            assertEquals(want, readCounts(out, want, Duration.ofSeconds(60)), "counts on the output topic");

            // The state store, queried in place, holds the same counts.
            ReadOnlyKeyValueStore<String, Long> store = streams.store(
                    StoreQueryParameters.fromNameAndType("counts", QueryableStoreTypes.keyValueStore()));
            Map<String, Long> stored = new HashMap<>();
            try (KeyValueIterator<String, Long> it = store.all()) {
                while (it.hasNext()) {
                    KeyValue<String, Long> kv = it.next();
                    stored.put(kv.key, kv.value);
                }
            }
            assertEquals(want, stored, "counts in the state store");

            // Streams created its repartition topic on Shoal with its own configs.
            String repartition = appId + "-by-word-repartition";
            TopicDescription described = admin.describeTopics(List.of(repartition))
                    .allTopicNames().get(30, TimeUnit.SECONDS).get(repartition);
            assertEquals(2, described.partitions().size(), "repartition topic partitions");

            // More input after the first commits: the counts go on from the committed offsets.
            produceLines(in, 2);
            Map<String, Long> more = expectedCounts(5);
            assertEquals(more, readCounts(out, more, Duration.ofSeconds(60)), "counts after more input");
            streams.close(Duration.ofSeconds(30));
        }

        // The group committed the input's end: nothing is left to reprocess.
        Map<org.apache.kafka.common.TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        long committedOnInput = committed.entrySet().stream()
                .filter(e -> e.getKey().topic().equals(in))
                .mapToLong(e -> e.getValue().offset()).sum();
        assertEquals(5L * LINES.size(), committedOnInput, "committed offsets on the input topic");
    }

    @Test
    void wordCountWithAChangelogTopic() throws Exception {
        String appId = unique("wordcount-changelog");
        String in = unique("wcc-in");
        String out = unique("wcc-out");
        createTopic(in, 1);
        createTopic(out, 1);
        Topology topology = wordCount(in, out, Materialized.as("counts"));
        produceLines(in, 2);
        Map<String, Long> want = expectedCounts(2);
        try (KafkaStreams streams = new KafkaStreams(topology, streamsProps(appId))) {
            startAndAwaitRunning(streams, Duration.ofSeconds(60));
            assertEquals(want, readCounts(out, want, Duration.ofSeconds(60)));
        }
        // A second instance with an empty state dir restores the store from the changelog.
        Path fresh = Files.createTempDirectory(stateDir, "restore");
        Properties props = streamsProps(appId);
        props.put(StreamsConfig.STATE_DIR_CONFIG, fresh.toString());
        produceLines(in, 1);
        Map<String, Long> more = expectedCounts(3);
        try (KafkaStreams streams = new KafkaStreams(wordCount(in, out, Materialized.as("counts")), props)) {
            startAndAwaitRunning(streams, Duration.ofSeconds(90));
            assertEquals(more, readCounts(out, more, Duration.ofSeconds(60)));
        }
        Set<String> topics = admin.listTopics().names().get(30, TimeUnit.SECONDS);
        String changelog = appId + "-counts-changelog";
        assertTrue(topics.contains(changelog), "changelog topic created: " + topics);
        org.apache.kafka.common.config.ConfigResource res = new org.apache.kafka.common.config.ConfigResource(
                org.apache.kafka.common.config.ConfigResource.Type.TOPIC, changelog);
        String policy = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS)
                .get(res).get("cleanup.policy").value();
        assertEquals("compact", policy, "Streams creates its changelog compacted");
    }
}
