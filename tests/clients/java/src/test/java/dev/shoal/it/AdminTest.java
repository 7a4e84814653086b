package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;

/** AdminClient against Shoal. */
class AdminTest extends ShoalTestBase {

    private static void produce(String topic, int partition, int count) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (int i = 0; i < count; i++) {
                p.send(new ProducerRecord<>(topic, partition, null, bytes("r" + i)));
            }
            p.flush();
        }
    }

    private static Config topicConfig(String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return get(admin.describeConfigs(List.of(r)).all()).get(r);
    }

    @Test
    void createListDescribeDeleteTopics() throws Exception {
        String topic = unique("admin-topic");
        get(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "86400000")))).all());

        // validateOnly creates nothing
        String dry = unique("dry-run");
        get(admin.createTopics(List.of(new NewTopic(dry, 2, (short) 1)), new CreateTopicsOptions().validateOnly(true)).all());

        waitUntil(Duration.ofSeconds(30), "topic listed", () -> {
            try {
                return topicNames().contains(topic);
            } catch (Exception e) {
                return false;
            }
        });
        assertFalse(topicNames().contains(dry), "validateOnly created the topic");

        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(topic, d.name());
        assertFalse(d.isInternal());
        assertNotNull(d.topicId());
        assertEquals(3, d.partitions().size());
        for (int i = 0; i < 3; i++) {
            TopicPartitionInfo p = d.partitions().get(i);
            assertEquals(i, p.partition());
            assertEquals(0, p.leader().id());
            assertEquals(List.of(0), p.replicas().stream().map(Node::id).toList());
            assertEquals(List.of(0), p.isr().stream().map(Node::id).toList());
            assertEquals(broker.port, p.leader().port());
        }
        assertEquals("86400000", topicConfig(topic).get("retention.ms").value());
        // The same topic described by its id (Metadata v10+ topic ids).
        TopicDescription byId = get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(d.topicId()))).allTopicIds()).get(d.topicId());
        assertEquals(topic, byId.name());
        assertEquals(3, byId.partitions().size());

        // Errors, as Kafka gives them.
        assertInstanceOf(TopicExistsException.class,
                failureOf(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()));
        assertInstanceOf(InvalidReplicationFactorException.class,
                failureOf(admin.createTopics(List.of(new NewTopic(unique("rf3"), 1, (short) 3))).all()));

        get(admin.deleteTopics(List.of(topic)).all());
        waitUntil(Duration.ofSeconds(30), "topic gone from the list", () -> {
            try {
                return !topicNames().contains(topic);
            } catch (Exception e) {
                return false;
            }
        });
        assertInstanceOf(UnknownTopicOrPartitionException.class,
                failureOf(admin.describeTopics(List.of(topic)).allTopicNames()));
        assertInstanceOf(UnknownTopicOrPartitionException.class,
                failureOf(admin.deleteTopics(List.of(topic)).all()));
    }

    @Test
    void describeAndIncrementallyAlterConfigs() throws Exception {
        String topic = createTopic(unique("configs"), 1);
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        ConfigEntry retention = topicConfig(topic).get("retention.ms");
        assertEquals("604800000", retention.value(), "Kafka's default retention.ms");
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, retention.source());
        assertTrue(retention.isDefault());

        get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET)))).all());
        Config after = topicConfig(topic);
        assertEquals("3600000", after.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, after.get("retention.ms").source());
        assertEquals("2000000", after.get("max.message.bytes").value());

        // DELETE goes back to the default; the other change stays.
        get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
        after = topicConfig(topic);
        assertEquals("604800000", after.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, after.get("retention.ms").source());
        assertEquals("2000000", after.get("max.message.bytes").value());

        // Invalid values and unknown names are refused, and change nothing.
        assertInstanceOf(InvalidConfigurationException.class, failureOf(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET)))).all()));
        assertInstanceOf(InvalidConfigurationException.class, failureOf(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all()));
        // An unknown cleanup policy is refused; compact (log compaction) is taken, APPENDed to
        // the default list, and SUBTRACTed again.
        assertInstanceOf(InvalidConfigurationException.class, failureOf(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "shrink"), AlterConfigOp.OpType.SET)))).all()));
        get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all());
        assertEquals("delete,compact", topicConfig(topic).get("cleanup.policy").value());
        get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT)))).all());
        assertEquals("604800000", topicConfig(topic).get("retention.ms").value());
        assertEquals("delete", topicConfig(topic).get("cleanup.policy").value());

        // validateOnly changes nothing.
        get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))),
                new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(true)).all());
        assertEquals("604800000", topicConfig(topic).get("retention.ms").value());

        // The broker's own configs can be described.
        ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, "0");
        Config brokerConfig = get(admin.describeConfigs(List.of(brokerRes)).all()).get(brokerRes);
        assertFalse(brokerConfig.entries().isEmpty(), "broker 0 has configs");
    }

    @Test
    void createPartitions() throws Exception {
        String topic = createTopic(unique("grow"), 2);
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
        waitUntil(Duration.ofSeconds(30), "5 partitions", () -> {
            try {
                return get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size() == 5;
            } catch (Exception e) {
                return false;
            }
        });
        produce(topic, 4, 3);
        assertEquals(3L, endOffsets(List.of(new TopicPartition(topic, 4))).get(new TopicPartition(topic, 4)));
        assertInstanceOf(InvalidPartitionsException.class,
                failureOf(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all()));
        assertInstanceOf(InvalidPartitionsException.class,
                failureOf(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all()));
        assertInstanceOf(UnknownTopicOrPartitionException.class,
                failureOf(admin.createPartitions(Map.of(unique("missing"), NewPartitions.increaseTo(5))).all()));
    }

    @SuppressWarnings("deprecation")
    private static Set<String> consumerGroupIds() throws Exception {
        Collection<ConsumerGroupListing> all = get(admin.listConsumerGroups().all());
        return all.stream().map(ConsumerGroupListing::groupId).collect(Collectors.toSet());
    }

    @Test
    void consumerGroupAdministration() throws Exception {
        String topic = createTopic(unique("groups"), 2);
        produce(topic, 0, 10);
        produce(topic, 1, 10);
        String group = unique("admin-group");
        List<TopicPartition> tps = partitions(topic, 2);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic", ConsumerConfig.CLIENT_ID_CONFIG, "admin-test-client"))) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 20, Duration.ofSeconds(60));
            assertEquals(20, rs.size());
            c.commitSync(Map.of(tps.get(0), new OffsetAndMetadata(6), tps.get(1), new OffsetAndMetadata(9)));

            // Described while the member is active: stable, one member owning both partitions.
            ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
            assertEquals(GroupState.STABLE, d.groupState());
            assertEquals(1, d.members().size());
            MemberDescription m = d.members().iterator().next();
            assertEquals("admin-test-client", m.clientId());
            assertEquals(Set.copyOf(tps), m.assignment().topicPartitions());
            assertEquals(0, d.coordinator().id());
            assertFalse(d.isSimpleConsumerGroup());
            assertTrue(consumerGroupIds().contains(group));

            // A group with a member cannot be deleted.
            assertInstanceOf(GroupNotEmptyException.class, failureOf(admin.deleteConsumerGroups(List.of(group)).all()));
        }
        ConsumerGroupDescription empty = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
        assertEquals(GroupState.EMPTY, empty.groupState());
        assertTrue(empty.members().isEmpty());

        Map<TopicPartition, OffsetAndMetadata> offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(Map.of(tps.get(0), 6L, tps.get(1), 9L),
                offsets.entrySet().stream().collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset())));

        get(admin.alterConsumerGroupOffsets(group, Map.of(tps.get(0), new OffsetAndMetadata(2, "reset"))).all());
        offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(2L, offsets.get(tps.get(0)).offset());
        assertEquals("reset", offsets.get(tps.get(0)).metadata());
        assertEquals(9L, offsets.get(tps.get(1)).offset());
        // A consumer of the group resumes there.
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic", ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none"))) {
            c.assign(tps);
            assertEquals(2L, c.position(tps.get(0), Duration.ofSeconds(30)));
            assertEquals(9L, c.position(tps.get(1), Duration.ofSeconds(30)));
        }

        // The 4.x listing (ListGroups v5 with a type filter): a classic consumer group, Empty now.
        var listed = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
                .filter(g -> g.groupId().equals(group)).toList();
        assertEquals(1, listed.size(), "listGroups(forConsumerGroups) has " + group);
        assertEquals(Optional.of(GroupType.CLASSIC), listed.get(0).type());
        assertEquals("consumer", listed.get(0).protocol());
        assertEquals(Optional.of(GroupState.EMPTY), listed.get(0).groupState());
        var onlyStable = get(admin.listGroups(ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.STABLE))).all());
        assertTrue(onlyStable.stream().noneMatch(g -> g.groupId().equals(group)), "state filter ignored: " + onlyStable);

        // OffsetDelete: one partition's committed offset goes, the other stays.
        get(admin.deleteConsumerGroupOffsets(group, Set.of(tps.get(1))).all());
        offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(Set.of(tps.get(0)), offsets.keySet(), "offsets after deleting partition 1's");

        get(admin.deleteConsumerGroups(List.of(group)).all());
        assertFalse(consumerGroupIds().contains(group), "deleted group still listed");
        assertTrue(get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).isEmpty(),
                "a deleted group has no offsets");
        Throwable gone = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
        assertInstanceOf(GroupIdNotFoundException.class, gone);
    }

    @Test
    void deleteRecordsMovesTheLogStart() throws Exception {
        String topic = createTopic(unique("delrec"), 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        produce(topic, 0, 20);
        DeletedRecords dr = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(7))).lowWatermarks().get(tp));
        assertEquals(7, dr.lowWatermark());
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            assertEquals(7L, c.beginningOffsets(List.of(tp), Duration.ofSeconds(30)).get(tp));
            assertEquals(20L, c.endOffsets(List.of(tp), Duration.ofSeconds(30)).get(tp));
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 13, Duration.ofSeconds(30));
            assertEquals(13, rs.size());
            assertEquals(7, rs.get(0).offset());
            assertEquals("r7", str(rs.get(0).value()));
        }
        var earliest = get(admin.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.earliest())).all()).get(tp);
        assertEquals(7, earliest.offset());
        // Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
        assertInstanceOf(OffsetOutOfRangeException.class,
                failureOf(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(21))).all()));
        // -1 means "up to the high watermark".
        dr = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp));
        assertEquals(20, dr.lowWatermark());
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            assertEquals(20L, c.beginningOffsets(List.of(tp), Duration.ofSeconds(30)).get(tp));
        }
    }

    @Test
    void listOffsetsBySpec() throws Exception {
        String topic = createTopic(unique("listoffsets"), 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        long t0 = System.currentTimeMillis() - 100_000;
        long[] ts = {t0 + 5000, t0 + 9000, t0 + 1000, t0 + 7000}; // max at offset 1, not monotonic
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            for (int i = 0; i < ts.length; i++) {
                p.send(new ProducerRecord<>(topic, 0, ts[i], null, bytes("o" + i))).get();
            }
        }
        java.util.function.Function<OffsetSpec, ListOffsetsResult.ListOffsetsResultInfo> list = spec -> {
            try {
                return get(admin.listOffsets(Map.of(tp, spec)).all()).get(tp);
            } catch (Exception e) {
                throw new AssertionError(e);
            }
        };
        assertEquals(0, list.apply(OffsetSpec.earliest()).offset());
        assertEquals(4, list.apply(OffsetSpec.latest()).offset());
        ListOffsetsResult.ListOffsetsResultInfo max = list.apply(OffsetSpec.maxTimestamp());
        assertEquals(1, max.offset());
        assertEquals(t0 + 9000, max.timestamp());
        ListOffsetsResult.ListOffsetsResultInfo at = list.apply(OffsetSpec.forTimestamp(t0 + 6000));
        assertEquals(1, at.offset(), "first offset whose timestamp is >= t0+6000");
        assertEquals(t0 + 9000, at.timestamp());
        assertEquals(-1, list.apply(OffsetSpec.forTimestamp(t0 + 10_000)).offset(), "after every timestamp");
    }

    @Test
    void describeCluster() throws Exception {
        DescribeClusterResult r = admin.describeCluster();
        Collection<Node> nodes = get(r.nodes());
        assertEquals(1, nodes.size());
        Node n = nodes.iterator().next();
        assertEquals(0, n.id());
        assertEquals("127.0.0.1", n.host());
        assertEquals(broker.port, n.port());
        assertEquals(0, get(r.controller()).id());
        String clusterId = get(r.clusterId());
        assertNotNull(clusterId);
        assertFalse(clusterId.isBlank());
        assertEquals(clusterId, get(admin.describeCluster().clusterId()), "cluster id is stable");
    }

    @Test
    void describeLogDirs() throws Exception {
        String topic = createTopic(unique("logdirs"), 2);
        Map<Integer, Map<String, LogDirDescription>> all = get(admin.describeLogDirs(List.of(0)).allDescriptions());
        assertEquals(Set.of(0), all.keySet());
        Map<String, LogDirDescription> dirs = all.get(0);
        assertEquals(1, dirs.size(), "one log dir: " + dirs.keySet());
        LogDirDescription dir = dirs.values().iterator().next();
        assertTrue(dir.error() == null, "log dir error " + dir.error());
        assertTrue(dir.totalBytes().isPresent() && dir.totalBytes().getAsLong() > 0, "total bytes " + dir.totalBytes());
        assertTrue(dir.usableBytes().isPresent() && dir.usableBytes().getAsLong() <= dir.totalBytes().getAsLong());
        Map<TopicPartition, Long> before = new HashMap<>();
        for (TopicPartition tp : partitions(topic, 2)) {
            ReplicaInfo ri = dir.replicaInfos().get(tp);
            assertNotNull(ri, tp + " in " + dir.replicaInfos().keySet());
            assertFalse(ri.isFuture());
            before.put(tp, ri.size());
        }
        produce(topic, 1, 100);
        LogDirDescription again = get(admin.describeLogDirs(List.of(0)).allDescriptions()).get(0).values().iterator().next();
        long grew = again.replicaInfos().get(new TopicPartition(topic, 1)).size() - before.get(new TopicPartition(topic, 1));
        assertTrue(grew >= 100 * 2, "partition 1 grew by " + grew + " bytes after 100 records");
        assertEquals(before.get(new TopicPartition(topic, 0)), again.replicaInfos().get(new TopicPartition(topic, 0)).size(),
                "partition 0 got nothing");
    }
}
