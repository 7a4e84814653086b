package shoaltest

// Harness: runs the real shoal binary for the tests of this package.
//
// TestMain starts one broker for the package (every test uses its own uniquely named topics
// and groups); startBroker(t) gives a test a broker of its own. Each broker gets free ports on
// 127.0.0.1 and a fresh temp data dir, is started exactly as the CLI contract says, counts as
// ready once GET /v1/status/ready answers 200 and a kgo client can Ping it, and is always
// killed: at t.Cleanup / the end of TestMain, on SIGINT/SIGTERM (signal handler), and by
// PR_SET_PDEATHSIG if the test binary itself dies (e.g. go test's -timeout panic).

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	shoalBin     = envOr("SHOAL_BIN", defaultBin())
	shoalCores   = envOr("SHOAL_CORES", strconv.Itoa(runtime.NumCPU()))
	readyTimeout = envDuration("SHOAL_READY_TIMEOUT", 30*time.Second)
	keepData     = os.Getenv("SHOAL_KEEP_DATA") == "1"

	live   = map[*Broker]struct{}{}
	liveMu sync.Mutex

	// shared is the package-wide broker started by TestMain.
	shared *Broker
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			return time.Duration(s * float64(time.Second))
		}
	}
	return def
}

func defaultBin() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..", "..", "target", "release", "shoal")
}

// Broker is one shoal process.
type Broker struct {
	Addr      string // host:port of the Kafka listener (also advertised)
	AdminAddr string
	Dir       string // temp dir holding data/ and broker.stderr.log
	LogPath   string
	// Env is added to the process environment (cluster settings are SHOAL_* variables).
	Env      []string
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitErr  error
	stopOnce sync.Once
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch makes a broker on free ports with a fresh temp data dir, starts it and waits for
// readiness. The caller must Stop it.
func launch() (*Broker, error) {
	return launchWith(nil)
}

// launchWith is launch with extra environment variables for the process.
func launchWith(env []string) (*Broker, error) {
	if st, err := os.Stat(shoalBin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("broker binary not found or not executable: %s (build it, or set SHOAL_BIN)", shoalBin)
	}
	dir, err := os.MkdirTemp("", "shoal-go-")
	if err != nil {
		return nil, err
	}
	kp, err := freePort()
	if err != nil {
		return nil, err
	}
	ap, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		Addr:      fmt.Sprintf("127.0.0.1:%d", kp),
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", ap),
		Dir:       dir,
		LogPath:   filepath.Join(dir, "broker.stderr.log"),
		Env:       env,
	}
	liveMu.Lock()
	live[b] = struct{}{}
	liveMu.Unlock()
	if err := b.start(); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// start runs the process (again, on the same data dir and ports after a stop).
func (b *Broker) start() error {
	data := filepath.Join(b.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(shoalBin, "start",
		"--data-dir", data,
		"--kafka-addr", b.Addr,
		"--advertised-addr", b.Addr,
		"--cores", shoalCores,
		"--admin-addr", b.AdminAddr,
	)
	fmt.Fprintf(logf, "\n===== %s\n", strings.Join(cmd.Args, " "))
	cmd.Stdout = logf
	cmd.Stderr = logf
	if len(b.Env) > 0 {
		cmd.Env = append(os.Environ(), b.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig is tied to the forking OS thread: keep this goroutine on it while forking.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.exitErr = err
		b.mu.Unlock()
		close(done)
	}()
	return b.waitReady(readyTimeout)
}

// Restart stops the process (SIGTERM, then SIGKILL after 10 s) and starts it again on the
// same data dir and ports; it fails the test if the broker had died or does not come back.
func (b *Broker) Restart(t *testing.T) {
	t.Helper()
	if !b.Running() {
		t.Fatalf("restart of a broker that is not running (%v)", b.ExitErr())
	}
	if !b.terminate() {
		t.Errorf("shoal ignored SIGTERM for 10 s")
	}
	if err := b.ExitErr(); err != nil {
		t.Errorf("shoal exited with %v on SIGTERM, want 0", err)
	}
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
}

func (b *Broker) ExitErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitErr
}

func (b *Broker) Running() bool {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (b *Broker) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if !b.Running() {
			return fmt.Errorf("shoal exited while starting (%v)\n--- stderr tail ---\n%s", b.ExitErr(), b.Tail(40))
		}
		resp, err := hc.Get("http://" + b.AdminAddr + "/v1/status/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err = cl.Ping(ctx)
					cancel()
					cl.Close()
					if err == nil {
						return nil
					}
				}
				last = err
			} else {
				last = fmt.Errorf("ready: HTTP %d", resp.StatusCode)
			}
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("shoal not ready within %v on %s (last: %v)\n--- stderr tail ---\n%s", timeout, b.Addr, last, b.Tail(40))
}

// terminate sends SIGTERM and waits 10 s for the exit, then SIGKILLs the process group;
// it reports whether SIGTERM sufficed.
func (b *Broker) terminate() bool {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil || done == nil {
		return true
	}
	clean := true
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			clean = false
			fmt.Fprintf(os.Stderr, "WARNING: shoal %s ignored SIGTERM for 10s; SIGKILL\n", b.Addr)
		}
	}
	b.kill()
	return clean
}

// Stop terminates the broker and deletes its temp dir (segments are preallocated, so data
// dirs are large); SHOAL_KEEP_DATA=1 keeps it.
func (b *Broker) Stop() {
	b.stopOnce.Do(func() {
		b.terminate()
		liveMu.Lock()
		delete(live, b)
		liveMu.Unlock()
		if !keepData {
			os.RemoveAll(b.Dir)
		}
	})
}

// kill SIGKILLs the process group and reaps it.
func (b *Broker) kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
}

// Tail returns the last n lines of the broker's stderr.
func (b *Broker) Tail(n int) string {
	f, err := os.Open(b.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func killAll() {
	liveMu.Lock()
	bs := make([]*Broker, 0, len(live))
	for b := range live {
		bs = append(bs, b)
	}
	liveMu.Unlock()
	for _, b := range bs {
		b.kill()
		if !keepData {
			os.RemoveAll(b.Dir)
		}
	}
}

// startBroker gives a test a broker of its own, stopped at cleanup.
func startBroker(t *testing.T) *Broker {
	t.Helper()
	b, err := launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- shoal stderr tail (%s) ---\n%s", b.Addr, b.Tail(60))
		}
		alive := b.Running()
		b.Stop()
		if !alive {
			t.Errorf("shoal %s died during the test: %v", b.Addr, b.ExitErr())
		}
	})
	return b
}

// broker returns the package's shared broker and checks after the test that it is still up.
func broker(t *testing.T) *Broker {
	t.Helper()
	if !shared.Running() {
		t.Fatalf("shared shoal is not running (%v)\n%s", shared.ExitErr(), shared.Tail(60))
	}
	t.Cleanup(func() {
		if !shared.Running() {
			t.Errorf("shoal died during the test (%v)\n--- stderr tail ---\n%s", shared.ExitErr(), shared.Tail(60))
		} else if t.Failed() {
			t.Logf("--- shoal stderr tail ---\n%s", shared.Tail(40))
		}
	})
	return shared
}

func TestMain(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		killAll()
		fmt.Fprintf(os.Stderr, "killed brokers on %v\n", s)
		os.Exit(2)
	}()
	// go test's -timeout panics and exits without cleanups: Pdeathsig kills the brokers, but
	// their data dirs would stay. Shortly before the deadline, kill them and remove the dirs.
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 10*time.Second {
			time.AfterFunc(d-5*time.Second, func() {
				fmt.Fprintln(os.Stderr, "test deadline close: killing brokers and removing their data dirs")
				killAll()
			})
		}
	}
	var err error
	shared, err = launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start shoal:", err)
		os.Exit(1)
	}
	code := m.Run()
	if !shared.Running() {
		fmt.Fprintf(os.Stderr, "shared shoal died (%v)\n--- stderr tail ---\n%s\n", shared.ExitErr(), shared.Tail(60))
		if code == 0 {
			code = 1
		}
	}
	shared.Stop()
	killAll()
	os.Exit(code)
}

// ---------------------------------------------------------------- client helpers

var nameSeq struct {
	sync.Mutex
	n int
}

// uniq returns a unique topic/group name for this test.
func uniq(t *testing.T, what string) string {
	nameSeq.Lock()
	nameSeq.n++
	n := nameSeq.n
	nameSeq.Unlock()
	s := strings.NewReplacer("/", ".", " ", "_", "#", "_").Replace(t.Name())
	if len(s) > 120 {
		s = s[:120]
	}
	return fmt.Sprintf("go-%s-%s-%d-%d", what, s, time.Now().UnixNano()%1e9, n)
}

func newClient(t *testing.T, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.Addr)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T, b *Broker) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, b))
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates a topic with rf 1 and fails the test on any error.
func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctxT(t, 30*time.Second), partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
}
