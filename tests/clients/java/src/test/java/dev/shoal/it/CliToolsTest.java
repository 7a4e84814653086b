package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.protocol.ApiKeys;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka's CLI tools (4.1 main classes, see {@link Cli}) against Shoal, each as its own JVM.
 * A test runs up to ten tool JVMs, so it gets more time than the default 120 s on a loaded
 * machine.
 */
@Timeout(value = 240, unit = TimeUnit.SECONDS)
class CliToolsTest extends ShoalTestBase {

    private static final ObjectMapper JSON = new ObjectMapper();

    private static String b() {
        return bootstrap();
    }

    @Test
    void kafkaTopics() throws Exception {
        String topic = unique("cli-topic");
        Cli.Result r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--create", "--topic", topic,
                "--partitions", "3", "--replication-factor", "1", "--config", "retention.ms=7200000").ok();
        assertTrue(r.stdout().contains("Created topic " + topic + "."), r.describe());

        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--list").ok();
        assertTrue(r.lines().contains(topic), r.describe());

        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--describe", "--topic", topic).ok();
        assertTrue(r.stdout().contains("PartitionCount: 3"), r.describe());
        assertTrue(r.stdout().contains("ReplicationFactor: 1"), r.describe());
        assertTrue(r.stdout().contains("retention.ms=7200000"), r.describe());
        checkPartitionLines(r, topic, 3);

        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--alter", "--topic", topic, "--partitions", "5").ok();
        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--describe", "--topic", topic).ok();
        assertTrue(r.stdout().contains("PartitionCount: 5"), r.describe());
        checkPartitionLines(r, topic, 5);

        // Operator mistakes fail with a message and a non-zero exit code.
        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--create", "--topic", topic, "--partitions", "1");
        assertNotEquals(0, r.exitCode(), r.describe());
        assertTrue((r.stdout() + r.stderr()).contains("already exists"), r.describe());
        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--alter", "--topic", topic, "--partitions", "2");
        assertNotEquals(0, r.exitCode(), r.describe());

        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--delete", "--topic", topic).ok();
        waitUntil(Duration.ofSeconds(30), "topic deleted", () -> {
            try {
                return !topicNames().contains(topic);
            } catch (Exception e) {
                return false;
            }
        });
        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--list").ok();
        assertFalse(r.lines().contains(topic), r.describe());
        r = Cli.run(Cli.TOPICS, "--bootstrap-server", b(), "--describe", "--topic", topic);
        assertNotEquals(0, r.exitCode(), "describing a deleted topic must fail\n" + r.describe());
    }

    private static void checkPartitionLines(Cli.Result r, String topic, int partitions) {
        Pattern line = Pattern.compile("Topic: " + Pattern.quote(topic) + "\\s+Partition: (\\d+)\\s+Leader: (\\d+)\\s+Replicas: (\\S+)\\s+Isr: (\\S+)");
        Set<Integer> seen = new HashSet<>();
        for (String l : r.lines()) {
            Matcher m = line.matcher(l);
            if (m.find()) {
                seen.add(Integer.parseInt(m.group(1)));
                assertEquals("0", m.group(2), l);
                assertEquals("0", m.group(3), l);
                assertEquals("0", m.group(4), l);
            }
        }
        assertEquals(partitions, seen.size(), r.describe());
    }

    @Test
    void consoleProducerAndConsumer() throws Exception {
        String topic = createTopic(unique("cli-console"), 1);
        int n = 50;
        StringBuilder in = new StringBuilder();
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            in.append("key").append(i % 7).append(':').append("line number ").append(i).append('\n');
            expected.add("key" + (i % 7) + "|line number " + i);
        }
        Cli.runWithInput(in.toString(), Cli.CONSOLE_PRODUCER, "--bootstrap-server", b(), "--topic", topic,
                "--property", "parse.key=true", "--property", "key.separator=:",
                "--producer-property", "acks=all").ok();
        assertEquals((long) n, endOffsets(List.of(new TopicPartition(topic, 0))).get(new TopicPartition(topic, 0)));

        Cli.Result r = Cli.run(Cli.CONSOLE_CONSUMER, "--bootstrap-server", b(), "--topic", topic,
                "--from-beginning", "--max-messages", String.valueOf(n), "--timeout-ms", "60000",
                "--property", "print.key=true", "--property", "key.separator=|").ok();
        assertEquals(expected, r.lines(), r.describe());
        assertTrue(r.stderr().contains("Processed a total of " + n + " messages"), r.describe());

        // Only part of the topic: --max-messages stops early, --partition/--offset start in the middle.
        r = Cli.run(Cli.CONSOLE_CONSUMER, "--bootstrap-server", b(), "--topic", topic, "--partition", "0",
                "--offset", "45", "--max-messages", "5", "--timeout-ms", "60000").ok();
        assertEquals(List.of("line number 45", "line number 46", "line number 47", "line number 48", "line number 49"),
                r.lines(), r.describe());
    }

    /** Rows of `kafka-consumer-groups --describe` (or --reset-offsets): partition -> columns. */
    private static Map<Integer, String[]> groupRows(Cli.Result r, String group, String topic) {
        Map<Integer, String[]> rows = new TreeMap<>();
        for (String l : r.lines()) {
            String[] cols = l.trim().split("\\s+");
            if (cols.length >= 4 && cols[0].equals(group) && cols[1].equals(topic)) {
                rows.put(Integer.parseInt(cols[2]), cols);
            }
        }
        return rows;
    }

    @Test
    void kafkaConsumerGroups() throws Exception {
        String topic = createTopic(unique("cli-groups"), 2);
        String group = unique("cli-group");
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (int i = 0; i < 10; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, null, bytes("v" + i)));
            }
            p.flush();
        }
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.assign(List.of(p0, p1));
            c.commitSync(Map.of(p0, new OffsetAndMetadata(3), p1, new OffsetAndMetadata(5)));
        }

        Cli.Result r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--list").ok();
        assertTrue(r.lines().contains(group), r.describe());

        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--describe", "--group", group).ok();
        Map<Integer, String[]> rows = groupRows(r, group, topic);
        assertEquals(Set.of(0, 1), rows.keySet(), r.describe());
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        assertEquals(List.of("3", "5", "2"), List.of(rows.get(0)[3], rows.get(0)[4], rows.get(0)[5]), r.describe());
        assertEquals(List.of("5", "5", "0"), List.of(rows.get(1)[3], rows.get(1)[4], rows.get(1)[5]), r.describe());

        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--describe", "--group", group, "--state").ok();
        assertTrue(Pattern.compile(Pattern.quote(b()) + "\\s+\\(0\\)").matcher(r.stdout()).find(), "coordinator\n" + r.describe());
        assertTrue(r.stdout().contains("Empty"), "state\n" + r.describe());

        // A dry run shows the plan and changes nothing.
        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--reset-offsets", "--group", group,
                "--topic", topic, "--to-offset", "4", "--dry-run").ok();
        assertEquals("4", groupRows(r, group, topic).get(0)[3], r.describe());
        assertEquals(3L, get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(p0).offset());

        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--reset-offsets", "--group", group,
                "--topic", topic, "--to-earliest", "--execute").ok();
        rows = groupRows(r, group, topic);
        assertEquals(Set.of(0, 1), rows.keySet(), r.describe());
        assertEquals("0", rows.get(0)[3], r.describe());
        assertEquals("0", rows.get(1)[3], r.describe());
        Map<TopicPartition, OffsetAndMetadata> committed = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(0L, committed.get(p0).offset());
        assertEquals(0L, committed.get(p1).offset());

        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--describe", "--group", group).ok();
        rows = groupRows(r, group, topic);
        assertEquals("5", rows.get(0)[5], "lag after the reset\n" + r.describe());
        assertEquals("5", rows.get(1)[5], "lag after the reset\n" + r.describe());

        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--delete", "--group", group).ok();
        assertTrue(r.stdout().contains("successful"), r.describe());
        r = Cli.run(Cli.CONSUMER_GROUPS, "--bootstrap-server", b(), "--list").ok();
        assertFalse(r.lines().contains(group), r.describe());
    }

    @Test
    void kafkaConfigs() throws Exception {
        String topic = createTopic(unique("cli-configs"), 1);
        Cli.Result r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "topics", "--entity-name", topic,
                "--alter", "--add-config", "retention.ms=12345,segment.ms=3600000").ok();
        assertTrue(r.stdout().contains("Completed updating config for topic " + topic), r.describe());

        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "topics", "--entity-name", topic, "--describe").ok();
        assertTrue(r.stdout().contains("retention.ms=12345"), r.describe());
        assertTrue(r.stdout().contains("segment.ms=3600000"), r.describe());
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        assertEquals("12345", get(admin.describeConfigs(List.of(res)).all()).get(res).get("retention.ms").value());

        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "topics", "--entity-name", topic,
                "--alter", "--delete-config", "retention.ms").ok();
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "topics", "--entity-name", topic, "--describe").ok();
        assertFalse(r.stdout().contains("retention.ms=12345"), r.describe());
        assertTrue(r.stdout().contains("segment.ms=3600000"), r.describe());
        assertEquals("604800000", get(admin.describeConfigs(List.of(res)).all()).get(res).get("retention.ms").value());

        // A bad value is refused by the broker: non-zero exit, nothing changed.
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "topics", "--entity-name", topic,
                "--alter", "--add-config", "retention.ms=soon");
        assertNotEquals(0, r.exitCode(), r.describe());
        assertEquals("604800000", get(admin.describeConfigs(List.of(res)).all()).get(res).get("retention.ms").value());

        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b(), "--entity-type", "brokers", "--entity-name", "0", "--describe", "--all").ok();
        assertTrue(r.stdout().contains("All configs for broker 0 are:"), r.describe());
    }

    @Test
    void kafkaGetOffsets() throws Exception {
        String topic = createTopic(unique("cli-offsets"), 2);
        long t0 = System.currentTimeMillis() - 600_000;
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (int i = 0; i < 7; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, bytes("a" + i)));
            }
            for (int i = 0; i < 3; i++) {
                p.send(new ProducerRecord<>(topic, 1, t0 + i * 1000L, null, bytes("b" + i)));
            }
            p.flush();
        }
        Cli.Result r = Cli.run(Cli.GET_OFFSETS, "--bootstrap-server", b(), "--topic", topic).ok();
        assertEquals(List.of(topic + ":0:7", topic + ":1:3"), r.lines().stream().sorted().toList(), r.describe());
        r = Cli.run(Cli.GET_OFFSETS, "--bootstrap-server", b(), "--topic", topic, "--time", "-2").ok();
        assertEquals(List.of(topic + ":0:0", topic + ":1:0"), r.lines().stream().sorted().toList(), r.describe());
        r = Cli.run(Cli.GET_OFFSETS, "--bootstrap-server", b(), "--topic-partitions", topic + ":1", "--time", String.valueOf(t0 + 1500)).ok();
        assertEquals(List.of(topic + ":1:2"), r.lines(), r.describe());
        get(admin.deleteRecords(Map.of(new TopicPartition(topic, 0), RecordsToDelete.beforeOffset(4))).all());
        r = Cli.run(Cli.GET_OFFSETS, "--bootstrap-server", b(), "--topic-partitions", topic + ":0", "--time", "earliest").ok();
        assertEquals(List.of(topic + ":0:4"), r.lines(), r.describe());
    }

    @Test
    void kafkaDeleteRecordsAndKafkaLogDirs() throws Exception {
        String topic = createTopic(unique("cli-delrec"), 2);
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (int i = 0; i < 10; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, null, bytes("d" + i)));
            }
            p.flush();
        }
        // kafka-delete-records.sh
        java.nio.file.Path json = Files.createTempFile("delete-records", ".json");
        try {
            Files.writeString(json, "{\"version\":1,\"partitions\":[{\"topic\":\"" + topic + "\",\"partition\":1,\"offset\":3}]}");
            Cli.Result r = Cli.run(Cli.DELETE_RECORDS, "--bootstrap-server", b(), "--offset-json-file", json.toString()).ok();
            assertTrue(Pattern.compile("partition: " + Pattern.quote(topic) + "-1\\s+low_watermark: 3").matcher(r.stdout()).find(), r.describe());
        } finally {
            Files.deleteIfExists(json);
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            Map<TopicPartition, Long> begin = c.beginningOffsets(partitions(topic, 2), Duration.ofSeconds(30));
            assertEquals(Map.of(new TopicPartition(topic, 0), 0L, new TopicPartition(topic, 1), 3L), begin);
        }

        // kafka-log-dirs.sh: JSON with the broker's one log dir and the topic's partitions.
        Cli.Result r = Cli.run(Cli.LOG_DIRS, "--bootstrap-server", b(), "--describe", "--topic-list", topic).ok();
        String jsonLine = r.lines().stream().filter(l -> l.startsWith("{")).findFirst().orElseThrow(() -> new AssertionError(r.describe()));
        JsonNode brokers = JSON.readTree(jsonLine).get("brokers");
        assertEquals(1, brokers.size(), r.describe());
        assertEquals(0, brokers.get(0).get("broker").asInt());
        JsonNode dirs = brokers.get(0).get("logDirs");
        assertEquals(1, dirs.size(), r.describe());
        assertTrue(dirs.get(0).get("error").isNull(), r.describe());
        Map<String, Long> sizes = new HashMap<>();
        for (JsonNode part : dirs.get(0).get("partitions")) {
            sizes.put(part.get("partition").asText(), part.get("size").asLong());
        }
        assertEquals(Set.of(topic + "-0", topic + "-1"), sizes.keySet(), r.describe());
        assertTrue(sizes.get(topic + "-0") > 0, r.describe());
    }

    @Test
    void kafkaBrokerApiVersions() throws Exception {
        // What Shoal says it serves: crates/kafka/src/versions.rs, `(ApiKey::Name, min, max),`.
        String rust = Files.readString(ShoalBroker.REPO_ROOT.resolve("crates/kafka/src/versions.rs"));
        Pattern entry = Pattern.compile("\\(ApiKey::(\\w+),\\s*(\\d+),\\s*(\\d+)\\)");
        Map<String, int[]> served = new HashMap<>();
        Matcher m = entry.matcher(rust);
        while (m.find()) {
            served.put(m.group(1), new int[] {Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))});
        }
        assertTrue(served.size() >= 20, "parsed versions.rs: " + served.keySet());

        Cli.Result r = Cli.run(Cli.BROKER_API_VERSIONS, "--bootstrap-server", b()).ok();
        assertTrue(r.stdout().startsWith(b() + " (id: 0 rack: null"), r.describe());
        Map<String, String> lines = new HashMap<>();
        Pattern apiLine = Pattern.compile("^\\s*(\\w+)\\((\\d+)\\): (.*?),?$");
        for (String l : r.lines()) {
            Matcher a = apiLine.matcher(l);
            if (a.find()) {
                lines.put(a.group(1), a.group(3));
            }
        }
        for (var e : served.entrySet()) {
            ApiKeys key = null;
            for (ApiKeys k : ApiKeys.values()) {
                if (k.name.equals(e.getKey())) {
                    key = k;
                }
            }
            assertNotNull(key, "the Java client knows " + e.getKey());
            int min = e.getValue()[0];
            int max = e.getValue()[1];
            int usable = Math.min(max, key.latestVersion());
            String range = min == max ? String.valueOf(min) : min + " to " + max;
            assertEquals(range + " [usable: " + usable + "]", lines.get(key.name), key.name + "\n" + r.describe());
        }
        // Everything else the client knows is reported as unsupported (no transactions, no ACLs, ...).
        for (String api : List.of("AddPartitionsToTxn", "EndTxn", "SaslHandshake", "DescribeAcls")) {
            if (!served.containsKey(api)) {
                assertEquals("UNSUPPORTED", lines.get(api), api + "\n" + r.describe());
            }
        }
        long supported = lines.values().stream().filter(v -> !v.equals("UNSUPPORTED")).count();
        assertEquals(served.size(), supported, "APIs advertised\n" + r.describe());
    }

    @Test
    void kafkaProducerPerfTest() throws Exception {
        String topic = createTopic(unique("cli-perf"), 3);
        int n = 20000;
        Cli.Result r = Cli.run(Cli.PRODUCER_PERF_TEST, "--topic", topic, "--num-records", String.valueOf(n),
                "--record-size", "100", "--throughput", "-1",
                "--producer-props", "bootstrap.servers=" + b(), "acks=all", "linger.ms=5").ok();
        Pattern summary = Pattern.compile("^(\\d+) records sent, ([0-9.]+) records/sec .* ([0-9.]+) ms avg latency");
        String last = r.lines().get(r.lines().size() - 1);
        Matcher m = summary.matcher(last);
        assertTrue(m.find(), r.describe());
        assertEquals(n, Integer.parseInt(m.group(1)), r.describe());
        assertTrue(Double.parseDouble(m.group(2)) > 0, r.describe());
        long total = endOffsets(partitions(topic, 3)).values().stream().mapToLong(Long::longValue).sum();
        assertEquals(n, total, "records in the topic after the perf test");
    }

    private static List<JsonNode> jsonLines(Cli.Result r) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String l : r.lines()) {
            if (l.startsWith("{")) {
                out.add(JSON.readTree(l));
            }
        }
        return out;
    }

    @Test
    void kafkaVerifiableProducerAndConsumer() throws Exception {
        int parts = 3;
        String topic = createTopic(unique("cli-verifiable"), parts);
        int n = 3000;
        Cli.Result pr = Cli.run(Cli.VERIFIABLE_PRODUCER, "--bootstrap-server", b(), "--topic", topic,
                "--max-messages", String.valueOf(n), "--acks", "-1", "--repeating-keys", "60").ok();
        List<JsonNode> events = jsonLines(pr);
        Map<String, String> acked = new HashMap<>(); // "partition:offset" -> value
        Map<Integer, Long> lastOffset = new HashMap<>();
        JsonNode toolData = null;
        for (JsonNode e : events) {
            String name = e.get("name").asText();
            switch (name) {
                case "producer_send_success" -> {
                    int p = e.get("partition").asInt();
                    long off = e.get("offset").asLong();
                    assertNull(acked.put(p + ":" + off, e.get("value").asText()), "offset acked twice: " + e);
                    lastOffset.merge(p, off, Math::max);
                }
                case "producer_send_error" -> throw new AssertionError("send error: " + e + "\n" + pr.describe());
                case "tool_data" -> toolData = e;
                default -> {
                }
            }
        }
        assertNotNull(toolData, pr.describe());
        assertEquals(n, toolData.get("sent").asInt());
        assertEquals(n, toolData.get("acked").asInt());
        assertEquals(n, acked.size());
        assertTrue(lastOffset.size() > 1, "keys spread over the partitions: " + lastOffset);
        // Acked offsets are dense per partition.
        Map<Integer, Long> perPartition = acked.keySet().stream().collect(
                Collectors.groupingBy(k -> Integer.parseInt(k.split(":")[0]), Collectors.counting()));
        for (var e : perPartition.entrySet()) {
            assertEquals(e.getValue() - 1, lastOffset.get(e.getKey()), "offsets of partition " + e.getKey());
        }

        String group = unique("verifiable");
        Cli.Result cr = Cli.run(Duration.ofSeconds(100), null, Cli.VERIFIABLE_CONSUMER, "--bootstrap-server", b(),
                "--topic", topic, "--group-id", group, "--group-protocol", "classic", "--reset-policy", "earliest",
                "--max-messages", String.valueOf(n), "--verbose").ok();
        Map<String, String> consumed = new HashMap<>();
        long counted = 0;
        Map<Integer, Long> committed = new HashMap<>();
        boolean assigned = false;
        for (JsonNode e : jsonLines(cr)) {
            switch (e.get("name").asText()) {
                case "partitions_assigned" -> assigned = true;
                case "record_data" -> {
                    String k = e.get("partition").asInt() + ":" + e.get("offset").asLong();
                    assertNull(consumed.put(k, e.get("value").asText()), "consumed twice: " + e);
                }
                case "records_consumed" -> {
                    for (JsonNode p : e.get("partitions")) {
                        counted += p.get("count").asLong();
                    }
                }
                case "offsets_committed" -> {
                    assertTrue(e.get("success").asBoolean(), "commit failed: " + e);
                    for (JsonNode o : e.get("offsets")) {
                        committed.merge(o.get("partition").asInt(), o.get("offset").asLong(), Math::max);
                    }
                }
                default -> {
                }
            }
        }
        assertTrue(assigned, cr.describe());
        assertEquals(n, counted, "records_consumed counts");
        // No loss: everything acknowledged was consumed, at its offset, with its value.
        assertEquals(acked, consumed);
        for (var e : lastOffset.entrySet()) {
            assertEquals(e.getValue() + 1, committed.get(e.getKey()), "committed offset of partition " + e.getKey());
        }
        Map<TopicPartition, OffsetAndMetadata> inBroker = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        for (var e : lastOffset.entrySet()) {
            assertEquals(e.getValue() + 1, inBroker.get(new TopicPartition(topic, e.getKey())).offset());
        }
    }
}
