package dev.shoal.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** KafkaConsumer against Shoal: assign/seek, classic groups, offsets, commits, pause/resume. */
class ConsumerTest extends ShoalTestBase {

    /** Produces {@code perPartition} records "p{partition}-{i}" to every partition, acks=all. */
    private static void produce(String topic, int partitions, int perPartition, int startAt) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
            for (int i = startAt; i < startAt + perPartition; i++) {
                for (int part = 0; part < partitions; part++) {
                    p.send(new ProducerRecord<>(topic, part, bytes("k" + i), bytes("p" + part + "-" + i)));
                }
            }
            p.flush();
        }
    }

    @Test
    void assignAndSeekToBeginningEndAndOffset() throws Exception {
        String topic = createTopic(unique("seek"), 1);
        produce(topic, 1, 100, 0);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10))) {
            c.assign(List.of(tp));
            assertEquals(Set.of(tp), c.assignment());

            c.seekToBeginning(List.of(tp));
            assertEquals(0, c.position(tp));
            List<ConsumerRecord<byte[], byte[]>> first = pollExactly(c, 1, Duration.ofSeconds(30));
            assertEquals(0, first.get(0).offset());
            assertEquals("p0-0", str(first.get(0).value()));

            c.seek(tp, 57);
            ConsumerRecord<byte[], byte[]> at57 = pollExactly(c, 1, Duration.ofSeconds(30)).get(0);
            assertEquals(57, at57.offset());
            assertEquals("p0-57", str(at57.value()));

            c.seekToEnd(List.of(tp));
            assertEquals(100, c.position(tp));
            assertTrue(c.poll(Duration.ofMillis(500)).isEmpty(), "nothing past the end");

            produce(topic, 1, 1, 100);
            ConsumerRecord<byte[], byte[]> next = pollExactly(c, 1, Duration.ofSeconds(30)).get(0);
            assertEquals(100, next.offset());
            assertEquals("p0-100", str(next.value()));

            // Seeking past the end is out of range: auto.offset.reset=earliest takes it back to 0.
            c.seek(tp, 10_000);
            ConsumerRecord<byte[], byte[]> reset = pollExactly(c, 1, Duration.ofSeconds(30)).get(0);
            assertEquals(0, reset.offset());
        }
    }

    /** One group member polling on its own thread, committing synchronously after every poll. */
    private static final class Member implements Runnable {
        final String name;
        final KafkaConsumer<byte[], byte[]> consumer;
        final String topic;
        final Set<TopicPartition> assignment = ConcurrentHashMap.newKeySet();
        final List<String> values = new CopyOnWriteArrayList<>();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        final List<String> events = new CopyOnWriteArrayList<>();
        volatile boolean stop;
        final Thread thread;
        final CountDownLatch closed = new CountDownLatch(1);

        Member(String name, String group, String topic, String assignor) {
            this.name = name;
            this.topic = topic;
            this.consumer = consumer(Map.of(
                    ConsumerConfig.GROUP_ID_CONFIG, group,
                    ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic",
                    ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor,
                    ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10000,
                    ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500,
                    ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50));
            this.thread = new Thread(this, "member-" + name);
            thread.setDaemon(true);
        }

        @Override
        public void run() {
            try {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                        events.add("revoked " + ps);
                        assignment.removeAll(ps);
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                        events.add("assigned " + ps);
                        assignment.addAll(ps);
                    }
                });
                while (!stop) {
                    ConsumerRecords<byte[], byte[]> rs = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<byte[], byte[]> r : rs) {
                        values.add(str(r.value()));
                    }
                    if (!rs.isEmpty()) {
                        consumer.commitSync(Duration.ofSeconds(30));
                    }
                }
            } catch (WakeupException e) {
                // stop
            } catch (Throwable t) {
                error.set(t);
            } finally {
                try {
                    consumer.close(Duration.ofSeconds(20));
                } catch (Throwable t) {
                    error.compareAndSet(null, t);
                }
                closed.countDown();
            }
        }

        void close() throws InterruptedException {
            stop = true;
            assertTrue(closed.await(40, TimeUnit.SECONDS), name + " did not close");
        }

        void checkHealthy() {
            Throwable t = error.get();
            if (t != null) {
                throw new AssertionError(name + " failed (events " + events + ")", t);
            }
        }
    }

    /** Subscribes and polls until the group gave {@code c} exactly {@code want} (60 s at most). */
    private static void subscribeUntilAssigned(KafkaConsumer<byte[], byte[]> c, String topic, Set<TopicPartition> want) {
        c.subscribe(List.of(topic));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!c.assignment().equals(want) && System.nanoTime() < deadline) {
            c.poll(Duration.ofMillis(100));
        }
        assertEquals(want, c.assignment());
    }

    private static Set<String> expected(int partitions, int from, int to) {
        Set<String> s = new TreeSet<>();
        for (int i = from; i < to; i++) {
            for (int p = 0; p < partitions; p++) {
                s.add("p" + p + "-" + i);
            }
        }
        return s;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(classes = {RangeAssignor.class, CooperativeStickyAssignor.class})
    void classicGroupSplitsPartitionsAndRebalancesWhenAMemberLeaves(Class<?> assignor) throws Exception {
        int parts = 4;
        boolean cooperative = assignor == CooperativeStickyAssignor.class;
        String topic = createTopic(unique("group"), parts);
        String group = unique("g");
        Member a = new Member("a", group, topic, assignor.getName());
        Member b = new Member("b", group, topic, assignor.getName());
        a.thread.start();
        b.thread.start();
        try {
            waitUntil(Duration.ofSeconds(60), "both members assigned, together all partitions", () -> {
                a.checkHealthy();
                b.checkHealthy();
                Set<TopicPartition> union = new HashSet<>(a.assignment);
                union.addAll(b.assignment);
                return a.assignment.size() == 2 && b.assignment.size() == 2 && union.size() == parts;
            });
            Set<TopicPartition> disjoint = new HashSet<>(a.assignment);
            disjoint.retainAll(b.assignment);
            assertTrue(disjoint.isEmpty(), "a " + a.assignment + " and b " + b.assignment + " overlap");

            produce(topic, parts, 25, 0);
            Set<String> first = expected(parts, 0, 25);
            waitUntil(Duration.ofSeconds(60), "the two members consumed the first 100 records", () -> {
                a.checkHealthy();
                b.checkHealthy();
                return a.values.size() + b.values.size() >= first.size();
            });
            Thread.sleep(500);
            // Each member read only its own partitions, nothing twice.
            assertEquals(first.size(), a.values.size() + b.values.size(), "records read by a and b");
            Set<String> union = new TreeSet<>(a.values);
            union.addAll(b.values);
            assertEquals(first, union);
            for (String v : a.values) {
                int p = Integer.parseInt(v.substring(1, v.indexOf('-')));
                assertTrue(a.assignment.contains(new TopicPartition(topic, p)), "a read " + v + " outside " + a.assignment);
            }
            int aBefore = a.values.size();
            Set<TopicPartition> aOwned = Set.copyOf(a.assignment);
            int aEvents = a.events.size();

            // b leaves (LeaveGroup at close): a gets all four partitions and resumes b's at its commits.
            b.close();
            b.checkHealthy();
            waitUntil(Duration.ofSeconds(60), "a owns all partitions after b left", () -> {
                a.checkHealthy();
                return a.assignment.size() == parts;
            });
            if (cooperative) {
                // Incremental rebalance: a keeps what it had, only b's partitions are added.
                List<String> since = a.events.subList(aEvents, a.events.size());
                assertTrue(since.stream().noneMatch(e -> e.startsWith("revoked [") && aOwned.stream().anyMatch(tp -> e.contains(tp.toString()))),
                        "cooperative rebalance revoked a's partitions: " + since);
            }
            produce(topic, parts, 25, 25);
            Set<String> second = expected(parts, 25, 50);
            waitUntil(Duration.ofSeconds(60), "a consumed the second 100 records", () -> {
                a.checkHealthy();
                return a.values.size() - aBefore >= second.size();
            });
            Thread.sleep(500);
            List<String> after = a.values.subList(aBefore, a.values.size());
            assertEquals(second, new TreeSet<>(after), "a read exactly the new records (b's commits were honoured)");
            assertEquals(second.size(), after.size(), "no record read twice");
        } finally {
            a.stop = true;
            b.stop = true;
            a.closed.await(40, TimeUnit.SECONDS);
            b.closed.await(40, TimeUnit.SECONDS);
        }
        a.checkHealthy();
        // The group's committed offsets are the log end of every partition.
        Map<TopicPartition, OffsetAndMetadata> committed = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        for (TopicPartition tp : partitions(topic, parts)) {
            assertEquals(50, committed.get(tp).offset(), "committed offset of " + tp);
        }
    }

    @Test
    void offsetsForTimesFindsTheFirstRecordAtOrAfterATimestamp() throws Exception {
        String topic = createTopic(unique("times"), 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        long t0 = System.currentTimeMillis() - 3_600_000;
        // One lz4 batch of 10 records, then 10 single-record batches: lookups inside and across batches.
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4",
                ProducerConfig.LINGER_MS_CONFIG, 1000))) {
            for (int i = 0; i < 10; i++) {
                p.send(new ProducerRecord<>(topic, 0, t0 + i * 1000L, null, bytes("t" + i)));
            }
            p.flush();
        }
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 0))) {
            for (int i = 10; i < 20; i++) {
                p.send(new ProducerRecord<>(topic, 0, t0 + i * 1000L, null, bytes("t" + i))).get(30, TimeUnit.SECONDS);
            }
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            Map<Long, Long> cases = new HashMap<>();
            cases.put(t0 - 5000, 0L);        // before everything
            cases.put(t0, 0L);               // exact first
            cases.put(t0 + 3500, 4L);        // inside the compressed batch
            cases.put(t0 + 9000, 9L);        // last of the compressed batch
            cases.put(t0 + 9001, 10L);       // first single-record batch
            cases.put(t0 + 15000, 15L);
            cases.put(t0 + 19000, 19L);      // last record
            for (var e : cases.entrySet()) {
                OffsetAndTimestamp ot = c.offsetsForTimes(Map.of(tp, e.getKey()), Duration.ofSeconds(30)).get(tp);
                assertNotNull(ot, "offsetsForTimes(" + (e.getKey() - t0) + ")");
                assertEquals(e.getValue(), ot.offset(), "offset for t0+" + (e.getKey() - t0));
                assertEquals(t0 + e.getValue() * 1000, ot.timestamp(), "timestamp for t0+" + (e.getKey() - t0));
            }
            assertNull(c.offsetsForTimes(Map.of(tp, t0 + 19001), Duration.ofSeconds(30)).get(tp), "after the last record");
        }
    }

    @Test
    void commitSyncCommitAsyncAndCommitted() throws Exception {
        String topic = createTopic(unique("commit"), 2);
        produce(topic, 2, 50, 0);
        String group = unique("cg");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        try (KafkaConsumer<byte[], byte[]> c = consumer(conf)) {
            c.assign(List.of(p0, p1));
            Map<TopicPartition, OffsetAndMetadata> none = c.committed(Set.of(p0, p1), Duration.ofSeconds(30));
            assertNull(none.get(p0), "nothing committed yet");
            assertNull(none.get(p1), "nothing committed yet");

            c.commitSync(Map.of(p0, new OffsetAndMetadata(42, "meta-42")), Duration.ofSeconds(30));
            OffsetAndMetadata got = c.committed(Set.of(p0), Duration.ofSeconds(30)).get(p0);
            assertEquals(42, got.offset());
            assertEquals("meta-42", got.metadata());

            AtomicReference<Exception> asyncError = new AtomicReference<>();
            CountDownLatch done = new CountDownLatch(1);
            c.commitAsync(Map.of(p1, new OffsetAndMetadata(7, "async")), (offsets, e) -> {
                asyncError.set(e);
                done.countDown();
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (done.getCount() > 0 && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(50)); // async commit callbacks run inside poll
            }
            assertEquals(0, done.getCount(), "commitAsync callback not called");
            assertNull(asyncError.get(), "commitAsync failed");
            assertEquals(7, c.committed(Set.of(p1), Duration.ofSeconds(30)).get(p1).offset());
        }
        // A new consumer of the group starts at the committed offsets (no seek, reset=none).
        Map<String, Object> resume = new HashMap<>(conf);
        resume.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<byte[], byte[]> c = consumer(resume)) {
            c.assign(List.of(p0, p1));
            assertEquals(42, c.position(p0, Duration.ofSeconds(30)));
            assertEquals(7, c.position(p1, Duration.ofSeconds(30)));
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, (50 - 42) + (50 - 7), Duration.ofSeconds(30));
            assertEquals((50 - 42) + (50 - 7), rs.size());
            Map<Integer, Long> firstOffset = new HashMap<>();
            for (ConsumerRecord<byte[], byte[]> r : rs) {
                firstOffset.putIfAbsent(r.partition(), r.offset());
            }
            assertEquals(Map.of(0, 42L, 1, 7L), firstOffset);
            // commitSync() without arguments commits the positions.
            c.commitSync(Duration.ofSeconds(30));
            Map<TopicPartition, OffsetAndMetadata> now = c.committed(Set.of(p0, p1), Duration.ofSeconds(30));
            assertEquals(50, now.get(p0).offset());
            assertEquals(50, now.get(p1).offset());
        }
    }

    @Test
    void patternSubscriptionPicksUpNewTopics() throws Exception {
        String prefix = unique("pat");
        String first = createTopic(prefix + "-a", 1);
        produce(first, 1, 5, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, unique("pattern"),
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic", ConsumerConfig.METADATA_MAX_AGE_CONFIG, 1000))) {
            c.subscribe(Pattern.compile(Pattern.quote(prefix) + "-.*"));
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 5, Duration.ofSeconds(60));
            assertEquals(5, rs.size());
            assertTrue(rs.stream().allMatch(r -> r.topic().equals(first)));
            // Committed, so the rebalance the new topic causes resumes here instead of resetting.
            c.commitSync(Duration.ofSeconds(30));
            String second = createTopic(prefix + "-b", 2);
            produce(second, 2, 3, 0);
            rs = pollExactly(c, 6, Duration.ofSeconds(60));
            assertEquals(6, rs.size(), "records of the topic created after subscribing");
            assertTrue(rs.stream().allMatch(r -> r.topic().equals(second)));
            assertEquals(Set.of(new TopicPartition(first, 0), new TopicPartition(second, 0), new TopicPartition(second, 1)),
                    c.assignment());
        }
    }

    @Test
    void autoCommitCommitsThePositionOnClose() throws Exception {
        String topic = createTopic(unique("autocommit"), 1);
        produce(topic, 1, 20, 0);
        String group = unique("auto");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic", ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, true,
                ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, 60000, ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 7))) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> rs = new java.util.ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (rs.size() < 7 && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(200)).forEach(rs::add);
            }
            assertEquals(7, rs.size(), "max.poll.records");
            assertEquals(7, c.position(tp));
        }
        // close() commits the consumed position (the interval has not passed).
        assertEquals(7L, get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(tp).offset());
    }

    @Test
    void staticMemberRejoinsWithItsAssignment() throws Exception {
        String topic = createTopic(unique("static"), 3);
        String group = unique("static-g");
        Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic",
                ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30000);
        Set<TopicPartition> all = Set.copyOf(partitions(topic, 3));
        try (KafkaConsumer<byte[], byte[]> c = consumer(conf)) {
            subscribeUntilAssigned(c, topic, all);
            var member = get(admin.describeConsumerGroups(List.of(group)).all()).get(group).members().iterator().next();
            assertEquals(java.util.Optional.of("instance-1"), member.groupInstanceId());
        }
        // A static member's close sends no LeaveGroup: the group keeps it until its session
        // times out, and the same instance gets its partitions back at once.
        var afterClose = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
        assertEquals(1, afterClose.members().size(), "static member kept after close: " + afterClose);
        long start = System.nanoTime();
        try (KafkaConsumer<byte[], byte[]> c = consumer(conf)) {
            subscribeUntilAssigned(c, topic, all);
            long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(tookMs < 15000, "static rejoin took " + tookMs + " ms (no wait for the 30 s session)");
        }
    }

    @Test
    void positionsWithLeaderEpochsAreValidated() throws Exception {
        // KIP-320: a seek or a committed offset that carries a leader epoch makes the consumer
        // validate it with OffsetForLeaderEpoch before fetching; a wrong end offset for the
        // epoch would show as log truncation (LogTruncationException with reset=none).
        String topic = createTopic(unique("epochs"), 1);
        produce(topic, 1, 10, 0);
        TopicPartition tp = new TopicPartition(topic, 0);
        String group = unique("epoch-g");
        java.util.Optional<Integer> epoch;
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            ConsumerRecord<byte[], byte[]> r = pollExactly(c, 10, Duration.ofSeconds(30)).get(0);
            epoch = r.leaderEpoch();
            assertTrue(epoch.isPresent() && epoch.get() >= 0, "records carry the leader epoch: " + epoch);
            c.commitSync(Map.of(tp, new OffsetAndMetadata(6, epoch, "with-epoch")));
            OffsetAndMetadata committed = c.committed(Set.of(tp), Duration.ofSeconds(30)).get(tp);
            assertEquals(6, committed.offset());
            assertEquals(epoch, committed.leaderEpoch(), "committed leader epoch");
        }
        Map<String, Object> strict = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<byte[], byte[]> c = consumer(strict)) {
            c.assign(List.of(tp));
            // Resumes at the committed offset, validated against its epoch.
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 4, Duration.ofSeconds(30));
            assertEquals(4, rs.size());
            assertEquals(6, rs.get(0).offset());
            // Explicit seeks with the epoch: in the middle and at the end.
            c.seek(tp, new OffsetAndMetadata(8, epoch, ""));
            rs = pollExactly(c, 2, Duration.ofSeconds(30));
            assertEquals(List.of(8L, 9L), rs.stream().map(ConsumerRecord::offset).toList());
            c.seek(tp, new OffsetAndMetadata(10, epoch, ""));
            assertTrue(c.poll(Duration.ofMillis(500)).isEmpty());
            assertEquals(10, c.position(tp));
        }
    }

    @Test
    void pauseAndResume() throws Exception {
        String topic = createTopic(unique("pause"), 2);
        produce(topic, 2, 30, 0);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            c.assign(List.of(p0, p1));
            c.seekToBeginning(List.of(p0, p1));
            c.pause(List.of(p0));
            assertEquals(Set.of(p0), c.paused());
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 30, Duration.ofSeconds(30));
            assertEquals(30, rs.size(), "only p1's records while p0 is paused");
            assertTrue(rs.stream().allMatch(r -> r.partition() == 1), "a record from the paused partition");
            assertEquals(0, c.position(p0));
            c.resume(List.of(p0));
            assertTrue(c.paused().isEmpty());
            rs = pollExactly(c, 30, Duration.ofSeconds(30));
            assertEquals(30, rs.size());
            assertTrue(rs.stream().allMatch(r -> r.partition() == 0));
            assertEquals(List.of(0L, 29L), List.of(rs.get(0).offset(), rs.get(29).offset()));
        }
    }

    @Test
    void beginningAndEndOffsets() throws Exception {
        String topic = createTopic(unique("watermarks"), 3);
        try (KafkaProducer<byte[], byte[]> p = producer()) {
            int[] counts = {5, 0, 12};
            for (int part = 0; part < 3; part++) {
                for (int i = 0; i < counts[part]; i++) {
                    p.send(new ProducerRecord<>(topic, part, null, bytes("x")));
                }
            }
            p.flush();
        }
        List<TopicPartition> tps = partitions(topic, 3);
        Map<TopicPartition, Long> zero = tps.stream().collect(Collectors.toMap(t -> t, t -> 0L));
        Map<TopicPartition, Long> ends = Map.of(tps.get(0), 5L, tps.get(1), 0L, tps.get(2), 12L);
        for (String isolation : List.of("read_uncommitted", "read_committed")) {
            try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
                assertEquals(zero, c.beginningOffsets(tps, Duration.ofSeconds(30)), isolation);
                // No transactions: the last stable offset is the high watermark.
                assertEquals(ends, c.endOffsets(tps, Duration.ofSeconds(30)), isolation);
            }
        }
        // Without transactions read_committed reads everything.
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            c.assign(tps);
            c.seekToBeginning(tps);
            assertEquals(17, pollExactly(c, 17, Duration.ofSeconds(30)).size());
        }
        get(admin.deleteRecords(Map.of(tps.get(2), org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(4))).all());
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            Map<TopicPartition, Long> begin = c.beginningOffsets(tps, Duration.ofSeconds(30));
            assertEquals(4L, begin.get(tps.get(2)));
            assertEquals(0L, begin.get(tps.get(0)));
            c.assign(List.of(tps.get(2)));
            c.seekToBeginning(List.of(tps.get(2)));
            List<ConsumerRecord<byte[], byte[]>> rs = pollExactly(c, 8, Duration.ofSeconds(30));
            assertEquals(8, rs.size());
            assertEquals(4, rs.get(0).offset());
            assertFalse(rs.stream().anyMatch(r -> r.offset() < 4));
        }
    }
}
