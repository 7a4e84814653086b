package dev.shoal.it;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * One real {@code shoal} process on free 127.0.0.1 ports with a fresh temp data dir, started
 * exactly as the CLI contract says:
 *
 * <pre>shoal start --data-dir DIR --kafka-addr 127.0.0.1:PORT --advertised-addr 127.0.0.1:PORT
 *             --cores N --admin-addr 127.0.0.1:APORT</pre>
 *
 * Ready once the Kafka port accepts TCP and GET /v1/status/ready on the admin port answers 200.
 * Every started broker is registered in {@link #LIVE}: it is killed at {@link #stop}, by a JVM
 * shutdown hook, and (through {@code setpriv --pdeathsig KILL}) by the kernel if the JVM dies
 * without running its hooks.
 */
public final class ShoalBroker {
    public static final Path REPO_ROOT = Path.of(System.getProperty("shoal.repo.root", "../../..")).toAbsolutePath().normalize();
    public static final String BINARY = env("SHOAL_BIN", REPO_ROOT.resolve("target/release/shoal").toString());
    public static final int CORES = Integer.parseInt(env("SHOAL_CORES", String.valueOf(Runtime.getRuntime().availableProcessors())));
    public static final Duration READY_TIMEOUT = Duration.ofSeconds(Long.parseLong(env("SHOAL_READY_TIMEOUT", "30")));
    public static final Duration STOP_GRACE = Duration.ofSeconds(10);
    /** Extra broker flags beyond the contract, split on spaces (empty by default). */
    public static final List<String> EXTRA_ARGS = Arrays.stream(env("SHOAL_EXTRA_ARGS", "").trim().split("\\s+")).filter(s -> !s.isEmpty()).toList();

    private static final Set<ShoalBroker> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (ShoalBroker b : LIVE) {
                b.forceKill();
            }
        }, "shoal-broker-killer"));
    }

    public final Path workDir;
    public final Path dataDir;
    public final Path logFile;
    public final String host = "127.0.0.1";
    public final int port;
    public final int adminPort;
    /** Extra environment of the process (cluster settings are SHOAL_* variables). */
    public final java.util.Map<String, String> env = new java.util.HashMap<>();
    private Process process;

    public ShoalBroker() throws IOException {
        // Under target/shoal-tmp when run by Maven (run.sh empties it first, so a killed run
        // leaves nothing behind for long), else the system temp dir.
        String base = System.getProperty("shoal.tmp.dir");
        if (base != null) {
            Files.createDirectories(Path.of(base));
            this.workDir = Files.createTempDirectory(Path.of(base), "broker-");
        } else {
            this.workDir = Files.createTempDirectory("shoal-java-it-");
        }
        this.dataDir = workDir.resolve("data");
        Files.createDirectories(dataDir);
        this.logFile = workDir.resolve("broker.stderr.log");
        this.port = freePort();
        int a;
        do {
            a = freePort();
        } while (a == port);
        this.adminPort = a;
    }

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    public static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket()) {
            s.setReuseAddress(false);
            s.bind(new InetSocketAddress("127.0.0.1", 0));
            return s.getLocalPort();
        }
    }

    public String bootstrap() {
        return host + ":" + port;
    }

    public List<String> argv() {
        List<String> argv = new ArrayList<>();
        // The kernel kills the broker if the thread that started it (the JVM's main thread) dies.
        if (Files.isExecutable(Path.of("/usr/bin/setpriv"))) {
            argv.addAll(List.of("/usr/bin/setpriv", "--pdeathsig", "KILL", "--"));
        }
        argv.addAll(List.of(BINARY, "start",
                "--data-dir", dataDir.toString(),
                "--kafka-addr", bootstrap(),
                "--advertised-addr", bootstrap(),
                "--cores", String.valueOf(CORES)));
        if (!EXTRA_ARGS.contains("--admin-addr")) {
            argv.addAll(List.of("--admin-addr", host + ":" + adminPort));
        }
        argv.addAll(EXTRA_ARGS);
        return argv;
    }

    public synchronized void start() throws IOException, InterruptedException {
        if (process != null && process.isAlive()) {
            throw new IllegalStateException("already running");
        }
        if (!Files.isExecutable(Path.of(BINARY))) {
            throw new IllegalStateException("broker binary not found or not executable: " + BINARY
                    + " (build it with cargo build --release -p shoal-server, or set SHOAL_BIN)");
        }
        Files.writeString(logFile, "===== " + String.join(" ", argv()) + "\n", StandardCharsets.UTF_8,
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        ProcessBuilder pb = new ProcessBuilder(argv())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()));
        pb.environment().putAll(env);
        process = pb.start();
        LIVE.add(this);
        waitReady();
    }

    public boolean running() {
        return process != null && process.isAlive();
    }

    public long pid() {
        return process.pid();
    }

    private void waitReady() throws InterruptedException, IOException {
        long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
        String last = "nothing tried";
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                LIVE.remove(this);
                throw new IllegalStateException("shoal exited with code " + process.exitValue()
                        + " while starting\n--- broker stderr tail ---\n" + tail(80));
            }
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(host, port), 500);
                int status = httpGetStatus("/v1/status/ready");
                if (status == 200) {
                    return;
                }
                last = "admin /v1/status/ready answered " + status;
            } catch (IOException e) {
                last = e.toString();
            }
            Thread.sleep(100);
        }
        forceKill();
        throw new IllegalStateException("shoal not ready within " + READY_TIMEOUT.toSeconds() + " s on "
                + bootstrap() + " (last: " + last + ")\n--- broker stderr tail ---\n" + tail(80));
    }

    /** Body of a plain HTTP/1.0 GET on the admin port. */
    public String httpGet(String path) throws IOException {
        String answer = httpAnswer(path);
        int body = answer.indexOf("\r\n\r\n");
        return body < 0 ? "" : answer.substring(body + 4);
    }

    /** Status code of a plain HTTP/1.0 GET on the admin port. */
    public int httpGetStatus(String path) throws IOException {
        String head = httpAnswer(path);
        if (!head.startsWith("HTTP/1.") || head.length() < 12) {
            throw new IOException("bad HTTP answer: " + head.substring(0, Math.min(head.length(), 64)));
        }
        return Integer.parseInt(head.substring(9, 12));
    }

    /** The whole answer (head and body) to a GET; the admin server closes after answering. */
    private String httpAnswer(String path) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, adminPort), 1000);
            s.setSoTimeout(2000);
            OutputStream out = s.getOutputStream();
            out.write(("GET " + path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.flush();
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /**
     * SIGTERM, then SIGKILL after {@link #STOP_GRACE}. Returns the exit code, or null if the
     * process had already exited before (which the caller treats as a crash).
     */
    public synchronized StopResult stop() throws InterruptedException {
        if (process == null) {
            return new StopResult(false, -1, true);
        }
        boolean wasRunning = process.isAlive();
        if (!wasRunning) {
            LIVE.remove(this);
            return new StopResult(false, process.exitValue(), true);
        }
        process.destroy(); // SIGTERM
        boolean clean = process.waitFor(STOP_GRACE.toMillis(), TimeUnit.MILLISECONDS);
        if (!clean) {
            process.destroyForcibly();
            process.waitFor(30, TimeUnit.SECONDS);
        }
        LIVE.remove(this);
        return new StopResult(true, process.exitValue(), clean);
    }

    public record StopResult(boolean wasRunning, int exitCode, boolean exitedOnSigterm) {
    }

    public synchronized void forceKill() {
        if (process != null && process.isAlive()) {
            process.destroyForcibly();
            try {
                process.waitFor(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        LIVE.remove(this);
    }

    /** The last {@code lines} lines the broker wrote (stdout and stderr). */
    public String tail(int lines) {
        try {
            List<String> all = Files.readAllLines(logFile, StandardCharsets.UTF_8);
            return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        } catch (IOException | RuntimeException e) {
            return "(no broker log: " + e + ")";
        }
    }

    /** Removes the work dir (data dir and log); the broker must be stopped. */
    public void deleteWorkDir() throws IOException {
        if (System.getenv("SHOAL_KEEP_DATA") != null) {
            return;
        }
        try (Stream<Path> walk = Files.walk(workDir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
