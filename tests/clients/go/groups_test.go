package shoaltest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// member is one consumer-group member that polls in a goroutine, records what it consumed,
// commits after each poll (synchronously, with rebalances blocked while it processes) and
// tracks its assignment through the rebalance callbacks.
type member struct {
	name string
	cl   *kgo.Client

	mu       sync.Mutex
	owned    map[int32]bool
	consumed map[int32][]int64 // partition -> offsets, in consumption order
	errs     []error

	cancel context.CancelFunc
	done   chan struct{}
}

func startMember(t *testing.T, b *Broker, name, group, topic string, bal kgo.GroupBalancer) *member {
	t.Helper()
	m := &member{name: name, owned: map[int32]bool{}, consumed: map[int32][]int64{}, done: make(chan struct{})}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(bal),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(300*time.Millisecond),
		kgo.SessionTimeout(20*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.owned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range r[topic] {
				delete(m.owned, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.errs = append(m.errs, fmt.Errorf("%s lost partitions %v", name, r))
			for _, p := range r[topic] {
				delete(m.owned, p)
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				cl.AllowRebalance()
				return
			}
			m.mu.Lock()
			fs.EachError(func(tp string, p int32, err error) {
				m.errs = append(m.errs, fmt.Errorf("%s fetch %s/%d: %w", name, tp, p, err))
			})
			fs.EachRecord(func(r *kgo.Record) {
				if !m.owned[r.Partition] {
					m.errs = append(m.errs, fmt.Errorf("%s got p%d o%d without owning p%d (owns %v)", name, r.Partition, r.Offset, r.Partition, m.owned))
				}
				m.consumed[r.Partition] = append(m.consumed[r.Partition], r.Offset)
			})
			m.mu.Unlock()
			if len(fs.Records()) > 0 {
				cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
				if err := cl.CommitUncommittedOffsets(cctx); err != nil && ctx.Err() == nil {
					m.mu.Lock()
					m.errs = append(m.errs, fmt.Errorf("%s commit: %w", name, err))
					m.mu.Unlock()
				}
				ccancel()
			}
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(m.close)
	return m
}

// close stops polling and leaves the group (Close sends LeaveGroup).
func (m *member) close() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cl.Close()
	m.cancel = nil
}

func (m *member) snapshot() (owned []int32, consumed map[int32][]int64, errs []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.owned {
		owned = append(owned, p)
	}
	sort.Slice(owned, func(i, j int) bool { return owned[i] < owned[j] })
	consumed = map[int32][]int64{}
	for p, os := range m.consumed {
		consumed[p] = append([]int64(nil), os...)
	}
	return owned, consumed, append([]error(nil), m.errs...)
}

func countConsumed(c map[int32][]int64) int {
	n := 0
	for _, os := range c {
		n += len(os)
	}
	return n
}

func produceN(t *testing.T, cl *kgo.Client, topic string, partitions int32, perPartition int, tag string) {
	t.Helper()
	var recs []*kgo.Record
	for i := 0; i < perPartition; i++ {
		for p := int32(0); p < partitions; p++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s-%d-%d", tag, p, i))})
		}
	}
	if err := cl.ProduceSync(ctxT(t, 60*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestGroupBalancers: for each balancer kgo offers, two members of one group split the
// partitions without overlap and consume each record exactly once; their commits are
// stored; when one member leaves, the other takes over its partitions from the committed
// offsets (no record is consumed again, none is skipped); the group's committed offsets end
// at the log end.
func TestGroupBalancers(t *testing.T) {
	b := broker(t)
	balancers := []struct {
		name     string
		protocol string
		bal      kgo.GroupBalancer
	}{
		{"range", "range", kgo.RangeBalancer()},
		{"roundrobin", "roundrobin", kgo.RoundRobinBalancer()},
		{"sticky", "sticky", kgo.StickyBalancer()},
		{"cooperative-sticky", "cooperative-sticky", kgo.CooperativeStickyBalancer()},
	}
	for _, bc := range balancers {
		t.Run(bc.name, func(t *testing.T) {
			const parts = 6
			const per = 50
			topic := uniq(t, "t")
			group := uniq(t, "g")
			adm := newAdmin(t, b)
			createTopic(t, adm, topic, parts, nil)
			prod := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))

			m1 := startMember(t, b, "m1", group, topic, bc.bal)
			m2 := startMember(t, b, "m2", group, topic, bc.bal)

			// 1. Both members get a share: disjoint, non-empty, covering all partitions.
			var o1, o2 []int32
			deadline := time.Now().Add(60 * time.Second)
			for {
				o1, _, _ = m1.snapshot()
				o2, _, _ = m2.snapshot()
				if len(o1) > 0 && len(o2) > 0 && len(o1)+len(o2) == parts {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("assignment did not settle in 60s: m1 %v, m2 %v", o1, o2)
				}
				time.Sleep(100 * time.Millisecond)
			}
			seen := map[int32]string{}
			for _, p := range o1 {
				seen[p] = "m1"
			}
			for _, p := range o2 {
				if seen[p] != "" {
					t.Fatalf("partition %d owned by both members (m1 %v, m2 %v)", p, o1, o2)
				}
				seen[p] = "m2"
			}
			if len(seen) != parts {
				t.Fatalf("owned partitions %v + %v do not cover %d partitions", o1, o2, parts)
			}
			t.Logf("%s: m1 owns %v, m2 owns %v", bc.name, o1, o2)

			// DescribeGroups while both are in: Stable, two members, the balancer's protocol,
			// and assignments matching what the members were told.
			dg, err := adm.DescribeGroups(ctxT(t, 30*time.Second), group)
			if err != nil {
				t.Fatal(err)
			}
			g := dg[group]
			if g.Err != nil || g.State != "Stable" || g.Protocol != bc.protocol || g.ProtocolType != "consumer" || len(g.Members) != 2 {
				t.Fatalf("describe group: err %v state %q protocol %q type %q members %d", g.Err, g.State, g.Protocol, g.ProtocolType, len(g.Members))
			}
			for _, mem := range g.Members {
				ca, ok := mem.Assigned.AsConsumer()
				if !ok {
					t.Fatalf("member %s assignment not a consumer assignment", mem.MemberID)
				}
				var ps []int32
				for _, tp := range ca.Topics {
					ps = append(ps, tp.Partitions...)
				}
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				if fmt.Sprint(ps) != fmt.Sprint(o1) && fmt.Sprint(ps) != fmt.Sprint(o2) {
					t.Fatalf("described assignment %v matches neither member (%v, %v)", ps, o1, o2)
				}
			}

			// 2. Records produced now are consumed once each, by the owner of their partition.
			produceN(t, prod, topic, parts, per, "a")
			deadline = time.Now().Add(60 * time.Second)
			for {
				_, c1, e1 := m1.snapshot()
				_, c2, e2 := m2.snapshot()
				if len(e1)+len(e2) > 0 {
					t.Fatalf("member errors: %v %v", e1, e2)
				}
				if countConsumed(c1)+countConsumed(c2) >= parts*per {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("consumed %d+%d of %d", countConsumed(c1), countConsumed(c2), parts*per)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond) // let commits of the last polls land
			_, c1, _ := m1.snapshot()
			_, c2, _ := m2.snapshot()
			for p := int32(0); p < parts; p++ {
				var got []int64
				if seen[p] == "m1" {
					got = c1[p]
					if len(c2[p]) > 0 {
						t.Fatalf("m2 consumed p%d owned by m1", p)
					}
				} else {
					got = c2[p]
					if len(c1[p]) > 0 {
						t.Fatalf("m1 consumed p%d owned by m2", p)
					}
				}
				for i, o := range got {
					if o != int64(i) {
						t.Fatalf("p%d: consumed offsets %v, want 0..%d once each", p, got, per-1)
					}
				}
				if len(got) != per {
					t.Fatalf("p%d: consumed %d records, want %d", p, len(got), per)
				}
			}
			// The commits are stored: OffsetFetch gives the next offset to read for each.
			waitCommitted(t, adm, group, topic, parts, per)

			// 3. m2 leaves; m1 takes all partitions over and resumes at the committed offsets.
			m2.close()
			deadline = time.Now().Add(60 * time.Second)
			for {
				o1, _, _ = m1.snapshot()
				if len(o1) == parts {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("m1 owns %v 60s after m2 left", o1)
				}
				time.Sleep(100 * time.Millisecond)
			}
			_, before, _ := m1.snapshot()
			produceN(t, prod, topic, parts, per, "b")
			deadline = time.Now().Add(60 * time.Second)
			for {
				_, c, e := m1.snapshot()
				if len(e) > 0 {
					t.Fatalf("m1 errors: %v", e)
				}
				if countConsumed(c)-countConsumed(before) >= parts*per {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after takeover m1 consumed %d of %d new records", countConsumed(c)-countConsumed(before), parts*per)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			_, after, _ := m1.snapshot()
			for p := int32(0); p < parts; p++ {
				newOffs := after[p][len(before[p]):]
				for i, o := range newOffs {
					if o != int64(per+i) {
						t.Fatalf("p%d (was %s's): after takeover m1 consumed %v..., want %d..%d once each (resume at the committed offset %d)",
							p, seen[p], newOffs[:min(len(newOffs), 5)], per, 2*per-1, per)
					}
				}
				if len(newOffs) != per {
					t.Fatalf("p%d: after takeover %d records, want %d", p, len(newOffs), per)
				}
			}
			waitCommitted(t, adm, group, topic, parts, 2*per)

			// 4. Last member leaves: the group is Empty and keeps its offsets.
			m1.close()
			dg, err = adm.DescribeGroups(ctxT(t, 30*time.Second), group)
			if err != nil {
				t.Fatal(err)
			}
			if g := dg[group]; g.State != "Empty" || len(g.Members) != 0 {
				t.Fatalf("after both left: state %q, %d members", g.State, len(g.Members))
			}
			waitCommitted(t, adm, group, topic, parts, 2*per)
		})
	}
}

func waitCommitted(t *testing.T, adm *kadm.Client, group, topic string, parts int32, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		offs, err := adm.FetchOffsets(ctxT(t, 15*time.Second), group)
		if err != nil {
			t.Fatal(err)
		}
		var bad []string
		for p := int32(0); p < parts; p++ {
			o, ok := offs.Lookup(topic, p)
			if !ok || o.Err != nil || o.At != want {
				bad = append(bad, fmt.Sprintf("p%d=%v(ok=%v err=%v)", p, o.At, ok, o.Err))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets of %s, want %d everywhere: %v", group, want, bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
