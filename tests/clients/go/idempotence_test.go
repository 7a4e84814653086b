package shoaltest

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawBatch encodes a v2 record batch of n small records with the given producer id, epoch
// and base sequence (uncompressed, CreateTime).
func rawBatch(pid int64, epoch int16, seq int32, n int, tag byte) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		var body []byte
		body = append(body, 0)                     // attributes
		body = binary.AppendVarint(body, int64(i)) // timestamp delta
		body = binary.AppendVarint(body, int64(i)) // offset delta
		body = binary.AppendVarint(body, -1)       // null key
		body = binary.AppendVarint(body, 2)        // value length
		body = append(body, tag, byte(i))          // value
		body = binary.AppendVarint(body, 0)        // no headers
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(recs))
	b = binary.BigEndian.AppendUint64(b, 0)                      // base offset
	b = binary.BigEndian.AppendUint32(b, 0)                      // length, patched below
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)             // partition leader epoch -1
	b = append(b, 2)                                             // magic
	b = binary.BigEndian.AppendUint32(b, 0)                      // crc, patched below
	b = binary.BigEndian.AppendUint16(b, 0)                      // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(n-1))            // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))            // first timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(now+int64(n-1))) // max timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// Idempotent produce, request by request (Produce v9, acks=-1), against Kafka's rules: a
// retried batch (same producer, epoch and sequence as one of the last five) is answered
// with its original offsets and not written again; a gap in the sequence is
// OUT_OF_ORDER_SEQUENCE_NUMBER; a bumped epoch must restart at sequence 0; the old epoch
// is then fenced (INVALID_PRODUCER_EPOCH).
func TestIdempotentSequenceRules(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "t")
	createTopic(t, adm, topic, 1, nil)
	br := newClient(t, b).Broker(0)
	ctx := ctxT(t, 60*time.Second)

	ipr, err := br.Request(ctx, kmsg.NewPtrInitProducerIDRequest())
	if err != nil {
		t.Fatal(err)
	}
	ip := ipr.(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID < 0 {
		t.Fatalf("InitProducerId: %v pid %d", kerr.ErrorForCode(ip.ErrorCode), ip.ProducerID)
	}
	pid, epoch := ip.ProducerID, ip.ProducerEpoch

	produce := func(batch []byte) (error, int64) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9
		req.Acks = -1
		req.TimeoutMillis = 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = 0
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := br.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		return kerr.ErrorForCode(p.ErrorCode), p.BaseOffset
	}
	end := func() int64 {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := ends.Lookup(topic, 0)
		return o.Offset
	}

	if err, off := produce(rawBatch(pid, epoch, 0, 3, 'a')); err != nil || off != 0 {
		t.Fatalf("seq 0..2: %v at %d", err, off)
	}
	if err, off := produce(rawBatch(pid, epoch, 3, 2, 'b')); err != nil || off != 3 {
		t.Fatalf("seq 3..4: %v at %d", err, off)
	}
	// Retry of the first batch: Kafka finds it among the producer's last 5 batches and
	// answers success with the original base offset, writing nothing.
	if err, off := produce(rawBatch(pid, epoch, 0, 3, 'a')); err != nil || off != 0 {
		t.Errorf("duplicate of seq 0..2: %v at %d, want no error at base offset 0", err, off)
	}
	if e := end(); e != 5 {
		t.Errorf("end offset %d after a duplicate, want 5 (nothing written twice)", e)
	}
	// Gap: next expected is 5.
	if err, _ := produce(rawBatch(pid, epoch, 7, 1, 'c')); !errors.Is(err, kerr.OutOfOrderSequenceNumber) {
		t.Errorf("seq 7 when 5 is expected: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", err)
	}
	if err, off := produce(rawBatch(pid, epoch, 5, 1, 'd')); err != nil || off != 5 {
		t.Errorf("seq 5: %v at %d, want offset 5", err, off)
	}
	// Bumped epoch: must start at 0.
	if err, _ := produce(rawBatch(pid, epoch+1, 6, 1, 'e')); !errors.Is(err, kerr.OutOfOrderSequenceNumber) {
		t.Errorf("epoch+1 at seq 6: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", err)
	}
	if err, off := produce(rawBatch(pid, epoch+1, 0, 1, 'f')); err != nil || off != 6 {
		t.Errorf("epoch+1 at seq 0: %v at %d, want offset 6", err, off)
	}
	// The old epoch is fenced now.
	if err, _ := produce(rawBatch(pid, epoch, 6, 1, 'g')); !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Errorf("old epoch after the bump: %v, want INVALID_PRODUCER_EPOCH", err)
	}
	if e := end(); e != 7 {
		t.Errorf("end offset %d, want 7", e)
	}
	// DescribeProducers: the producer with its latest epoch and last sequence 0.
	dreq := kmsg.NewPtrDescribeProducersRequest()
	dt := kmsg.NewDescribeProducersRequestTopic()
	dt.Topic = topic
	dt.Partitions = []int32{0}
	dreq.Topics = append(dreq.Topics, dt)
	dr, err := br.Request(ctx, dreq)
	if err != nil {
		t.Fatal(err)
	}
	dp := dr.(*kmsg.DescribeProducersResponse).Topics[0].Partitions[0]
	var found bool
	for _, p := range dp.ActiveProducers {
		if p.ProducerID == pid {
			found = true
			if int16(p.ProducerEpoch) != epoch+1 || p.LastSequence != 0 {
				t.Errorf("DescribeProducers: epoch %d last sequence %d, want %d / 0", p.ProducerEpoch, p.LastSequence, epoch+1)
			}
		}
	}
	if !found {
		t.Errorf("producer %d not described: %+v", pid, dp)
	}
}
