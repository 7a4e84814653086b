package dev.shoal.it;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs one of Kafka's CLI tools the way an operator would: a separate JVM,
 * {@code java -cp <test classpath> <MainClass> args...}, with stdin, a time limit, and its
 * exit code, stdout and stderr returned.
 */
public final class Cli {
    public static final String TOPICS = "org.apache.kafka.tools.TopicCommand";                      // kafka-topics.sh
    public static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";         // kafka-console-producer.sh
    public static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"; // kafka-console-consumer.sh
    public static final String CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"; // kafka-consumer-groups.sh
    public static final String CONFIGS = "kafka.admin.ConfigCommand";                               // kafka-configs.sh (still in kafka_2.13)
    public static final String GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell";               // kafka-get-offsets.sh
    public static final String BROKER_API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand"; // kafka-broker-api-versions.sh
    public static final String PRODUCER_PERF_TEST = "org.apache.kafka.tools.ProducerPerformance";   // kafka-producer-perf-test.sh
    public static final String VERIFIABLE_PRODUCER = "org.apache.kafka.tools.VerifiableProducer";   // kafka-verifiable-producer.sh
    public static final String DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand";      // kafka-delete-records.sh
    public static final String LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand";                  // kafka-log-dirs.sh
    public static final String VERIFIABLE_CONSUMER = "org.apache.kafka.tools.VerifiableConsumer";   // kafka-verifiable-consumer.sh

    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(90);

    private static String classpath;

    private Cli() {
    }

    public record Result(String command, int exitCode, String stdout, String stderr) {
        public List<String> lines() {
            return stdout.lines().toList();
        }

        /** For assertion messages. */
        public String describe() {
            return "$ " + command + "\nexit code " + exitCode + "\n--- stdout ---\n" + stdout + "\n--- stderr ---\n" + stderr;
        }

        public Result ok() {
            if (exitCode != 0) {
                throw new AssertionError("tool failed\n" + describe());
            }
            return this;
        }
    }

    /** The test classpath: target/test-classes and every dependency jar (written by Maven). */
    static synchronized String classpath() throws IOException {
        if (classpath == null) {
            String file = System.getProperty("shoal.test.classpath.file");
            String classes = System.getProperty("shoal.test.classes");
            if (file == null || classes == null) {
                // Not started by Maven: the JVM's own classpath (IDE runs).
                classpath = System.getProperty("java.class.path");
            } else {
                classpath = classes + java.io.File.pathSeparator + Files.readString(Path.of(file), StandardCharsets.UTF_8).trim();
            }
        }
        return classpath;
    }

    public static Result run(String mainClass, String... args) throws Exception {
        return run(DEFAULT_TIMEOUT, null, mainClass, args);
    }

    public static Result runWithInput(String stdin, String mainClass, String... args) throws Exception {
        return run(DEFAULT_TIMEOUT, stdin, mainClass, args);
    }

    public static Result run(Duration timeout, String stdin, String mainClass, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        if (Files.isExecutable(Path.of("/usr/bin/setpriv"))) {
            // Dies with the test JVM's thread that started it.
            cmd.addAll(List.of("/usr/bin/setpriv", "--pdeathsig", "KILL", "--"));
        }
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        // Small, quick-starting JVMs: the machine is shared.
        cmd.addAll(List.of("-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
                "-cp", classpath(), mainClass));
        cmd.addAll(Arrays.asList(args));
        String shown = mainClass + " " + String.join(" ", args);
        Path dir = Files.createTempDirectory("shoal-cli-");
        Path out = dir.resolve("stdout");
        Path err = dir.resolve("stderr");
        Path in = dir.resolve("stdin");
        Files.writeString(in, stdin == null ? "" : stdin, StandardCharsets.UTF_8);
        Process p = new ProcessBuilder(cmd)
                .redirectInput(in.toFile())
                .redirectOutput(out.toFile())
                .redirectError(err.toFile())
                .start();
        try {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                p.waitFor(30, TimeUnit.SECONDS);
                throw new AssertionError("tool did not finish within " + timeout.toSeconds() + " s: " + shown
                        + "\n--- stdout ---\n" + read(out) + "\n--- stderr ---\n" + read(err));
            }
            return new Result(shown, p.exitValue(), read(out), read(err));
        } finally {
            if (p.isAlive()) {
                p.destroyForcibly();
            }
            for (Path f : List.of(in, out, err, dir)) {
                Files.deleteIfExists(f);
            }
        }
    }

    private static String read(Path f) {
        try {
            return Files.readString(f, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }
}
