package shoaltest

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func sp(s string) *string { return &s }

func TestAdminTopics(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	t1, t2 := uniq(t, "a"), uniq(t, "b")

	resps, err := adm.CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": sp("3600000")}, t1, t2)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{t1, t2} {
		r := resps[topic]
		if r.Err != nil {
			t.Fatalf("create %s: %v %s", topic, r.Err, r.ErrMessage)
		}
		if r.NumPartitions != 3 || r.ReplicationFactor != 1 {
			t.Errorf("create %s answered %d partitions rf %d, want 3 / 1", topic, r.NumPartitions, r.ReplicationFactor)
		}
		if c, ok := r.Configs["retention.ms"]; !ok || c.MaybeValue() != "3600000" {
			t.Errorf("create %s: retention.ms in the response = %+v", topic, c)
		}
	}
	// Again: TOPIC_ALREADY_EXISTS.
	// (kadm's single-topic helpers return the topic's error as err too.)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, t1); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Errorf("creating %s twice: %v, want TOPIC_ALREADY_EXISTS", t1, err)
	}
	// rf 3 on one broker: INVALID_REPLICATION_FACTOR; bad name: INVALID_TOPIC_EXCEPTION.
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, uniq(t, "rf3")); !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Errorf("create with rf 3: %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "bad/name"); !errors.Is(err, kerr.InvalidTopicException) {
		t.Errorf("create bad/name: %v, want INVALID_TOPIC_EXCEPTION", err)
	}
	// Validate-only creates nothing.
	vname := uniq(t, "v")
	if r, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, vname); err != nil || r[vname].Err != nil {
		t.Errorf("validate-only create: %v / %v", err, r[vname].Err)
	}

	// List: both present with 3 partitions on broker 0; the validated one absent.
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if td.Has(vname) {
		t.Errorf("validate-only topic %s exists", vname)
	}
	for _, topic := range []string{t1, t2} {
		d, ok := td[topic]
		if !ok {
			t.Fatalf("%s not listed", topic)
		}
		if d.Err != nil || d.IsInternal || len(d.Partitions) != 3 {
			t.Fatalf("%s: err %v internal %v partitions %d", topic, d.Err, d.IsInternal, len(d.Partitions))
		}
		if d.ID == (kadm.TopicID{}) {
			t.Errorf("%s has a zero topic id", topic)
		}
		if d.ID != resps[topic].ID {
			t.Errorf("%s: metadata topic id %v, create answered %v", topic, d.ID, resps[topic].ID)
		}
		for _, p := range d.Partitions.Sorted() {
			if p.Err != nil || p.Leader != 0 || fmt.Sprint(p.Replicas) != "[0]" || fmt.Sprint(p.ISR) != "[0]" {
				t.Errorf("%s/%d: err %v leader %d replicas %v isr %v", topic, p.Partition, p.Err, p.Leader, p.Replicas, p.ISR)
			}
		}
	}
	// Describe one by name.
	only, err := adm.ListTopics(ctx, t2)
	if err != nil || len(only) != 1 || !only.Has(t2) {
		t.Fatalf("list %s: %v %v", t2, err, only.Names())
	}

	// Delete t1: gone from the list; deleting again gives UNKNOWN_TOPIC_OR_PARTITION.
	dr, err := adm.DeleteTopics(ctx, t1)
	if err != nil || dr[t1].Err != nil {
		t.Fatalf("delete %s: %v %v", t1, err, dr[t1].Err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		td, err = adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !td.Has(t1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still listed after delete", t1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !td.Has(t2) {
		t.Fatalf("%s vanished when %s was deleted", t2, t1)
	}
	dr, err = adm.DeleteTopics(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(dr[t1].Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("deleting %s again: %v, want UNKNOWN_TOPIC_OR_PARTITION", t1, dr[t1].Err)
	}
	// A re-created name starts empty.
	createTopic(t, adm, t1, 1, nil)
	ends, err := adm.ListEndOffsets(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(t1, 0); o.Err != nil || o.Offset != 0 {
		t.Errorf("re-created %s ends at %d (%v)", t1, o.Offset, o.Err)
	}
}

func configOf(t *testing.T, rc kadm.ResourceConfigs, name, key string) (kadm.Config, bool) {
	t.Helper()
	r, err := rc.On(name, nil)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", name, err)
	}
	if r.Err != nil {
		t.Fatalf("describe configs of %s: %v %s", name, r.Err, r.ErrMessage)
	}
	for _, c := range r.Configs {
		if c.Key == key {
			return c, true
		}
	}
	return kadm.Config{}, false
}

func TestAdminConfigs(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, map[string]*string{"retention.ms": sp("7200000")})

	rc, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := configOf(t, rc, topic, "retention.ms")
	if !ok || c.MaybeValue() != "7200000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms = %q source %v, want 7200000 DYNAMIC_TOPIC_CONFIG", c.MaybeValue(), c.Source)
	}
	c, ok = configOf(t, rc, topic, "cleanup.policy")
	if !ok || c.MaybeValue() != "delete" || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy = %q source %v, want the default delete", c.MaybeValue(), c.Source)
	}
	if _, ok := configOf(t, rc, topic, "segment.bytes"); !ok {
		t.Errorf("segment.bytes not described")
	}

	// IncrementalAlterConfigs: set one, delete another.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: sp("2000000")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
	}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ar.On(topic, nil); r.Err != nil {
		t.Fatalf("incremental alter: %v %s", r.Err, r.ErrMessage)
	}
	rc, err = adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := configOf(t, rc, topic, "max.message.bytes"); c.MaybeValue() != "2000000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after set: max.message.bytes = %q source %v", c.MaybeValue(), c.Source)
	}
	if c, _ := configOf(t, rc, topic, "retention.ms"); c.MaybeValue() == "7200000" || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after delete: retention.ms = %q source %v, want the default", c.MaybeValue(), c.Source)
	}

	// Validate-only changes nothing.
	if ar, err := adm.ValidateAlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: sp("3000000")}}, topic); err != nil {
		t.Fatal(err)
	} else if r, _ := ar.On(topic, nil); r.Err != nil {
		t.Fatalf("validate alter: %v", r.Err)
	}
	rc, _ = adm.DescribeTopicConfigs(ctx, topic)
	if c, _ := configOf(t, rc, topic, "max.message.bytes"); c.MaybeValue() != "2000000" {
		t.Errorf("validate-only alter changed max.message.bytes to %q", c.MaybeValue())
	}

	// Invalid value: INVALID_CONFIG (Kafka refuses a negative segment.bytes).
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: sp("-5")}}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ar.On(topic, nil); !errors.Is(r.Err, kerr.InvalidConfig) {
		t.Errorf("segment.bytes=-5: %v, want INVALID_CONFIG", r.Err)
	}
	// An unknown cleanup policy is refused; compact (log compaction) is taken and reported.
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: sp("shrink")}}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ar.On(topic, nil); !errors.Is(r.Err, kerr.InvalidConfig) {
		t.Errorf("cleanup.policy=shrink: %v, want INVALID_CONFIG", r.Err)
	}
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: sp("compact")}}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ar.On(topic, nil); r.Err != nil {
		t.Errorf("cleanup.policy=compact: %v %s", r.Err, r.ErrMessage)
	}
	rc, _ = adm.DescribeTopicConfigs(ctx, topic)
	if c, _ := configOf(t, rc, topic, "cleanup.policy"); c.MaybeValue() != "compact" {
		t.Errorf("cleanup.policy after setting compact: %q", c.MaybeValue())
	}

	// Legacy AlterConfigs replaces the whole set: max.message.bytes goes back to default.
	ar, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: sp("123456789")}}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ar.On(topic, nil); r.Err != nil {
		t.Fatalf("alter configs (state): %v %s", r.Err, r.ErrMessage)
	}
	rc, _ = adm.DescribeTopicConfigs(ctx, topic)
	if c, _ := configOf(t, rc, topic, "retention.bytes"); c.MaybeValue() != "123456789" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after AlterConfigs: retention.bytes = %q source %v", c.MaybeValue(), c.Source)
	}
	if c, _ := configOf(t, rc, topic, "max.message.bytes"); c.MaybeValue() == "2000000" || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after AlterConfigs: max.message.bytes kept %q (%v); the non-incremental API replaces all", c.MaybeValue(), c.Source)
	}

	// Broker configs of node 0.
	brc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(brc) != 1 || brc[0].Err != nil || len(brc[0].Configs) == 0 {
		t.Fatalf("describe broker 0 configs: %+v", brc)
	}
	// Unknown topic: UNKNOWN_TOPIC_OR_PARTITION.
	rc, err = adm.DescribeTopicConfigs(ctx, uniq(t, "missing"))
	if err == nil && (len(rc) != 1 || !errors.Is(rc[0].Err, kerr.UnknownTopicOrPartition)) {
		t.Errorf("describe configs of a missing topic: %+v, want UNKNOWN_TOPIC_OR_PARTITION", rc)
	}
}

func TestAdminCreatePartitions(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 2, nil)

	if r, err := adm.ValidateCreatePartitions(ctx, 3, topic); err != nil || r[topic].Err != nil {
		t.Fatalf("validate create partitions: %v %v", err, r[topic].Err)
	}
	td, _ := adm.ListTopics(ctx, topic)
	if n := len(td[topic].Partitions); n != 2 {
		t.Fatalf("validate-only added partitions: %d", n)
	}
	r, err := adm.CreatePartitions(ctx, 3, topic)
	if err != nil || r[topic].Err != nil {
		t.Fatalf("create partitions: %v %v", err, r[topic].Err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		td, err = adm.ListTopics(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(td[topic].Partitions) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions after adding 3 to 2", len(td[topic].Partitions))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Shrinking is refused: INVALID_PARTITIONS.
	if r, err := adm.UpdatePartitions(ctx, 3, topic); err != nil || !errors.Is(r[topic].Err, kerr.InvalidPartitions) {
		t.Errorf("set partitions 5 -> 3: %v %v, want INVALID_PARTITIONS", err, r[topic].Err)
	}
	// The new partitions take records.
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 5; p++ {
		res := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte{byte(p)}})
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce to p%d: %v", p, err)
		}
		if r, _ := res.First(); r.Offset != 0 {
			t.Fatalf("p%d: first offset %d", p, r.Offset)
		}
	}
}

func TestAdminGroups(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 90*time.Second)
	topic := uniq(t, "t")
	group := uniq(t, "g")
	createTopic(t, adm, topic, 2, nil)
	prod := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceN(t, prod, topic, 2, 10, "x")

	// A member consumes everything and commits, then leaves.
	m := startMember(t, b, "m", group, topic, kgo.CooperativeStickyBalancer())
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, c, e := m.snapshot()
		if len(e) > 0 {
			t.Fatal(e)
		}
		if countConsumed(c) >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of 20", countConsumed(c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitCommitted(t, adm, group, topic, 2, 10)

	// ListGroups while it is in: Stable, protocol type consumer, coordinator 0.
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := lg[group]; !ok || g.State != "Stable" || g.ProtocolType != "consumer" || g.Coordinator != 0 {
		t.Fatalf("listed group: %+v (present %v)", g, ok)
	}
	if lg, err := adm.ListGroups(ctx, "Empty"); err != nil || lg[group].Group != "" {
		t.Fatalf("state filter Empty lists the Stable group: %v %+v", err, lg[group])
	}
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if g := dg[group]; g.Err != nil || g.State != "Stable" || len(g.Members) != 1 || g.Protocol != "cooperative-sticky" {
		t.Fatalf("describe: %+v", g)
	}
	// A non-empty group cannot be deleted: NON_EMPTY_GROUP.
	if r, _ := adm.DeleteGroup(ctx, group); !errors.Is(r.Err, kerr.NonEmptyGroup) {
		t.Errorf("delete of a Stable group: %v, want NON_EMPTY_GROUP", r.Err)
	}
	// Lag: 0 everywhere.
	lag, err := adm.Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if l := lag[group]; l.Error() != nil || l.Lag.Total() != 0 {
		t.Errorf("lag: err %v total %d", l.Error(), l.Lag.Total())
	}

	m.close()
	lg, err = adm.ListGroups(ctx, "Empty")
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := lg[group]; !ok || g.State != "Empty" {
		t.Fatalf("after the member left, Empty filter: %+v (present %v)", g, ok)
	}

	// Admin commit to the empty group, then fetch it back (with metadata).
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3, LeaderEpoch: 0, Metadata: "meta-0"})
	commit.Add(kadm.Offset{Topic: topic, Partition: 1, At: 7, LeaderEpoch: -1, Metadata: "meta-1"})
	cr, err := adm.CommitOffsets(ctx, group, commit)
	if err != nil || cr.Error() != nil {
		t.Fatalf("commit: %v %v", err, cr.Error())
	}
	fo, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]int64{0: 3, 1: 7} {
		o, ok := fo.Lookup(topic, p)
		wantEpoch := int32(-1)
		if p == 0 {
			wantEpoch = 0 // the committed leader epoch is stored and returned (OffsetFetch v5+)
		}
		if !ok || o.Err != nil || o.At != want || o.Metadata != fmt.Sprintf("meta-%d", p) || o.LeaderEpoch != wantEpoch {
			t.Errorf("fetched offset p%d: %+v (ok %v), want %d meta-%d", p, o, ok, want, p)
		}
	}
	// A new member resumes from the admin-committed offsets.
	m2 := startMember(t, b, "m2", group, topic, kgo.RangeBalancer())
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, c, _ := m2.snapshot()
		if countConsumed(c) >= 3+7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resumed member consumed %d of 10", countConsumed(c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, c, _ := m2.snapshot()
	if len(c[0]) != 7 || c[0][0] != 3 || len(c[1]) != 3 || c[1][0] != 7 {
		t.Fatalf("resumed member consumed %v, want p0 from 3 and p1 from 7", c)
	}
	m2.close()
	waitCommitted(t, adm, group, topic, 2, 10)

	// OffsetDelete for partition 1.
	dor, err := adm.DeleteOffsets(ctx, group, kadm.TopicsSet{topic: {1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := dor.Lookup(topic, 1); !ok || e != nil {
		t.Fatalf("offset delete p1: %v (ok %v)", e, ok)
	}
	fo, err = adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fo.Lookup(topic, 0); !ok || o.At != 10 {
		t.Errorf("p0 after deleting p1's offset: %+v", o)
	}
	if o, ok := fo.Lookup(topic, 1); ok && o.At != -1 {
		t.Errorf("p1 still committed at %d after OffsetDelete", o.At)
	}

	// DeleteGroups: gone from the list, its offsets gone; deleting again: GROUP_ID_NOT_FOUND.
	if r, err := adm.DeleteGroup(ctx, group); err != nil || r.Err != nil {
		t.Fatalf("delete group: %v %v", err, r.Err)
	}
	lg, err = adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lg[group]; ok {
		t.Errorf("deleted group still listed")
	}
	fo, err = adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	fo.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			t.Errorf("deleted group still has offset %s/%d=%d", o.Topic, o.Partition, o.At)
		}
	})
	if r, _ := adm.DeleteGroup(ctx, group); !errors.Is(r.Err, kerr.GroupIDNotFound) {
		t.Errorf("deleting again: %v, want GROUP_ID_NOT_FOUND", r.Err)
	}
	dg, err = adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if g := dg[group]; g.Err != nil || g.State != "Dead" {
		t.Errorf("describe deleted group: state %q err %v, want Dead (as Kafka answers for an unknown group)", g.State, g.Err)
	}
}

func TestAdminListOffsets(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 2, nil)

	// Empty partitions: start = end = 0; after any time: -1 (Kafka answers offset -1,
	// timestamp -1 when no record has a timestamp at or after the target).
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil || starts.Error() != nil {
		t.Fatal(err, starts.Error())
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatal(err, ends.Error())
	}
	for p := int32(0); p < 2; p++ {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		if s.Offset != 0 || e.Offset != 0 {
			t.Fatalf("empty p%d: start %d end %d", p, s.Offset, e.Offset)
		}
	}

	// p0 gets 10 records with timestamps base+0, base+100, ... in one compressed batch,
	// then a second batch with non-monotonic timestamps.
	base := int64(1_700_000_000_000)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(20*time.Millisecond), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprint(i)), Timestamp: time.UnixMilli(base + int64(i)*100)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tss := []int64{base + 5000, base + 2000, base + 9000, base + 3000}
	recs = nil
	for i, ts := range tss {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprint(10 + i)), Timestamp: time.UnixMilli(ts)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ends, err = adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatal(err, ends.Error())
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 14 {
		t.Errorf("end of p0: %d, want 14", o.Offset)
	}
	if o, _ := ends.Lookup(topic, 1); o.Offset != 0 {
		t.Errorf("end of p1: %d, want 0", o.Offset)
	}
	cases := []struct {
		milli      int64
		wantOffset int64
		wantTS     int64
	}{
		{base - 1, 0, base},            // before everything: the first record
		{base, 0, base},                // exact
		{base + 250, 3, base + 300},    // inside the first batch
		{base + 950, 10, base + 5000},  // first record with ts >= target: offset 10
		{base + 5001, 12, base + 9000}, // only offset 12 (ts 9000) is >= 5001
		// After everything: Kafka answers offset -1; kadm then lists the end offset instead
		// (the timestamp stays -1). The raw answer is checked below.
		{base + 9001, 14, -1},
	}
	for _, c := range cases {
		lo, err := adm.ListOffsetsAfterMilli(ctx, c.milli, topic)
		if err != nil || lo.Error() != nil {
			t.Fatal(err, lo.Error())
		}
		o, _ := lo.Lookup(topic, 0)
		if o.Offset != c.wantOffset || o.Timestamp != c.wantTS {
			t.Errorf("after milli base%+d: offset %d ts %d, want offset %d ts %d", c.milli-base, o.Offset, o.Timestamp, c.wantOffset, c.wantTS)
		}
	}
	// Max timestamp (ListOffsets -3, v7): offset 12 holds the largest timestamp.
	mt, err := adm.ListMaxTimestampOffsets(ctx, topic)
	if err != nil || mt.Error() != nil {
		t.Fatal(err, mt.Error())
	}
	if o, _ := mt.Lookup(topic, 0); o.Offset != 12 || o.Timestamp != base+9000 {
		t.Errorf("max timestamp: offset %d ts %d, want 12 / base+9000", o.Offset, o.Timestamp)
	}
	// Raw ListOffsets straight to broker 0 (kgo would refuse an unknown partition itself):
	// a timestamp after every record gives offset -1 timestamp -1; partition 7 of a
	// 2-partition topic gives UNKNOWN_TOPIC_OR_PARTITION.
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, pt := range [][2]int64{{0, base + 9001}, {7, -1}} {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = int32(pt[0])
		rp.Timestamp = pt[1]
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	raw, err := newClient(t, b).Broker(0).Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	resp := raw.(*kmsg.ListOffsetsResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 {
		t.Fatalf("raw list offsets: %+v", resp)
	}
	for _, p := range resp.Topics[0].Partitions {
		switch p.Partition {
		case 0:
			if p.ErrorCode != 0 || p.Offset != -1 || p.Timestamp != -1 {
				t.Errorf("raw list offsets after all: err %d offset %d ts %d, want 0 / -1 / -1", p.ErrorCode, p.Offset, p.Timestamp)
			}
		case 7:
			if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Errorf("list offsets of partition 7 of a 2-partition topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(p.ErrorCode))
			}
		default:
			t.Errorf("raw list offsets answered partition %d", p.Partition)
		}
	}
}

func TestAdminDeleteRecords(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 2, nil)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceN(t, cl, topic, 2, 20, "d")

	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5})
	del.Add(kadm.Offset{Topic: topic, Partition: 1, At: -1}) // -1: up to the high watermark
	dr, err := adm.DeleteRecords(ctx, del)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup(topic, 0); r.Err != nil || r.LowWatermark != 5 {
		t.Errorf("delete records p0 to 5: low watermark %d err %v", r.LowWatermark, r.Err)
	}
	if r, _ := dr.Lookup(topic, 1); r.Err != nil || r.LowWatermark != 20 {
		t.Errorf("delete records p1 to HW: low watermark %d err %v, want 20", r.LowWatermark, r.Err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup(topic, 0); o.Offset != 5 {
		t.Errorf("start of p0 after delete: %d, want 5", o.Offset)
	}
	if o, _ := starts.Lookup(topic, 1); o.Offset != 20 {
		t.Errorf("start of p1 after delete: %d, want 20", o.Offset)
	}
	// deleteP0 deletes partition 0's records before `at` and returns the broker's answer.
	deleteP0 := func(at int64) kadm.DeleteRecordsResponse {
		t.Helper()
		o := kadm.Offsets{}
		o.Add(kadm.Offset{Topic: topic, Partition: 0, At: at})
		dr, err := adm.DeleteRecords(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := dr.Lookup(topic, 0)
		return r
	}
	// Past the high watermark: OFFSET_OUT_OF_RANGE.
	if r := deleteP0(100); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Errorf("delete records beyond HW: %v, want OFFSET_OUT_OF_RANGE", r.Err)
	}
	// Moving it back is a no-op (low watermark stays 5).
	if r := deleteP0(2); r.Err != nil || r.LowWatermark != 5 {
		t.Errorf("delete records to 2 after 5: low watermark %d err %v, want 5", r.LowWatermark, r.Err)
	}

	// A consumer reading from the start begins at 5; one asking for offset 1 is out of range
	// and resets (here: to the start, 5).
	cons := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(1)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []int64
	for len(got) < 15 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %v", got)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r.Offset) })
	}
	if got[0] != 5 || got[len(got)-1] != 19 || len(got) != 15 {
		t.Errorf("after delete records consumed offsets %v, want 5..19", got)
	}
}

func TestAdminCluster(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)

	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].NodeID != 0 || fmt.Sprintf("%s:%d", md.Brokers[0].Host, md.Brokers[0].Port) != b.Addr {
		t.Fatalf("brokers: %+v, want node 0 at %s", md.Brokers, b.Addr)
	}
	if md.Controller != 0 {
		t.Errorf("controller %d, want 0", md.Controller)
	}
	if md.Cluster == "" {
		t.Errorf("empty cluster id")
	}
	bd, err := adm.ListBrokers(ctx)
	if err != nil || len(bd) != 1 || bd[0].NodeID != 0 {
		t.Fatalf("list brokers: %v %+v", err, bd)
	}

	// DescribeCluster directly.
	dreq := kmsg.NewPtrDescribeClusterRequest()
	dresp, err := dreq.RequestWith(ctx, newClient(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if dresp.ErrorCode != 0 || dresp.ClusterID != md.Cluster || dresp.ControllerID != 0 || len(dresp.Brokers) != 1 ||
		dresp.Brokers[0].NodeID != 0 || fmt.Sprintf("%s:%d", dresp.Brokers[0].Host, dresp.Brokers[0].Port) != b.Addr {
		t.Errorf("describe cluster: err %d cluster %q (metadata %q) controller %d brokers %+v", dresp.ErrorCode, dresp.ClusterID, md.Cluster, dresp.ControllerID, dresp.Brokers)
	}

	// ApiVersions as kadm sees it: the consumer-group and produce keys are there.
	av, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := av[0]
	if !ok || v.Err != nil {
		t.Fatalf("api versions: %+v", av)
	}
	for _, key := range []int16{0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 60} {
		if _, _, ok := v.KeyVersions(key); !ok {
			t.Errorf("api key %d not advertised", key)
		}
	}

	// Log dirs: one dir on broker 0 holding our topic's partitions with their sizes.
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 2, nil)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for i := 0; i < 50; i++ {
		for p := int32(0); p < 2; p++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: make([]byte, 100)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	all, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := all[0]
	if len(all) != 1 || len(dirs) == 0 {
		t.Fatalf("log dirs: %+v", all)
	}
	if err := dirs.Error(); err != nil {
		t.Fatalf("log dir error: %v", err)
	}
	var names []string
	for d, ld := range dirs {
		names = append(names, d)
		if ld.TotalBytes <= 0 || ld.UsableBytes <= 0 || ld.UsableBytes > ld.TotalBytes {
			t.Errorf("dir %s: total %d usable %d", d, ld.TotalBytes, ld.UsableBytes)
		}
	}
	sort.Strings(names)
	for p := int32(0); p < 2; p++ {
		dp, ok := dirs.LookupPartition(topic, p)
		if !ok {
			t.Fatalf("%s/%d in no log dir (dirs %v)", topic, p, names)
		}
		// 50 uncompressed records of 100 bytes: at least 5000 bytes of log.
		if dp.Size < 50*100 {
			t.Errorf("%s/%d size %d, too small for 50 records", topic, p, dp.Size)
		}
	}
	// Only one topic asked for: only it is described.
	some, err := adm.DescribeBrokerLogDirs(ctx, 0, kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	some.EachPartition(func(dp kadm.DescribedLogDirPartition) {
		if dp.Topic != topic || dp.Partition != 0 {
			t.Errorf("asked for %s/0, got %s/%d", topic, dp.Topic, dp.Partition)
		}
	})
	if _, ok := some.LookupPartition(topic, 0); !ok {
		t.Errorf("%s/0 missing from a filtered DescribeLogDirs", topic)
	}

	// Coordinator lookup for a group: node 0.
	fc := adm.FindGroupCoordinators(ctx, uniq(t, "g"))
	if err := fc.Error(); err != nil {
		t.Fatal(err)
	}
	fc.Each(func(r kadm.FindCoordinatorResponse) {
		if r.NodeID != 0 || fmt.Sprintf("%s:%d", r.Host, r.Port) != b.Addr {
			t.Errorf("coordinator %+v, want node 0 at %s", r, b.Addr)
		}
	})
}
