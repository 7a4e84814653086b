package shoaltest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A broker of its own, restarted with SIGTERM: records, topic configs, partition counts and
// group offsets survive, and appends continue at the next offset.
func TestRestartKeepsState(t *testing.T) {
	b := startBroker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	group := uniq(t, "g")
	createTopic(t, adm, topic, 2, map[string]*string{"retention.ms": sp("86400000")})
	if r, err := adm.CreatePartitions(ctxT(t, 30*time.Second), 1, topic); err != nil || r[topic].Err != nil {
		t.Fatalf("create partitions: %v %v", err, r[topic].Err)
	}
	prod := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceN(t, prod, topic, 3, 10, "before")
	commit := kadm.Offsets{}
	for p := int32(0); p < 3; p++ {
		commit.Add(kadm.Offset{Topic: topic, Partition: p, At: int64(4 + p), LeaderEpoch: -1})
	}
	if err := adm.CommitAllOffsets(ctxT(t, 30*time.Second), group, commit); err != nil {
		t.Fatal(err)
	}

	b.Restart(t)

	adm2 := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	td, err := adm2.ListTopics(ctx, topic)
	if err != nil || len(td[topic].Partitions) != 3 {
		t.Fatalf("after restart: %v, %d partitions, want 3", err, len(td[topic].Partitions))
	}
	rc, err := adm2.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := configOf(t, rc, topic, "retention.ms"); c.MaybeValue() != "86400000" {
		t.Errorf("retention.ms after restart: %q", c.MaybeValue())
	}
	waitCommittedEach(t, adm2, group, topic, map[int32]int64{0: 4, 1: 5, 2: 6})
	prod2 := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	res := prod2.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 1, Value: []byte("after")})
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	if r, _ := res.First(); r.Offset != 10 {
		t.Errorf("first offset after restart: %d, want 10", r.Offset)
	}
	got := consumeExactly(t, b, topic, 3, 31)
	for _, r := range got {
		want := fmt.Sprintf("before-%d-%d", r.Partition, r.Offset)
		if r.Offset == 10 {
			want = "after"
		}
		if string(r.Value) != want {
			t.Errorf("p%d o%d = %q, want %q", r.Partition, r.Offset, r.Value, want)
		}
	}
}

func waitCommittedEach(t *testing.T, adm *kadm.Client, group, topic string, want map[int32]int64) {
	t.Helper()
	offs, err := adm.FetchOffsets(ctxT(t, 30*time.Second), group)
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if o, ok := offs.Lookup(topic, p); !ok || o.Err != nil || o.At != w {
			t.Errorf("committed %s/%d: %+v (ok %v), want %d", topic, p, o, ok, w)
		}
	}
}

// Producing to an unknown topic with AllowAutoTopicCreation creates it with one partition
// (default_partitions = 1); without it, kgo waits and fails with UNKNOWN_TOPIC_OR_PARTITION.
func TestAutoCreateTopic(t *testing.T) {
	b := broker(t)
	topic := uniq(t, "auto")
	cl := newClient(t, b, kgo.AllowAutoTopicCreation())
	res := cl.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("v")})
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce with auto-create: %v", err)
	}
	td, err := newAdmin(t, b).ListTopics(ctxT(t, 30*time.Second), topic)
	if err != nil || len(td[topic].Partitions) != 1 {
		t.Fatalf("auto-created topic: %v %+v", err, td[topic])
	}

	missing := uniq(t, "missing")
	cl2 := newClient(t, b, kgo.UnknownTopicRetries(2), kgo.RecordRetries(2))
	res = cl2.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: missing, Value: []byte("v")})
	if !errors.Is(res.FirstErr(), kerr.UnknownTopicOrPartition) {
		t.Errorf("produce to a missing topic without auto-create: %v, want UNKNOWN_TOPIC_OR_PARTITION", res.FirstErr())
	}
	if td, _ := newAdmin(t, b).ListTopics(ctxT(t, 30*time.Second)); td.Has(missing) {
		t.Errorf("topic %s was created without AllowAutoTopicCreation", missing)
	}
}

// A batch larger than the topic's max.message.bytes: MESSAGE_TOO_LARGE (the record fails,
// the client does not retry it forever); a smaller one is accepted.
func TestMessageTooLarge(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, map[string]*string{"max.message.bytes": sp("10000")})
	cl := newClient(t, b, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordRetries(3))
	res := cl.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: topic, Value: make([]byte, 20000)})
	if !errors.Is(res.FirstErr(), kerr.MessageTooLarge) {
		t.Errorf("20000-byte record on max.message.bytes=10000: %v, want MESSAGE_TOO_LARGE", res.FirstErr())
	}
	res = cl.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: topic, Value: make([]byte, 5000)})
	if err := res.FirstErr(); err != nil {
		t.Fatalf("5000-byte record: %v", err)
	}
	if r, _ := res.First(); r.Offset != 0 {
		t.Errorf("accepted record at offset %d, want 0 (the refused one must not take an offset)", r.Offset)
	}
}

// The classic group protocol's error answers, request by request, as Kafka gives them.
func TestGroupProtocolErrors(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	group := uniq(t, "g")
	createTopic(t, adm, topic, 1, nil)
	cl := newClient(t, b)
	ctx := ctxT(t, 60*time.Second)
	coord := cl.Broker(0)

	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 0
	meta.Topics = []string{topic}
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name = "range"
	proto.Metadata = meta.AppendTo(nil)

	join := func(member string) *kmsg.JoinGroupResponse {
		t.Helper()
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 9
		req.Group = group
		req.SessionTimeoutMillis = 30000
		req.RebalanceTimeoutMillis = 30000
		req.MemberID = member
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{proto}
		resp, err := coord.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.JoinGroupResponse)
	}
	// KIP-394: the first JoinGroup (v4+) without a member id is answered MEMBER_ID_REQUIRED
	// with the id to use.
	j := join("")
	if j.ErrorCode != kerr.MemberIDRequired.Code || j.MemberID == "" {
		t.Fatalf("first join: %v member %q, want MEMBER_ID_REQUIRED with an id", kerr.ErrorForCode(j.ErrorCode), j.MemberID)
	}
	mid := j.MemberID
	j = join(mid)
	if j.ErrorCode != 0 || j.Generation != 1 || j.LeaderID != mid || j.Protocol == nil || *j.Protocol != "range" || len(j.Members) != 1 {
		t.Fatalf("join with id: err %v gen %d leader %q protocol %v members %d", kerr.ErrorForCode(j.ErrorCode), j.Generation, j.LeaderID, j.Protocol, len(j.Members))
	}
	gen := j.Generation

	// SyncGroup from the leader with its assignment.
	asg := kmsg.NewConsumerMemberAssignment()
	at := kmsg.NewConsumerMemberAssignmentTopic()
	at.Topic = topic
	at.Partitions = []int32{0}
	asg.Topics = append(asg.Topics, at)
	sreq := kmsg.NewPtrSyncGroupRequest()
	sreq.Version = 5
	sreq.Group = group
	sreq.Generation = gen
	sreq.MemberID = mid
	sreq.ProtocolType = kmsg.StringPtr("consumer")
	sreq.Protocol = kmsg.StringPtr("range")
	sa := kmsg.NewSyncGroupRequestGroupAssignment()
	sa.MemberID = mid
	sa.MemberAssignment = asg.AppendTo(nil)
	sreq.GroupAssignment = append(sreq.GroupAssignment, sa)
	sr, err := coord.Request(ctx, sreq)
	if err != nil {
		t.Fatal(err)
	}
	if s := sr.(*kmsg.SyncGroupResponse); s.ErrorCode != 0 || string(s.MemberAssignment) != string(asg.AppendTo(nil)) {
		t.Fatalf("sync: %v, assignment %x", kerr.ErrorForCode(s.ErrorCode), s.MemberAssignment)
	}

	hb := func(member string, g int32) error {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Version = 4
		req.Group = group
		req.MemberID = member
		req.Generation = g
		resp, err := coord.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return kerr.ErrorForCode(resp.(*kmsg.HeartbeatResponse).ErrorCode)
	}
	if err := hb(mid, gen); err != nil {
		t.Errorf("heartbeat: %v", err)
	}
	if err := hb("nobody", gen); !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("heartbeat of an unknown member: %v, want UNKNOWN_MEMBER_ID", err)
	}
	if err := hb(mid, gen+5); !errors.Is(err, kerr.IllegalGeneration) {
		t.Errorf("heartbeat with a wrong generation: %v, want ILLEGAL_GENERATION", err)
	}

	commit := func(member string, g int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 8
		req.Group = group
		req.Generation = g
		req.MemberID = member
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition = 0
		rp.Offset = 1
		rp.LeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := coord.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return kerr.ErrorForCode(resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit(mid, gen); err != nil {
		t.Errorf("commit of the member: %v", err)
	}
	if err := commit("nobody", gen); !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("commit of an unknown member: %v, want UNKNOWN_MEMBER_ID", err)
	}
	if err := commit(mid, gen+5); !errors.Is(err, kerr.IllegalGeneration) {
		t.Errorf("commit with a wrong generation: %v, want ILLEGAL_GENERATION", err)
	}
	// A simple (generation -1, no member) commit into a group that has members is refused:
	// Kafka only takes generation -1 commits for an Empty group, and otherwise validates the
	// member first (UNKNOWN_MEMBER_ID for "").
	if err := commit("", -1); !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("generation -1 commit into an active group: %v, want UNKNOWN_MEMBER_ID", err)
	}

	// ListGroups v5 by type: classic.
	lg, err := adm.ListGroupsByType(ctx, []string{"classic"})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := lg[group]; !ok || g.GroupType != "classic" {
		t.Errorf("list by type classic: %+v (present %v)", g, ok)
	}
	if lg, err := adm.ListGroupsByType(ctx, []string{"consumer"}); err != nil {
		t.Fatal(err)
	} else if _, ok := lg[group]; ok {
		t.Errorf("list by type consumer (KIP-848 groups) lists the classic group %s", group)
	}

	// LeaveGroup v3+ (batch of members): the member leaves; the group is Empty.
	lreq := kmsg.NewPtrLeaveGroupRequest()
	lreq.Version = 5
	lreq.Group = group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = mid
	lreq.Members = append(lreq.Members, lm)
	lr, err := coord.Request(ctx, lreq)
	if err != nil {
		t.Fatal(err)
	}
	l := lr.(*kmsg.LeaveGroupResponse)
	if l.ErrorCode != 0 || len(l.Members) != 1 || l.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %v %+v", kerr.ErrorForCode(l.ErrorCode), l.Members)
	}
	if err := hb(mid, gen); !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("heartbeat after leaving: %v, want UNKNOWN_MEMBER_ID", err)
	}
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if g := dg[group]; g.State != "Empty" {
		t.Errorf("state after the only member left: %q, want Empty", g.State)
	}
	// Now a simple commit (generation -1) is accepted, as Kafka does for an Empty group.
	if err := commit("", -1); err != nil {
		t.Errorf("generation -1 commit into an Empty group: %v", err)
	}
	// OffsetFetch of a group that never existed: no error, offset -1.
	fo, err := adm.FetchOffsetsForTopics(ctx, uniq(t, "never"), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fo.Lookup(topic, 0); ok && (o.Err != nil || o.At != -1) {
		t.Errorf("offset of a group that never existed: %+v", o)
	}
}

// Static membership (KIP-345, group.instance.id): a member that restarts with the same
// instance id within the session timeout gets its partitions back without a rebalance of
// the other member.
func TestStaticMembership(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	group := uniq(t, "g")
	createTopic(t, adm, topic, 4, nil)
	mk := func(instance string) (*kgo.Client, func()) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.InstanceID(instance),
			kgo.Balancers(kgo.RangeBalancer()), kgo.SessionTimeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		closeFn := func() { once.Do(cl.Close) }
		t.Cleanup(closeFn)
		return cl, closeFn
	}
	// Members join when they poll; a poller goroutine per client keeps them in.
	poll := func(cl *kgo.Client) {
		go func() {
			for {
				fs := cl.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
			}
		}()
	}
	a, closeA := mk("inst-a")
	c, _ := mk("inst-c")
	poll(a)
	poll(c)
	var before kadm.DescribedGroup
	deadline := time.Now().Add(60 * time.Second)
	for {
		dg, err := adm.DescribeGroups(ctxT(t, 10*time.Second), group)
		if err != nil {
			t.Fatal(err)
		}
		before = dg[group]
		if before.State == "Stable" && len(before.Members) == 2 && len(dg.AssignedPartitions()[topic]) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group did not become Stable with 2 members: %+v", before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range before.Members {
		if m.InstanceID == nil || (*m.InstanceID != "inst-a" && *m.InstanceID != "inst-c") {
			t.Fatalf("member %s instance id %v", m.MemberID, m.InstanceID)
		}
	}
	// kgo's Close of a static member does not send LeaveGroup: the member stays.
	closeA()
	time.Sleep(time.Second)
	dg, err := adm.DescribeGroups(ctxT(t, 10*time.Second), group)
	if err != nil {
		t.Fatal(err)
	}
	if g := dg[group]; len(g.Members) != 2 || g.State != "Stable" {
		t.Fatalf("after a static member's close: %d members, state %q (a static member stays until its session times out)", len(g.Members), g.State)
	}
	// It comes back under the same instance id: same partitions, still 2 members.
	a2, _ := mk("inst-a")
	poll(a2)
	deadline = time.Now().Add(60 * time.Second)
	for {
		dg, err = adm.DescribeGroups(ctxT(t, 10*time.Second), group)
		if err != nil {
			t.Fatal(err)
		}
		g := dg[group]
		if g.State == "Stable" && len(g.Members) == 2 && len(dg.AssignedPartitions()[topic]) == 4 {
			var ids []string
			for _, m := range g.Members {
				ids = append(ids, *m.InstanceID)
			}
			if strings.Join(ids, ",") != "inst-a,inst-c" {
				t.Fatalf("members after rejoin: %v", ids)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the static member rejoined: %+v", g)
		}
		time.Sleep(200 * time.Millisecond)
	}
	assigned := func(g kadm.DescribedGroup, inst string) string {
		for _, m := range g.Members {
			if *m.InstanceID == inst {
				ca, _ := m.Assigned.AsConsumer()
				return fmt.Sprint(ca.Topics)
			}
		}
		return ""
	}
	if x, y := assigned(before, "inst-a"), assigned(dg[group], "inst-a"); x != y {
		t.Errorf("inst-a's assignment changed across its restart: %s -> %s", x, y)
	}
}

// read_committed consumers and ListOffsets isolation 1 see everything when there are no
// transactions (last stable offset = high watermark); leader epochs are consistent across
// Metadata, fetched records, ListOffsets and OffsetForLeaderEpoch.
func TestReadCommittedAndEpochs(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, nil)
	prod := newClient(t, b)
	for i := 0; i < 3; i++ { // three batches
		var recs []*kgo.Record
		for j := 0; j < 5; j++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i*5 + j))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	epoch := td[topic].Partitions[0].LeaderEpoch
	if epoch < 0 {
		t.Fatalf("metadata leader epoch %d", epoch)
	}

	committed, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil || committed.Error() != nil {
		t.Fatal(err, committed.Error())
	}
	if o, _ := committed.Lookup(topic, 0); o.Offset != 15 {
		t.Errorf("last stable offset %d, want 15 (no transactions)", o.Offset)
	}
	ends, _ := adm.ListEndOffsets(ctx, topic)
	if o, _ := ends.Lookup(topic, 0); o.LeaderEpoch != epoch {
		t.Errorf("ListOffsets latest leader epoch %d, metadata says %d", o.LeaderEpoch, epoch)
	}

	cons := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []*kgo.Record
	for len(got) < 15 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed consumer got %d of 15", len(got))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		got = append(got, fs.Records()...)
	}
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != fmt.Sprint(i) || r.LeaderEpoch != epoch {
			t.Fatalf("read_committed record %d: offset %d value %q epoch %d (metadata epoch %d)", i, r.Offset, r.Value, r.LeaderEpoch, epoch)
		}
	}

	var req kadm.OffsetForLeaderEpochRequest
	req.Add(topic, 0, epoch)
	oe, err := adm.OffsetForLeaderEpoch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if o := oe[topic][0]; o.Err != nil || o.EndOffset != 15 || o.LeaderEpoch != epoch {
		t.Errorf("OffsetForLeaderEpoch(current epoch %d): end %d epoch %d err %v, want 15 / %d", epoch, o.EndOffset, o.LeaderEpoch, o.Err, epoch)
	}
	// A requested epoch beyond the latest one: Kafka's leader-epoch cache has no higher entry
	// and answers UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET (-1 / -1). (kadm sends
	// CurrentLeaderEpoch -1, so no fencing check is involved.)
	var req2 kadm.OffsetForLeaderEpochRequest
	req2.Add(topic, 0, epoch+10)
	oe, err = adm.OffsetForLeaderEpoch(ctx, req2)
	if err != nil {
		t.Fatal(err)
	}
	if o := oe[topic][0]; o.Err != nil || o.EndOffset != -1 || o.LeaderEpoch != -1 {
		t.Errorf("OffsetForLeaderEpoch(epoch %d beyond the latest %d): end %d epoch %d err %v, want -1 / -1 (UNDEFINED_EPOCH_OFFSET)", epoch+10, epoch, o.EndOffset, o.LeaderEpoch, o.Err)
	}
}

// CurrentLeaderEpoch checks (KIP-320), which kgo relies on to detect stale metadata: an
// epoch newer than the leader's is UNKNOWN_LEADER_EPOCH for Fetch, ListOffsets and
// OffsetForLeaderEpoch; the current one is served.
func TestCurrentLeaderEpochChecks(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	ctx := ctxT(t, 60*time.Second)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, nil)
	prod := newClient(t, b)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	epoch := td[topic].Partitions[0].LeaderEpoch
	br := newClient(t, b).Broker(0)

	fetch := func(cur int32) (int16, int) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MaxBytes = 1 << 20
		req.SessionEpoch = -1 // no fetch session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = 0
		rp.CurrentLeaderEpoch = cur
		rp.FetchOffset = 0
		rp.LastFetchedEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := br.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		fr := resp.(*kmsg.FetchResponse)
		if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch response shape: %+v", fr)
		}
		p := fr.Topics[0].Partitions[0]
		return p.ErrorCode, len(p.RecordBatches)
	}
	if code, n := fetch(epoch); code != 0 || n == 0 {
		t.Errorf("fetch with the current leader epoch %d: %v, %d bytes", epoch, kerr.ErrorForCode(code), n)
	}
	if code, _ := fetch(-1); code != 0 {
		t.Errorf("fetch without a leader epoch: %v", kerr.ErrorForCode(code))
	}
	if code, n := fetch(epoch + 1); code != kerr.UnknownLeaderEpoch.Code || n != 0 {
		t.Errorf("fetch with leader epoch %d (leader has %d): %v with %d bytes, want UNKNOWN_LEADER_EPOCH and no records", epoch+1, epoch, kerr.ErrorForCode(code), n)
	}

	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 7
	lo.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Partition = 0
	lp.CurrentLeaderEpoch = epoch + 1
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	resp, err := br.Request(ctx, lo)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownLeaderEpoch.Code {
		t.Errorf("list offsets with leader epoch %d (leader has %d): %v, want UNKNOWN_LEADER_EPOCH", epoch+1, epoch, kerr.ErrorForCode(code))
	}

	oe := kmsg.NewPtrOffsetForLeaderEpochRequest()
	oe.Version = 4
	oe.ReplicaID = -1
	ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
	ot.Topic = topic
	op := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	op.Partition = 0
	op.CurrentLeaderEpoch = epoch + 1
	op.LeaderEpoch = epoch
	ot.Partitions = append(ot.Partitions, op)
	oe.Topics = append(oe.Topics, ot)
	resp, err = br.Request(ctx, oe)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownLeaderEpoch.Code {
		t.Errorf("OffsetForLeaderEpoch with current epoch %d (leader has %d): %v, want UNKNOWN_LEADER_EPOCH", epoch+1, epoch, kerr.ErrorForCode(code))
	}
}

// Session timeouts: below group.min.session.timeout.ms (Kafka's default 6000) JoinGroup is
// refused with INVALID_SESSION_TIMEOUT; a member that stops heartbeating is removed once its
// session times out, and the group becomes Empty.
func TestGroupSessionTimeout(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	group := uniq(t, "g")
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, nil)
	br := newClient(t, b).Broker(0)
	ctx := ctxT(t, 90*time.Second)
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{topic}
	join := func(member string, session int32) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 9
		req.Group = group
		req.SessionTimeoutMillis = session
		req.RebalanceTimeoutMillis = 10000
		req.MemberID = member
		req.ProtocolType = "consumer"
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name = "range"
		p.Metadata = meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		resp, err := br.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.JoinGroupResponse)
	}
	if j := join("", 1000); j.ErrorCode != kerr.InvalidSessionTimeout.Code {
		t.Errorf("join with a 1000 ms session: %v, want INVALID_SESSION_TIMEOUT", kerr.ErrorForCode(j.ErrorCode))
	}
	j := join("", 6000)
	if j.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %v", kerr.ErrorForCode(j.ErrorCode))
	}
	j = join(j.MemberID, 6000)
	if j.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(j.ErrorCode))
	}
	// No SyncGroup, no heartbeat: the member must be gone after ~6 s (give it 20).
	start := time.Now()
	for {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if g := dg[group]; g.State == "Empty" && len(g.Members) == 0 {
			if el := time.Since(start); el < 4*time.Second {
				t.Errorf("member removed after %v, before its 6 s session timeout", el)
			}
			return
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("member still in the group 20 s after its last request (6 s session): %+v", dg[group])
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// CreateTopics with a config Kafka does not know: INVALID_CONFIG, nothing created.
func TestCreateTopicUnknownConfig(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	_, err := adm.CreateTopic(ctxT(t, 30*time.Second), 1, 1, map[string]*string{"no.such.config": sp("1")}, topic)
	if !errors.Is(err, kerr.InvalidConfig) {
		t.Errorf("create with no.such.config: %v, want INVALID_CONFIG", err)
	}
	if td, _ := adm.ListTopics(ctxT(t, 30*time.Second)); td.Has(topic) {
		t.Errorf("topic created despite the invalid config")
	}
}
