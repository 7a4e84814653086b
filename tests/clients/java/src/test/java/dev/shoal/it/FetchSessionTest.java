package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/**
 * KIP-227 incremental fetch sessions with the Java consumer, which opens a session on its first
 * full fetch and then sends incremental fetches that list only what changed. The evidence is the
 * broker's own counters (full vs incremental fetches) and the consumer's bytes per fetch.
 */
class FetchSessionTest extends ShoalTestBase {

    private static final Pattern FETCH_KIND =
            Pattern.compile("^shoal_fetch_requests_total\\{core=\"\\d+\",kind=\"([a-z_]+)\"\\} (\\d+)$", Pattern.MULTILINE);

    /** The broker's fetch counters summed over cores, by kind. Counters are copied once a second. */
    private static Map<String, Long> fetchCounts() throws Exception {
        Map<String, Long> sum = new java.util.HashMap<>();
        Matcher m = FETCH_KIND.matcher(broker.httpGet("/metrics"));
        while (m.find()) {
            sum.merge(m.group(1), Long.parseLong(m.group(2)), Long::sum);
        }
        return sum;
    }

    private static double consumerMetric(KafkaConsumer<?, ?> c, String group, String name) {
        for (Map.Entry<MetricName, ? extends Metric> e : c.metrics().entrySet()) {
            if (e.getKey().group().equals(group) && e.getKey().name().equals(name)) {
                return ((Number) e.getValue().metricValue()).doubleValue();
            }
        }
        throw new AssertionError("consumer metric " + group + "/" + name + " not found");
    }

    @Test
    void idleFetchesAreIncrementalAndNewRecordsStillArrive() throws Exception {
        int partitions = 200;
        String topic = createTopic(unique("sessions"), partitions);
        List<TopicPartition> tps = partitions(topic, partitions);
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (TopicPartition tp : tps) {
                p.send(new ProducerRecord<>(topic, tp.partition(), null, bytes("first-" + tp.partition())));
            }
            p.flush();
        }
        Map<String, Long> before = fetchCounts();
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 50))) {
            c.assign(tps);
            c.seekToBeginning(tps);
            assertEquals(partitions, pollExactly(c, partitions, Duration.ofSeconds(30)).size());

            // Idle: every fetch now finds nothing new. With a session the requests name no
            // partitions and the answers carry none.
            double fetchesAtIdle = consumerMetric(c, "consumer-fetch-manager-metrics", "fetch-total");
            double bytesAtIdle = consumerMetric(c, "consumer-metrics", "incoming-byte-total");
            long idleUntil = System.nanoTime() + Duration.ofSeconds(3).toNanos();
            while (System.nanoTime() < idleUntil) {
                assertTrue(c.poll(Duration.ofMillis(200)).isEmpty(), "records while nothing was produced");
            }
            double idleFetches = consumerMetric(c, "consumer-fetch-manager-metrics", "fetch-total") - fetchesAtIdle;
            double idleBytes = consumerMetric(c, "consumer-metrics", "incoming-byte-total") - bytesAtIdle;
            assertTrue(idleFetches >= 10, "only " + idleFetches + " idle fetches in 3 s");
            double bytesPerIdleFetch = idleBytes / idleFetches;
            System.out.printf("fetch sessions: %d partitions, %.0f idle fetches, %.1f bytes per idle fetch%n",
                    partitions, idleFetches, bytesPerIdleFetch);
            // A sessionless answer names all 200 partitions (well over 40 bytes each); an empty
            // incremental answer is a header and an empty topic array.
            assertTrue(bytesPerIdleFetch < 200, bytesPerIdleFetch + " bytes per idle fetch: not incremental");

            // New records on a few partitions still arrive, in order, through the session.
            List<Integer> touched = List.of(3, 77, 199);
            try (KafkaProducer<byte[], byte[]> p = producer()) {
                for (int round = 0; round < 3; round++) {
                    for (int part : touched) {
                        p.send(new ProducerRecord<>(topic, part, null, bytes("later-" + part + "-" + round)));
                    }
                    p.flush();
                }
            }
            List<ConsumerRecord<byte[], byte[]>> later = pollExactly(c, 9, Duration.ofSeconds(30));
            assertEquals(9, later.size());
            for (int part : touched) {
                List<String> values = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> r : later) {
                    if (r.partition() == part) {
                        values.add(str(r.value()));
                    }
                }
                assertEquals(List.of("later-" + part + "-0", "later-" + part + "-1", "later-" + part + "-2"), values);
            }
        }
        // The broker saw the session: at least one full fetch that opened it and many incremental ones.
        waitUntil(Duration.ofSeconds(10), "incremental fetches counted", () -> {
            try {
                return fetchCounts().getOrDefault("incremental", 0L) - before.getOrDefault("incremental", 0L) >= 10;
            } catch (Exception e) {
                return false;
            }
        });
        Map<String, Long> after = fetchCounts();
        assertTrue(after.getOrDefault("full", 0L) > before.getOrDefault("full", 0L), "no full fetch counted: " + after);
    }
}
