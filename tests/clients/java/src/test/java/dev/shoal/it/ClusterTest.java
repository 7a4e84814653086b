package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.junit.jupiter.api.Test;

/**
 * The Java client on a 4-node Shoal cluster on loopback (one rpc port each): three seeds (the
 * controller voters) and a fourth broker that follows the controller as a learner. The
 * AdminClient bootstrapped with one node sees all four brokers and creates a topic whose
 * partitions are spread over them; an idempotent producer bootstrapped with the fourth (its
 * producer id from the block the controller gave that node) and a consumer group bootstrapped
 * with a voter write, read and commit every partition; with a node killed (-9), another
 * creates topics on the live nodes.
 */
class ClusterTest {
    private static final List<ShoalBroker> NODES = new ArrayList<>();

    @BeforeAll
    static void startCluster() throws Exception {
        List<Integer> rpcPorts = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            rpcPorts.add(ShoalBroker.freePort());
        }
        StringBuilder seeds = new StringBuilder();
        for (int i = 0; i < 3; i++) {
            seeds.append(i == 0 ? "" : ",").append(i).append("@127.0.0.1:").append(rpcPorts.get(i));
        }
        for (int i = 0; i < 4; i++) {
            ShoalBroker node = new ShoalBroker();
            node.env.put("SHOAL_NODE_ID", String.valueOf(i));
            node.env.put("SHOAL_SEEDS", seeds.toString());
            node.env.put("SHOAL_RPC_ADDR", "127.0.0.1:" + rpcPorts.get(i));
            NODES.add(node);
        }
        // One after the other, from this thread (setpriv's parent-death signal fires when the
        // starting thread ends); each is ready once it serves Kafka, without the others.
        for (ShoalBroker node : NODES) {
            node.start();
        }
        waitFor("four unfenced brokers", Duration.ofSeconds(30), () -> unfenced(NODES.get(0)) == 4);
    }

    @AfterAll
    static void stopCluster() throws Exception {
        for (ShoalBroker node : NODES) {
            node.stop();
            node.deleteWorkDir();
        }
    }

    /** Unfenced brokers in the node's /v1/cluster (crude JSON reading: a test helper). */
    static int unfenced(ShoalBroker node) {
        try {
            String json = node.httpGet("/v1/cluster");
            Matcher m = Pattern.compile("\"fenced\":false").matcher(json);
            int n = 0;
            while (m.find()) {
                n++;
            }
            return n;
        } catch (Exception e) {
            return -1;
        }
    }

    static void waitFor(String what, Duration timeout, BooleanSupplier done) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            if (done.getAsBoolean()) {
                return;
            }
            Thread.sleep(200);
        }
        String seen;
        try {
            seen = NODES.get(0).httpGet("/v1/cluster");
        } catch (Exception e) {
            seen = e.toString();
        }
        throw new AssertionError("timed out waiting for " + what + "; node 0's /v1/cluster: " + seen
                + "\n--- node 0 log tail ---\n" + NODES.get(0).tail(30));
    }

    static Admin admin(ShoalBroker via) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, via.bootstrap());
        return Admin.create(p);
    }

    @Test
    void javaClientsUseEveryNode() throws Exception {
        String topic = "java-cluster";
        Map<Integer, Integer> leaders = new HashMap<>();
        try (Admin admin = admin(NODES.get(0))) {
            Set<Integer> ids = new HashSet<>();
            for (Node n : admin.describeCluster().nodes().get()) {
                ids.add(n.id());
            }
            assertEquals(Set.of(0, 1, 2, 3), ids);
            admin.createTopics(List.of(new NewTopic(topic, 8, (short) 1))).all().get();
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            for (TopicPartitionInfo p : d.partitions()) {
                leaders.put(p.partition(), p.leader().id());
            }
        }
        // Spread over the nodes, though not always over all four: new leaders go to the nodes
        // leading the fewest partitions, a count that includes the offsets topic's 16, which
        // sit on the first three nodes alone when it was created before the fourth registered
        // (no leader balancing yet). The clients below still have to find several leaders.
        assertTrue(Set.of(0, 1, 2, 3).containsAll(leaders.values()) && new HashSet<>(leaders.values()).size() >= 3,
                "partitions spread: " + leaders);

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, NODES.get(3).bootstrap());
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        Map<String, Long> acked = new HashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            for (int i = 0; i < 400; i++) {
                sends.add(producer.send(new ProducerRecord<>(topic, i % 8, null, "v" + i)));
            }
            for (int i = 0; i < 400; i++) {
                RecordMetadata md = sends.get(i).get();
                acked.put("v" + i, ((long) md.partition() << 32) | md.offset());
            }
        }
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, NODES.get(2).bootstrap());
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-cluster-group");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Map<String, Long> read = new HashMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (read.size() < 400 && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    read.put(r.value(), ((long) r.partition() << 32) | r.offset());
                }
            }
            consumer.commitSync();
            Set<TopicPartition> all = new HashSet<>();
            for (int p = 0; p < 8; p++) {
                all.add(new TopicPartition(topic, p));
            }
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(all);
            for (TopicPartition tp : all) {
                assertEquals(50, committed.get(tp).offset(), "committed offset of " + tp);
            }
        }
        assertEquals(acked, read);
    }

    @Test
    void metadataChangesGoOnWithoutANode() throws Exception {
        ShoalBroker dead = NODES.get(2);
        dead.forceKill();
        waitFor("the dead node fenced", Duration.ofSeconds(30), () -> unfenced(NODES.get(0)) == 3);
        try (Admin admin = admin(NODES.get(1))) {
            admin.createTopics(List.of(new NewTopic("without-node-2", 4, (short) 1))).all().get();
            TopicDescription d = admin.describeTopics(List.of("without-node-2")).allTopicNames().get()
                    .get("without-node-2");
            for (TopicPartitionInfo p : d.partitions()) {
                assertFalse(p.leader() == null || p.leader().id() == 2, "placed on a live node: " + p);
            }
        }
        dead.start();
        waitFor("the node back and unfenced", Duration.ofSeconds(30), () -> unfenced(NODES.get(0)) == 4);
        try (Admin admin = admin(dead)) {
            assertTrue(admin.listTopics().names().get().contains("without-node-2"));
        }
    }

    /**
     * Client quotas are cluster metadata: set through the learner node, every node answers them
     * (each enforces them for the clients it serves, as Kafka's brokers do). The AdminClient
     * picks the node it asks, so each check waits until the answer is there.
     */
    @Test
    void clientQuotasReachEveryNode() throws Exception {
        ClientQuotaEntity entity = new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, "cluster-quota-client"));
        try (Admin admin = admin(NODES.get(3))) {
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 65536.0))))).all().get();
        }
        ClientQuotaFilter exact = ClientQuotaFilter.containsOnly(
                List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, "cluster-quota-client")));
        for (ShoalBroker node : List.of(NODES.get(0), NODES.get(1), NODES.get(3))) {
            waitFor("the quota on node " + NODES.indexOf(node), Duration.ofSeconds(15), () -> {
                try (Admin admin = admin(node)) {
                    return Map.of(entity, Map.of("producer_byte_rate", 65536.0))
                            .equals(admin.describeClientQuotas(exact).entities().get());
                } catch (Exception e) {
                    return false;
                }
            });
        }
        // The AdminClient sends the change to the controller and the describe to any node, whose
        // metadata may lag by a heartbeat (as a KRaft broker's does): wait for it.
        try (Admin admin = admin(NODES.get(1))) {
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null))))).all().get();
            waitFor("the quota removed", Duration.ofSeconds(15), () -> {
                try {
                    return admin.describeClientQuotas(exact).entities().get().isEmpty();
                } catch (Exception e) {
                    return false;
                }
            });
        }
    }
}
