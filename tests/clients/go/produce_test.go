package shoaltest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// want is what a produced record must read back as.
type want struct {
	key, value []byte
	headers    []kgo.RecordHeader
	ts         time.Time
	partition  int32
	offset     int64
}

func mkRecord(topic string, i int, rnd *rand.Rand) *kgo.Record {
	var value []byte
	switch i % 5 {
	case 0:
		value = nil // null value
	case 1:
		value = []byte{} // empty value
	case 2:
		value = make([]byte, 30_000) // large, compressible
		for j := range value {
			value[j] = byte('a' + j%7)
		}
	default:
		value = make([]byte, 1+rnd.IntN(300))
		for j := range value {
			value[j] = byte(rnd.Uint32())
		}
	}
	var key []byte
	if i%7 != 3 { // some null keys
		key = []byte(fmt.Sprintf("key-%06d", i))
	}
	r := &kgo.Record{
		Topic: topic,
		Key:   key,
		Value: value,
		// Explicit CreateTime timestamps, millisecond precision, not monotonic.
		Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i*1000) - int64(i%3)*500),
	}
	if i%2 == 0 {
		r.Headers = []kgo.RecordHeader{
			{Key: "h1", Value: []byte(fmt.Sprint(i))},
			{Key: "dup", Value: []byte("a")},
			{Key: "dup", Value: []byte("b")}, // duplicate keys keep their order
			{Key: "empty", Value: []byte{}},
		}
	}
	return r
}

func wantOf(r *kgo.Record) want {
	return want{key: r.Key, value: r.Value, headers: r.Headers, ts: r.Timestamp, partition: r.Partition, offset: r.Offset}
}

func sameBytes(a, b []byte) bool {
	// nil and empty are different on the wire (null vs empty); kgo keeps that distinction.
	if (a == nil) != (b == nil) {
		return false
	}
	return bytes.Equal(a, b)
}

func checkRecord(t *testing.T, got *kgo.Record, w want) {
	t.Helper()
	if got.Partition != w.partition || got.Offset != w.offset {
		t.Fatalf("record at p%d o%d, want p%d o%d", got.Partition, got.Offset, w.partition, w.offset)
	}
	if !sameBytes(got.Key, w.key) {
		t.Errorf("p%d o%d: key %q (nil=%v), want %q (nil=%v)", got.Partition, got.Offset, got.Key, got.Key == nil, w.key, w.key == nil)
	}
	if !sameBytes(got.Value, w.value) {
		t.Errorf("p%d o%d: value of %d bytes (nil=%v), want %d bytes (nil=%v)", got.Partition, got.Offset, len(got.Value), got.Value == nil, len(w.value), w.value == nil)
	}
	if len(got.Headers) != len(w.headers) {
		t.Errorf("p%d o%d: %d headers, want %d", got.Partition, got.Offset, len(got.Headers), len(w.headers))
	} else {
		for i := range got.Headers {
			if got.Headers[i].Key != w.headers[i].Key || !bytes.Equal(got.Headers[i].Value, w.headers[i].Value) {
				t.Errorf("p%d o%d: header %d = %v, want %v", got.Partition, got.Offset, i, got.Headers[i], w.headers[i])
			}
		}
	}
	if !got.Timestamp.Equal(w.ts) {
		t.Errorf("p%d o%d: timestamp %v, want %v", got.Partition, got.Offset, got.Timestamp, w.ts)
	}
	if got.Attrs.TimestampType() != 0 {
		t.Errorf("p%d o%d: timestamp type %d, want 0 (CreateTime)", got.Partition, got.Offset, got.Attrs.TimestampType())
	}
}

// consumeExactly reads topic's partitions from offset 0 until it holds n records, fails on
// fetch errors, then waits a little longer and fails if anything extra arrives.
func consumeExactly(t *testing.T, b *Broker, topic string, partitions int32, n int) []*kgo.Record {
	t.Helper()
	offs := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		offs[p] = kgo.NewOffset().At(0)
	}
	cl := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchMaxWait(500*time.Millisecond))
	ctx := ctxT(t, 60*time.Second)
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(got), n)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		got = append(got, fs.Records()...)
	}
	ctx2, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	extra := cl.PollFetches(ctx2).Records()
	if len(got)+len(extra) != n {
		t.Fatalf("consumed %d records, produced %d", len(got)+len(extra), n)
	}
	return got
}

// checkReadBack consumes everything and compares it record by record with what was acked.
func checkReadBack(t *testing.T, b *Broker, topic string, partitions int32, acked []want) {
	t.Helper()
	got := consumeExactly(t, b, topic, partitions, len(acked))
	byPO := map[[2]int64]want{}
	for _, w := range acked {
		k := [2]int64{int64(w.partition), w.offset}
		if _, dup := byPO[k]; dup {
			t.Fatalf("offset %d of partition %d acked twice", w.offset, w.partition)
		}
		byPO[k] = w
	}
	last := map[int32]int64{}
	for _, r := range got {
		w, ok := byPO[[2]int64{int64(r.Partition), r.Offset}]
		if !ok {
			t.Fatalf("consumed p%d o%d, which no produce acked", r.Partition, r.Offset)
		}
		if prev, ok := last[r.Partition]; ok && r.Offset != prev+1 {
			t.Fatalf("p%d: offset %d after %d (not dense/in order)", r.Partition, r.Offset, prev)
		}
		last[r.Partition] = r.Offset
		checkRecord(t, r, w)
	}
}

// checkDense fails unless each partition's acked offsets are exactly 0..n-1.
// produceRoundRobinSync produces n records one at a time, record i to partition i%partitions
// (the client needs kgo.ManualPartitioner), and checks each is acked at the next offset of
// its partition.
func produceRoundRobinSync(t *testing.T, cl *kgo.Client, topic string, partitions int32, n int, rnd *rand.Rand) []want {
	t.Helper()
	var acked []want
	for i := 0; i < n; i++ {
		r := mkRecord(topic, i, rnd)
		r.Partition = int32(i) % partitions
		res := cl.ProduceSync(ctxT(t, 30*time.Second), r)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		got, _ := res.First()
		if got.Partition != r.Partition || got.Offset != int64(int32(i)/partitions) {
			t.Fatalf("record %d acked at p%d o%d, want p%d o%d", i, got.Partition, got.Offset, r.Partition, int32(i)/partitions)
		}
		acked = append(acked, wantOf(got))
	}
	return acked
}

func checkDense(t *testing.T, acked []want) {
	t.Helper()
	per := map[int32][]int64{}
	for _, w := range acked {
		per[w.partition] = append(per[w.partition], w.offset)
	}
	for p, os := range per {
		sort.Slice(os, func(i, j int) bool { return os[i] < os[j] })
		for i, o := range os {
			if o != int64(i) {
				t.Fatalf("partition %d: acked offsets %v... not dense from 0 (index %d has %d)", p, os[:min(len(os), 10)], i, o)
			}
		}
	}
}

func TestProduceSync(t *testing.T) {
	b := broker(t)
	cases := []struct {
		name string
		opts []kgo.Opt
	}{
		// kgo's default: idempotent, acks=all (InitProducerId, sequence numbers).
		{"idempotent-default", nil},
		{"acks-all-nonidempotent", []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite()}},
		{"acks-leader", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniq(t, "t")
			createTopic(t, newAdmin(t, b), topic, 3, nil)
			cl := newClient(t, b, append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, tc.opts...)...)
			acked := produceRoundRobinSync(t, cl, topic, 3, 60, rand.New(rand.NewPCG(1, 2)))
			checkDense(t, acked)
			checkReadBack(t, b, topic, 3, acked)
		})
	}
}

func TestProduceManualPartitions(t *testing.T) {
	b := broker(t)
	topic := uniq(t, "t")
	createTopic(t, newAdmin(t, b), topic, 4, nil)
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	acked := produceRoundRobinSync(t, cl, topic, 4, 40, rand.New(rand.NewPCG(3, 4)))
	checkReadBack(t, b, topic, 4, acked)
	// Out-of-range partition: kgo refuses it client-side once metadata says 4 partitions.
	res := cl.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: topic, Partition: 9, Value: []byte("x")})
	if res.FirstErr() == nil {
		t.Fatalf("produce to partition 9 of a 4-partition topic succeeded")
	}
}

// Async produce: many records in flight, acked offsets follow produce order per partition.
func TestProduceAsyncOrdering(t *testing.T) {
	b := broker(t)
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"idempotent", nil},
		{"acks-leader", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniq(t, "t")
			createTopic(t, newAdmin(t, b), topic, 3, nil)
			opts := append([]kgo.Opt{
				kgo.ProducerLinger(5 * time.Millisecond),
				kgo.ProducerBatchMaxBytes(16 << 10), // many batches, several requests in flight
				kgo.RecordPartitioner(kgo.ManualPartitioner()),
			}, tc.opts...)
			cl := newClient(t, b, opts...)
			const n = 6000
			var (
				mu    sync.Mutex
				acked = make([]want, n)
				errs  []error
				wg    sync.WaitGroup
			)
			for i := 0; i < n; i++ {
				i := i
				wg.Add(1)
				r := &kgo.Record{Topic: topic, Partition: int32(i % 3), Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("value-%d", i)), Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))}
				cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
					defer wg.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, fmt.Errorf("record %d: %w", i, err))
						return
					}
					acked[i] = wantOf(r)
				})
			}
			if err := cl.Flush(ctxT(t, 60*time.Second)); err != nil {
				t.Fatalf("flush: %v", err)
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d produce errors, first: %v", len(errs), errs[0])
			}
			// Per partition, the i-th record produced got offset i.
			next := map[int32]int64{}
			for i, w := range acked {
				if w.partition != int32(i%3) || w.offset != next[w.partition] {
					t.Fatalf("record %d acked at p%d o%d, want p%d o%d", i, w.partition, w.offset, i%3, next[int32(i%3)])
				}
				next[w.partition]++
			}
			checkReadBack(t, b, topic, 3, acked)
		})
	}
}

func TestProduceCompression(t *testing.T) {
	b := broker(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := uniq(t, "t")
			createTopic(t, newAdmin(t, b), topic, 2, nil)
			var batches struct {
				sync.Mutex
				n, compressed int
			}
			cl := newClient(t, b,
				kgo.ProducerBatchCompression(c.codec),
				kgo.ProducerLinger(50*time.Millisecond),
				kgo.RecordPartitioner(kgo.ManualPartitioner()),
			)
			rnd := rand.New(rand.NewPCG(5, 6))
			var recs []*kgo.Record
			for i := 0; i < 200; i++ {
				r := mkRecord(topic, i, rnd)
				r.Partition = int32(i % 2)
				recs = append(recs, r)
			}
			res := cl.ProduceSync(ctxT(t, 60*time.Second), recs...)
			if err := res.FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			var acked []want
			for _, pr := range res {
				acked = append(acked, wantOf(pr.Record))
			}
			checkDense(t, acked)
			// Read back, and check the batches the broker serves are multi-record and carry
			// the codec we produced with (the topic's compression.type is "producer").
			cons := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0), 1: kgo.NewOffset().At(0)}}),
				kgo.WithHooks(batchHook{f: func(m kgo.FetchBatchMetrics) {
					batches.Lock()
					batches.n++
					if m.CompressionType != 0 {
						batches.compressed++
					}
					if m.CompressionType != codecID(c.name) {
						t.Errorf("fetched a batch with codec %d, produced with %s", m.CompressionType, c.name)
					}
					batches.Unlock()
				}}))
			checkReadBack(t, b, topic, 2, acked)
			ctx := ctxT(t, 30*time.Second)
			seen := 0
			for seen < len(acked) {
				fs := cons.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("hooked consumer read %d of %d", seen, len(acked))
				}
				seen += len(fs.Records())
			}
			batches.Lock()
			defer batches.Unlock()
			if batches.n == 0 || batches.n >= len(acked) {
				t.Errorf("%d batches for %d records: expected multi-record batches", batches.n, len(acked))
			}
		})
	}
}

func codecID(name string) uint8 {
	return map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[name]
}

type batchHook struct{ f func(kgo.FetchBatchMetrics) }

func (h batchHook) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	h.f(m)
}

// acks=0: nothing is acknowledged, but everything must still land, densely and in order.
func TestProduceNoAck(t *testing.T) {
	b := broker(t)
	topic := uniq(t, "t")
	createTopic(t, newAdmin(t, b), topic, 1, nil)
	cl := newClient(t, b, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	var recs []*kgo.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(ctxT(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := newAdmin(t, b)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(ctxT(t, 10*time.Second), topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := ends.Lookup(topic, 0)
		if o.Offset == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("end offset %d after acks=0 produce of 300 records", o.Offset)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := consumeExactly(t, b, topic, 1, 300)
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != fmt.Sprint(i) {
			t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
}

// The idempotent producer registers with InitProducerId; DescribeProducers must show it with
// the last sequence it wrote.
func TestIdempotentProducerState(t *testing.T) {
	b := broker(t)
	topic := uniq(t, "t")
	adm := newAdmin(t, b)
	createTopic(t, adm, topic, 1, nil)
	cl := newClient(t, b)
	for i := 0; i < 10; i++ {
		if err := cl.ProduceSync(ctxT(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	id, epoch, err := cl.ProducerID(ctxT(t, 10*time.Second))
	if err != nil || id < 0 {
		t.Fatalf("idempotent client has no producer id (%d, epoch %d)", id, epoch)
	}
	var ds kadm.DescribedProducersTopics
	ds, err = adm.DescribeProducers(ctxT(t, 30*time.Second), kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	ds.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			t.Errorf("describe producers p%d: %v", p.Partition, p.Err)
		}
		for _, pr := range p.ActiveProducers {
			if pr.ProducerID == id {
				found = true
				if pr.ProducerEpoch != epoch {
					t.Errorf("producer epoch %d, client has %d", pr.ProducerEpoch, epoch)
				}
				if pr.LastSequence != 9 {
					t.Errorf("last sequence %d, want 9 (10 single-record batches)", pr.LastSequence)
				}
			}
		}
	})
	if !found {
		t.Fatalf("producer %d not in DescribeProducers: %+v", id, ds)
	}
}
