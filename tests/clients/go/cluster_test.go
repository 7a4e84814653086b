package shoaltest

// franz-go on a 3-node Shoal cluster on loopback (seeds, one rpc port each): kadm via one node
// sees three brokers and spreads a topic over them; a kgo producer seeded with another node
// and a group consumer seeded with the third (cooperative-sticky) write, read and commit
// every partition.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func startCluster(t *testing.T) []*Broker {
	t.Helper()
	var rpc []int
	for i := 0; i < 3; i++ {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		rpc = append(rpc, p)
	}
	var seeds []string
	for i, p := range rpc {
		seeds = append(seeds, fmt.Sprintf("%d@127.0.0.1:%d", i, p))
	}
	var nodes []*Broker
	for i := 0; i < 3; i++ {
		b, err := launchWith([]string{
			fmt.Sprintf("SHOAL_NODE_ID=%d", i),
			"SHOAL_SEEDS=" + strings.Join(seeds, ","),
			fmt.Sprintf("SHOAL_RPC_ADDR=127.0.0.1:%d", rpc[i]),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, b)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- shoal stderr tail (%s) ---\n%s", b.Addr, b.Tail(40))
			}
			b.Stop()
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for unfenced(nodes[0]) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no cluster of three unfenced brokers within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nodes
}

// unfenced counts the unfenced brokers in a node's /v1/cluster.
func unfenced(b *Broker) int {
	resp, err := http.Get("http://" + b.AdminAddr + "/v1/cluster")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Count(string(body), `"fenced":false`)
}

func TestClusterFranzGoUsesEveryNode(t *testing.T) {
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(nodes[0].Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(meta.Brokers); got != 3 {
		t.Fatalf("%d brokers in Metadata, want 3: %v", got, meta.Brokers)
	}
	const topic = "franz-cluster"
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]bool{}
	for _, p := range details[topic].Partitions {
		leaders[p.Leader] = true
	}
	if len(leaders) != 3 {
		t.Fatalf("partitions not spread over the three nodes: %v", details[topic].Partitions)
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(nodes[1].Addr),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	acked := map[string]int64{}
	for i := 0; i < 300; i++ {
		r := &kgo.Record{Topic: topic, Partition: int32(i % 6), Value: []byte(fmt.Sprintf("v%d", i))}
		if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		acked[string(r.Value)] = int64(r.Partition)<<32 | r.Offset
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(nodes[2].Addr),
		kgo.ConsumerGroup("franz-cluster-group"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	read := map[string]int64{}
	for len(read) < 300 && ctx.Err() == nil {
		fetches := consumer.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			read[string(r.Value)] = int64(r.Partition)<<32 | r.Offset
		})
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	if len(read) != len(acked) {
		t.Fatalf("read %d records, acked %d", len(read), len(acked))
	}
	for v, at := range acked {
		if read[v] != at {
			t.Fatalf("%s acked at %x, read at %x", v, at, read[v])
		}
	}
	committed, err := adm.FetchOffsets(ctx, "franz-cluster-group")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 6; p++ {
		o, ok := committed.Lookup(topic, p)
		if !ok || o.At != 50 {
			t.Fatalf("committed offset of partition %d: %+v", p, o)
		}
	}
}
