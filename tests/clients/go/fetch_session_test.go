package shoaltest

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchBytes counts the bytes of Fetch responses a client reads (a kgo HookBrokerRead).
type fetchBytes struct{ bytes, responses atomic.Int64 }

func (f *fetchBytes) OnBrokerRead(_ kgo.BrokerMetadata, key int16, bytesRead int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		f.bytes.Add(int64(bytesRead))
		f.responses.Add(1)
	}
}

var fetchKindLine = regexp.MustCompile(`^shoal_fetch_requests_total\{core="\d+",kind="([a-z_]+)"\} (\d+)$`)

// brokerFetchCounts sums the broker's fetch counters over cores, by kind (copied once a second).
func brokerFetchCounts(t *testing.T, b *Broker) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + b.AdminAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := fetchKindLine.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			out[m[1]] += n
		}
	}
	return out
}

// TestFetchSessionsIncremental: franz-go opens a KIP-227 fetch session; once it has caught up,
// its idle fetches are incremental (the answers name no partitions), and records produced
// later to a few of the 150 partitions still arrive, in order.
func TestFetchSessionsIncremental(t *testing.T) {
	b := broker(t)
	adm := newAdmin(t, b)
	topic := uniq(t, "sessions")
	const parts = 150
	createTopic(t, adm, topic, parts, nil)
	prod := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceN(t, prod, topic, parts, 1, "first")

	before := brokerFetchCounts(t, b)
	hook := &fetchBytes{}
	cons := newClient(t, b, kgo.ConsumeTopics(topic), kgo.FetchMaxWait(50*time.Millisecond), kgo.WithHooks(hook))
	seen := 0
	ctx := ctxT(t, 30*time.Second)
	for seen < parts {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", seen, parts, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		seen += fs.NumRecords()
	}

	// Idle for 3 s: measure the bytes per fetch answer.
	time.Sleep(300 * time.Millisecond) // let fetches already carrying records finish
	bytes0, resp0 := hook.bytes.Load(), hook.responses.Load()
	time.Sleep(3 * time.Second)
	idleBytes, idleResponses := hook.bytes.Load()-bytes0, hook.responses.Load()-resp0
	if idleResponses < 10 {
		t.Fatalf("only %d idle fetch answers in 3 s", idleResponses)
	}
	perFetch := float64(idleBytes) / float64(idleResponses)
	t.Logf("%d partitions: %d idle fetch answers, %.1f bytes each", parts, idleResponses, perFetch)
	// A sessionless answer names every partition (over 40 bytes each).
	if perFetch > 200 {
		t.Fatalf("%.1f bytes per idle fetch answer: not incremental", perFetch)
	}

	later := []int32{0, 64, 149}
	var recs []*kgo.Record
	for round := 0; round < 3; round++ {
		for _, p := range later {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("later-%d-%d", p, round))})
		}
	}
	if err := prod.ProduceSync(ctxT(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	got := map[int32][]string{}
	n := 0
	ctx = ctxT(t, 30*time.Second)
	for n < len(recs) {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d later records: %v", n, len(recs), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			n++
		})
	}
	for _, p := range later {
		want := []string{fmt.Sprintf("later-%d-0", p), fmt.Sprintf("later-%d-1", p), fmt.Sprintf("later-%d-2", p)}
		if fmt.Sprint(got[p]) != fmt.Sprint(want) {
			t.Fatalf("partition %d: got %v, want %v", p, got[p], want)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		after := brokerFetchCounts(t, b)
		if after["incremental"]-before["incremental"] >= 10 && after["full"] > before["full"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker counted no session use: before %v, after %v", before, after)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
