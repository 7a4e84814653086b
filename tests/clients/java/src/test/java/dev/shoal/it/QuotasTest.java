package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.apache.kafka.clients.admin.AlterClientQuotasOptions;
import org.junit.jupiter.api.Test;

/**
 * Client quotas (KIP-13/55/124) with the Java AdminClient, kafka-configs, and real producers and
 * consumers held to their byte rates. Each test uses its own client ids and removes its quotas.
 *
 * The rate tests run {@code SHOAL_QUOTA_TEST_SECONDS} seconds each (default 12; the closing note
 * of the quota work quotes a 60 s run) and must land within 10% of the quota after the first
 * second (a new client may burst one second's worth), and over the whole run within that burst.
 */
class QuotasTest extends ShoalTestBase {

    private static final int RUN_SECONDS = Integer.parseInt(System.getenv().getOrDefault("SHOAL_QUOTA_TEST_SECONDS", "12"));
    private static final double RATE_BYTES_PER_S = 512 * 1024;

    private static ClientQuotaEntity client(String id) {
        return new ClientQuotaEntity(java.util.Collections.singletonMap(ClientQuotaEntity.CLIENT_ID, id));
    }

    private static void setQuota(ClientQuotaEntity entity, String key, Double value) throws Exception {
        get(admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                List.of(new ClientQuotaAlteration.Op(key, value))))).all());
    }

    private static Map<ClientQuotaEntity, Map<String, Double>> describe(ClientQuotaFilter filter) throws Exception {
        return get(admin.describeClientQuotas(filter).entities());
    }

    private static double metric(Map<MetricName, ? extends Metric> metrics, String group, String name) {
        for (Map.Entry<MetricName, ? extends Metric> e : metrics.entrySet()) {
            if (e.getKey().group().equals(group) && e.getKey().name().equals(name) && e.getKey().tags().size() <= 1) {
                Object v = e.getValue().metricValue();
                return v instanceof Number n ? n.doubleValue() : Double.NaN;
            }
        }
        throw new AssertionError("metric " + group + "/" + name + " not found");
    }

    @Test
    void adminSetsDescribesAndRemovesQuotas() throws Exception {
        String id = unique("quota-admin");
        ClientQuotaEntity entity = client(id);
        Map<String, String> userAndClient = new HashMap<>();
        userAndClient.put(ClientQuotaEntity.USER, null); // the default user
        userAndClient.put(ClientQuotaEntity.CLIENT_ID, id);
        ClientQuotaEntity defaultUserWithClient = new ClientQuotaEntity(userAndClient);

        get(admin.alterClientQuotas(List.of(
                new ClientQuotaAlteration(entity, List.of(
                        new ClientQuotaAlteration.Op("producer_byte_rate", 1048576.0),
                        new ClientQuotaAlteration.Op("consumer_byte_rate", 2097152.0))),
                new ClientQuotaAlteration(defaultUserWithClient, List.of(
                        new ClientQuotaAlteration.Op("request_percentage", 12.5))))).all());

        ClientQuotaFilter exact = ClientQuotaFilter.containsOnly(List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, id)));
        assertEquals(Map.of(entity, Map.of("producer_byte_rate", 1048576.0, "consumer_byte_rate", 2097152.0)), describe(exact));
        // Not strict: every entity naming this client id, the user one included.
        ClientQuotaFilter loose = ClientQuotaFilter.contains(List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, id)));
        Map<ClientQuotaEntity, Map<String, Double>> both = describe(loose);
        assertEquals(2, both.size(), both.toString());
        assertEquals(Map.of("request_percentage", 12.5), both.get(defaultUserWithClient));
        ClientQuotaFilter defaultUser = ClientQuotaFilter.contains(List.of(ClientQuotaFilterComponent.ofDefaultEntity(ClientQuotaEntity.USER)));
        assertTrue(describe(defaultUser).containsKey(defaultUserWithClient));
        assertTrue(describe(ClientQuotaFilter.all()).keySet().containsAll(List.of(entity, defaultUserWithClient)));

        // validateOnly changes nothing.
        get(admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1.0)))),
                new AlterClientQuotasOptions().validateOnly(true)).all());
        assertEquals(1048576.0, describe(exact).get(entity).get("producer_byte_rate"));

        // Bad keys, values and entities are refused, each with INVALID_REQUEST, and change nothing.
        for (ClientQuotaAlteration bad : List.of(
                new ClientQuotaAlteration(entity, List.of(new ClientQuotaAlteration.Op("no_such_quota", 1.0))),
                new ClientQuotaAlteration(entity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1.5))),
                new ClientQuotaAlteration(entity, List.of(new ClientQuotaAlteration.Op("consumer_byte_rate", -5.0))),
                new ClientQuotaAlteration(new ClientQuotaEntity(Map.of(ClientQuotaEntity.IP, "10.0.0.1")),
                        List.of(new ClientQuotaAlteration.Op("connection_creation_rate", 10.0))))) {
            Throwable failure = failureOf(admin.alterClientQuotas(List.of(bad)).all());
            assertInstanceOf(InvalidRequestException.class, failure, bad.toString());
        }
        assertEquals(Map.of(entity, Map.of("producer_byte_rate", 1048576.0, "consumer_byte_rate", 2097152.0)), describe(exact));

        // Removing every quota of an entity removes the entity.
        get(admin.alterClientQuotas(List.of(
                new ClientQuotaAlteration(entity, List.of(
                        new ClientQuotaAlteration.Op("producer_byte_rate", null),
                        new ClientQuotaAlteration.Op("consumer_byte_rate", null))),
                new ClientQuotaAlteration(defaultUserWithClient, List.of(
                        new ClientQuotaAlteration.Op("request_percentage", null))))).all());
        assertEquals(Map.of(), describe(loose));
    }

    @Test
    void quotasSurviveKillNine() throws Exception {
        String id = unique("quota-restart");
        setQuota(client(id), "producer_byte_rate", 4096.0);
        // Acknowledged means persisted: kill -9 right after the answer.
        closeAdmin();
        broker.forceKill();
        broker.start();
        bindBroker(broker);
        ClientQuotaFilter exact = ClientQuotaFilter.containsOnly(List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, id)));
        assertEquals(Map.of(client(id), Map.of("producer_byte_rate", 4096.0)), describe(exact));
        setQuota(client(id), "producer_byte_rate", null);
    }

    @Test
    void kafkaConfigsAltersAndDescribesClientQuotas() throws Exception {
        String id = unique("quota-cli");
        String b = bootstrap();
        Cli.Result r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "clients", "--entity-name", id,
                "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048").ok();
        assertTrue(r.stdout().contains("Completed updating config for client " + id), r.describe());
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b, "--describe", "--entity-type", "clients", "--entity-name", id).ok();
        assertTrue(r.stdout().contains("producer_byte_rate=1024.0"), r.describe());
        assertTrue(r.stdout().contains("consumer_byte_rate=2048.0"), r.describe());
        // A value kafka-configs accepts but the broker refuses: non-zero exit.
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "clients", "--entity-name", id,
                "--add-config", "request_percentage=-1");
        assertNotEquals(0, r.exitCode(), r.describe());
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "clients", "--entity-name", id,
                "--delete-config", "producer_byte_rate,consumer_byte_rate").ok();
        r = Cli.run(Cli.CONFIGS, "--bootstrap-server", b, "--describe", "--entity-type", "clients", "--entity-name", id).ok();
        assertTrue(!r.stdout().contains("producer_byte_rate"), r.describe());
    }

    @Test
    void aProducerIsHeldToItsByteRate() throws Exception {
        String id = unique("quota-producer");
        String topic = createTopic(unique("quota-produce"), 4);
        setQuota(client(id), "producer_byte_rate", RATE_BYTES_PER_S);
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                ProducerConfig.CLIENT_ID_CONFIG, id,
                ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.LINGER_MS_CONFIG, 5,
                ProducerConfig.BUFFER_MEMORY_CONFIG, 4 * 1024 * 1024))) {
            byte[] value = new byte[1024];
            AtomicLong acked = new AtomicLong();
            long started = System.nanoTime();
            long until = started + Duration.ofSeconds(RUN_SECONDS).toNanos();
            long oneSecondIn = started + Duration.ofSeconds(1).toNanos();
            long ackedAtOneSecond = -1;
            long oneSecondAt = 0;
            int n = 0;
            while (System.nanoTime() < until) {
                // send() blocks once the producer's buffer is full: the producer goes as fast as
                // the broker lets it.
                p.send(new ProducerRecord<>(topic, n++ % 4, null, value), (md, e) -> {
                    if (e == null) {
                        acked.addAndGet(1024);
                    }
                });
                if (ackedAtOneSecond < 0 && System.nanoTime() >= oneSecondIn) {
                    oneSecondAt = System.nanoTime();
                    ackedAtOneSecond = acked.get();
                }
            }
            long ended = System.nanoTime();
            double whole = acked.get() / ((ended - started) / 1e9);
            // After the first second: the burst a new client may take at once (one second's
            // worth) would move a 12 s figure by 8%.
            double rate = (acked.get() - ackedAtOneSecond) / ((ended - oneSecondAt) / 1e9);
            double throttleMax = metric(p.metrics(), "producer-metrics", "produce-throttle-time-max");
            System.out.printf("producer quota: %.0f B/s allowed, %.0f B/s acknowledged after the first second (%.3f), %.3f over %d s, throttle max %.0f ms%n",
                    RATE_BYTES_PER_S, rate, rate / RATE_BYTES_PER_S, whole / RATE_BYTES_PER_S, RUN_SECONDS, throttleMax);
            assertTrue(throttleMax > 0, "the producer was never told to wait");
            assertTrue(Math.abs(rate - RATE_BYTES_PER_S) / RATE_BYTES_PER_S <= 0.10,
                    String.format("%.0f B/s against a quota of %.0f B/s", rate, RATE_BYTES_PER_S));
            assertTrue(whole <= RATE_BYTES_PER_S * (RUN_SECONDS + 2.5) / RUN_SECONDS,
                    String.format("%.0f B/s over the whole run", whole));
            p.flush();
        } finally {
            setQuota(client(id), "producer_byte_rate", null);
        }
    }

    @Test
    void aConsumerIsHeldToItsByteRate() throws Exception {
        String id = unique("quota-consumer");
        String topic = createTopic(unique("quota-fetch"), 1);
        // More than the consumer may read in the run.
        long fill = (long) (RATE_BYTES_PER_S * (RUN_SECONDS + 15) * 1.5);
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
            byte[] value = new byte[1024];
            for (long sent = 0; sent < fill; sent += value.length) {
                p.send(new ProducerRecord<>(topic, 0, null, value));
            }
            p.flush();
        }
        setQuota(client(id), "consumer_byte_rate", RATE_BYTES_PER_S);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.CLIENT_ID_CONFIG, id))) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            // One chunk per Fetch response: {first poll s, last poll s, bytes consumed by its
            // end}. Bytes are the consumer's own count of the record batches it fetched.
            List<double[]> chunks = new ArrayList<>();
            long started = System.nanoTime();
            long until = started + Duration.ofSeconds(RUN_SECONDS).toNanos();
            while (System.nanoTime() < until) {
                if (c.poll(Duration.ofMillis(100)).isEmpty()) {
                    continue;
                }
                double at = (System.nanoTime() - started) / 1e9;
                double consumed = metric(c.metrics(), "consumer-fetch-manager-metrics", "bytes-consumed-total");
                double[] last = chunks.isEmpty() ? null : chunks.get(chunks.size() - 1);
                if (last != null && at - last[1] < 0.2) {
                    last[1] = at;
                    last[2] = consumed;
                } else {
                    chunks.add(new double[] {at, at, consumed});
                }
            }
            double seconds = (System.nanoTime() - started) / 1e9;
            double consumed = metric(c.metrics(), "consumer-fetch-manager-metrics", "bytes-consumed-total");
            double whole = consumed / seconds;
            // Between Fetch responses after the first second: a response carries one second's
            // worth, so the burst a new client may take and where the run starts and ends in
            // the response cycle would each move a 12 s figure by 8%.
            double from = chunks.isEmpty() ? 0 : chunks.get(0)[0] + 1.0;
            List<double[]> steady = chunks.stream().filter(ch -> ch[0] >= from).toList();
            assertTrue(steady.size() >= 3, "too few fetch responses to measure: " + steady.size());
            double[] first = steady.get(0);
            double[] end = steady.get(steady.size() - 1);
            double rate = (end[2] - first[2]) / (end[0] - first[0]);
            double throttleMax = metric(c.metrics(), "consumer-fetch-manager-metrics", "fetch-throttle-time-max");
            System.out.printf("consumer quota: %.0f B/s allowed, %.0f B/s consumed after the first second (%.3f), %.3f over %.1f s, throttle max %.0f ms%n",
                    RATE_BYTES_PER_S, rate, rate / RATE_BYTES_PER_S, whole / RATE_BYTES_PER_S, seconds, throttleMax);
            assertTrue(throttleMax > 0, "the consumer was never told to wait");
            assertTrue(c.position(tp) * 1024 < fill, "the consumer read everything: the test proves nothing");
            assertTrue(Math.abs(rate - RATE_BYTES_PER_S) / RATE_BYTES_PER_S <= 0.10,
                    String.format("%.0f B/s against a quota of %.0f B/s", rate, RATE_BYTES_PER_S));
            assertTrue(whole <= RATE_BYTES_PER_S * (RUN_SECONDS + 2.5) / RUN_SECONDS,
                    String.format("%.0f B/s over the whole run", whole));
        } finally {
            setQuota(client(id), "consumer_byte_rate", null);
        }
    }

    /**
     * request_percentage: a producer of tiny unbatched records spends more than 1% of a core on
     * its requests, so it is told to wait (Produce v9 throttle_time_ms, in the producer's
     * metrics) and the broker counts the throttled responses; a client without the quota is not.
     */
    @Test
    void aBusyClientIsThrottledByItsRequestPercentage() throws Exception {
        String busy = unique("quota-busy");
        String idle = unique("quota-free");
        String topic = createTopic(unique("quota-requests"), 1);
        setQuota(client(busy), "request_percentage", 1.0);
        try {
            for (String id : List.of(busy, idle)) {
                try (KafkaProducer<byte[], byte[]> p = producer(Map.of(
                        ProducerConfig.CLIENT_ID_CONFIG, id,
                        ProducerConfig.ACKS_CONFIG, "1",
                        ProducerConfig.LINGER_MS_CONFIG, 0,
                        ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1))) {
                    long until = System.nanoTime() + Duration.ofSeconds(4).toNanos();
                    while (System.nanoTime() < until) {
                        p.send(new ProducerRecord<>(topic, 0, null, new byte[1])).get();
                    }
                    double throttleMax = metric(p.metrics(), "producer-metrics", "produce-throttle-time-max");
                    System.out.printf("request quota: client %s, throttle max %.0f ms%n", id, throttleMax);
                    if (id.equals(busy)) {
                        assertTrue(throttleMax > 0, "a client over 1% of a core was never throttled");
                        assertTrue(throttleMax <= 1000, "the request quota's throttle is capped at one sample: " + throttleMax);
                    } else {
                        assertTrue(!(throttleMax > 0), "a client without a quota was throttled: " + throttleMax);
                    }
                }
            }
        } finally {
            setQuota(client(busy), "request_percentage", null);
        }
    }
}
