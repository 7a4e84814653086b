package dev.shoal.it;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;

/**
 * Starts one real Shoal broker per test class (before {@code @BeforeAll}), stops it after the
 * class, and fails the class if the broker died on its own or did not exit 0 on SIGTERM. The
 * broker is injected as a {@link ShoalBroker} parameter. A failing test gets the tail of the
 * broker's output attached (as a suppressed exception, so it is in the surefire report) and
 * printed to stderr. The broker log is copied to target/shoal-logs/CLASS.log; the temp data
 * dir is deleted.
 */
public final class ShoalExtension implements BeforeAllCallback, AfterAllCallback, ParameterResolver,
        TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler {

    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(ShoalExtension.class);
    private static final int TAIL_LINES = 80;

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        ShoalBroker broker = new ShoalBroker();
        context.getStore(NS).put("broker", broker);
        try {
            broker.start();
        } catch (Exception e) {
            saveLog(context, broker);
            broker.deleteWorkDir();
            throw e;
        }
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        ShoalBroker broker = context.getStore(NS).remove("broker", ShoalBroker.class);
        if (broker == null) {
            return;
        }
        ShoalBroker.StopResult r;
        String tail;
        try {
            r = broker.stop();
            tail = broker.tail(TAIL_LINES);
            saveLog(context, broker);
        } finally {
            broker.forceKill();
            broker.deleteWorkDir();
        }
        if (!r.wasRunning()) {
            throw new AssertionError("the broker died during " + context.getDisplayName() + " (exit code "
                    + r.exitCode() + ")\n--- broker output tail ---\n" + tail);
        }
        if (!r.exitedOnSigterm() || r.exitCode() != 0) {
            throw new AssertionError("the broker did not stop cleanly on SIGTERM within "
                    + ShoalBroker.STOP_GRACE.toSeconds() + " s (exit code " + r.exitCode() + ", needed SIGKILL: "
                    + !r.exitedOnSigterm() + ")\n--- broker output tail ---\n" + tail);
        }
    }

    private static void saveLog(ExtensionContext context, ShoalBroker broker) {
        try {
            Path dir = Path.of(System.getProperty("shoal.logs.dir", "target/shoal-logs"));
            Files.createDirectories(dir);
            Files.copy(broker.logFile, dir.resolve(context.getRequiredTestClass().getSimpleName() + ".log"),
                    StandardCopyOption.REPLACE_EXISTING);
        } catch (Exception e) {
            System.err.println("could not save the broker log: " + e);
        }
    }

    static ShoalBroker broker(ExtensionContext context) {
        ShoalBroker b = context.getStore(NS).get("broker", ShoalBroker.class);
        if (b == null) {
            throw new IllegalStateException("no broker for " + context.getDisplayName());
        }
        return b;
    }

    @Override
    public boolean supportsParameter(ParameterContext p, ExtensionContext e) {
        return p.getParameter().getType() == ShoalBroker.class;
    }

    @Override
    public Object resolveParameter(ParameterContext p, ExtensionContext e) {
        return broker(e);
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw withBrokerTail(context, t);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw withBrokerTail(context, t);
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw withBrokerTail(context, t);
    }

    @Override
    public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw withBrokerTail(context, t);
    }

    private static Throwable withBrokerTail(ExtensionContext context, Throwable t) {
        ShoalBroker b = context.getStore(NS).get("broker", ShoalBroker.class);
        if (b == null) {
            return t;
        }
        String state = b.running() ? "running" : "NOT RUNNING";
        String tail = b.tail(TAIL_LINES);
        System.err.println("===== " + context.getDisplayName() + " failed; broker (" + state + ") output tail:\n" + tail);
        t.addSuppressed(new BrokerOutput("broker " + b.bootstrap() + " (" + state + ") output tail:\n" + tail));
        return t;
    }

    /** Carries the broker's output tail into the test report. */
    static final class BrokerOutput extends RuntimeException {
        BrokerOutput(String message) {
            super(message, null, false, false);
        }
    }
}
