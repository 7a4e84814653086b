"""Fixtures that run a real `shoal` broker process for the client tests.

Contract used (and nothing else):

    shoal start --data-dir DIR --kafka-addr 127.0.0.1:PORT \
                --advertised-addr 127.0.0.1:PORT --cores N

The broker logs to stderr and stops cleanly on SIGTERM. Every process started
here is registered in _LIVE and is killed at teardown, at session end and at
interpreter exit; a PR_SET_PDEATHSIG backstop kills it if pytest itself dies.
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import NODE_ID, raw_api_versions, raw_metadata_brokers  # noqa: E402
import netns  # noqa: E402

SHOAL_BIN = os.environ.get("SHOAL_BIN", "/work/main/target/release/shoal")
SHOAL_CORES = int(os.environ.get("SHOAL_CORES", str(os.cpu_count() or 1)))
READY_TIMEOUT_S = float(os.environ.get("SHOAL_READY_TIMEOUT", "20"))
STOP_GRACE_S = 10.0
# Extra broker flags beyond the contract (e.g. "--admin-addr 127.0.0.1:0"); empty by default.
EXTRA_ARGS = os.environ.get("SHOAL_EXTRA_ARGS", "").split()

_LIVE = set()  # Broker objects whose process may be running


def _pdeathsig():
    """preexec_fn: SIGKILL the broker if the thread that forked it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerStartError(Exception):
    pass


class Broker:
    """One shoal process (restartable on the same data dir and port)."""

    def __init__(self, workdir, port=None, cores=SHOAL_CORES, binary=SHOAL_BIN):
        self.binary = binary
        self.workdir = str(workdir)
        self.data_dir = os.path.join(self.workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.port = port or free_port()
        # Each broker gets its own admin port: a module's shared broker and a test's fresh one
        # run at the same time, and Shoal refuses an address another process listens on.
        self.admin_port = free_port()
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"
        self.cores = cores
        self.proc = None
        self.generation = 0  # how many times the process was started
        self.log_path = os.path.join(self.workdir, "broker.stderr.log")
        self.exit_codes = []  # (generation, how it was stopped, returncode)
        self.needed_sigkill_on_stop = False
        self.api_versions = None  # {api_key: (min, max)} from the last readiness check

    # ---------------------------------------------------------------- process
    def argv(self):
        return [
            self.binary, "start",
            "--data-dir", self.data_dir,
            "--kafka-addr", self.bootstrap,
            "--advertised-addr", self.bootstrap,
            "--cores", str(self.cores),
        ] + ([] if "--admin-addr" in EXTRA_ARGS else
             ["--admin-addr", f"{self.host}:{self.admin_port}"]) + EXTRA_ARGS

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.generation += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== generation {self.generation}: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            preexec_fn=_pdeathsig, start_new_session=True, close_fds=True,
        )
        log.close()
        _LIVE.add(self)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Wait until the port accepts TCP and answers ApiVersions v0 and Metadata v1
        listing this broker. Hand-encoded on purpose: which real clients work is
        what the tests check, one by one."""
        deadline = time.monotonic() + timeout
        last_err = None
        tcp_ok = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"shoal exited with code {self.proc.returncode} while starting "
                    f"(generation {self.generation})\n--- stderr tail ---\n{self.stderr_tail()}")
            if not tcp_ok:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        tcp_ok = True
                except OSError as e:
                    last_err = e
                    time.sleep(0.05)
                    continue
            try:
                versions = raw_api_versions(self.host, self.port)
                brokers, _ = raw_metadata_brokers(self.host, self.port)
                if (NODE_ID, self.host, self.port) in brokers:
                    self.api_versions = versions
                    return
                last_err = f"Metadata v1 without broker {NODE_ID} at {self.bootstrap}: {brokers}"
            except Exception as e:  # not ready yet (refused, closed, short read): retried until deadline
                last_err = e
            time.sleep(0.1)
        raise BrokerStartError(
            f"shoal not ready within {timeout}s on {self.bootstrap} (tcp_ok={tcp_ok}, "
            f"last error: {last_err!r})\n--- stderr tail ---\n{self.stderr_tail()}")

    def kill9(self):
        """SIGKILL the process and reap it."""
        assert self.running(), "kill9 on a broker that is not running"
        self._killpg()
        rc = self.proc.wait(timeout=30)
        self.exit_codes.append((self.generation, "SIGKILL", rc))
        return rc

    def restart(self, wait=True):
        """Start again on the same data dir and port (after kill9 or stop)."""
        if self.running():
            self.stop()
        return self.start(wait=wait)

    def stop(self, grace=STOP_GRACE_S):
        """SIGTERM, wait `grace` seconds, then SIGKILL.

        Returns (returncode, clean): clean is True if it exited on SIGTERM,
        False if it needed SIGKILL, None if it was not running any more."""
        if self.proc is None:
            return None, None
        if self.proc.poll() is not None:
            _LIVE.discard(self)
            return self.proc.returncode, None
        self.proc.send_signal(signal.SIGTERM)
        clean = True
        try:
            rc = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            clean = False
            self.needed_sigkill_on_stop = True
            self._killpg()
            rc = self.proc.wait(timeout=30)
            with open(self.log_path, "ab") as log:
                log.write(b"\n===== harness: SIGTERM ignored for 10s, sent SIGKILL\n")
        self.exit_codes.append((self.generation, "SIGTERM" if clean else "SIGTERM+SIGKILL", rc))
        _LIVE.discard(self)
        return rc, clean

    def _killpg(self):
        """SIGKILL the broker's whole process group (it runs in its own session)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def force_kill(self):
        if self.proc is not None:
            self._killpg()  # also reaps helpers it may have left in its group
            if self.proc.poll() is None:
                self.proc.wait(timeout=30)
        _LIVE.discard(self)

    # ---------------------------------------------------------------- logs
    def stderr_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines=60):
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def __repr__(self):
        return f"<Broker {self.bootstrap} pid={self.pid} gen={self.generation} dir={self.workdir}>"


def _kill_all_live():
    for b in list(_LIVE):
        b.force_kill()


atexit.register(_kill_all_live)


def pytest_sessionfinish(session, exitstatus):
    _kill_all_live()
    netns._teardown_all()


def _require_binary():
    if not (os.path.isfile(SHOAL_BIN) and os.access(SHOAL_BIN, os.X_OK)):
        pytest.fail(f"broker binary not found or not executable: {SHOAL_BIN} "
                    f"(build it, or set SHOAL_BIN)", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the stderr tail of every broker it used."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Broker):
                rep.sections.append((f"shoal stderr tail ({name}: {value})", value.stderr_tail(80)))
            if name == "broker_factory":
                for b in getattr(value, "made", []):
                    rep.sections.append((f"shoal stderr tail ({b})", b.stderr_tail(80)))
            if name == "netns_cluster":
                for c in getattr(value, "made", []):
                    rep.sections.append((f"netns faults ({c})", repr(c.faults())))
                    for p in c.processes():
                        rep.sections.append((f"log tail ({p})", p.log_tail(80)))


def _stop(b):
    rc, clean = b.stop()
    if clean is False:
        sys.stderr.write(f"\nWARNING: {b} ignored SIGTERM for {STOP_GRACE_S}s; killed with SIGKILL\n")
    b.force_kill()
    # Segments are preallocated (fallocate), so a run's data dirs reach tens of GiB and pytest
    # keeps the last three runs: drop the data, keep the stderr log for the report.
    if os.environ.get("SHOAL_KEEP_DATA") != "1":
        shutil.rmtree(b.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    """A broker shared by the tests of one module (each test uses its own topics)."""
    _require_binary()
    b = Broker(tmp_path_factory.mktemp("shoal"))
    try:
        b.start()
        yield b
    finally:
        _stop(b)


@pytest.fixture
def fresh_broker(tmp_path_factory, request):
    """A broker of its own for one test (for kill -9 / restart tests)."""
    _require_binary()
    b = Broker(tmp_path_factory.mktemp("shoal"))
    try:
        b.start()
        yield b
    finally:
        _stop(b)


@pytest.fixture
def broker_factory(tmp_path_factory):
    """Make unstarted Broker objects; all are stopped at teardown."""
    _require_binary()
    made = []

    def make(**kw):
        b = Broker(tmp_path_factory.mktemp("shoal"), **kw)
        made.append(b)
        return b

    make.made = made
    try:
        yield make
    finally:
        for b in made:
            _stop(b)


@pytest.fixture(autouse=True)
def _shared_broker_alive(request):
    """A test that uses the module-scoped broker must leave it alive."""
    if "broker" not in request.fixturenames:
        yield
        return
    b = request.getfixturevalue("broker")
    if not b.running():
        pytest.fail(f"shared broker is not running before the test (exit code "
                    f"{b.proc.returncode})\n--- stderr tail ---\n{b.stderr_tail()}", pytrace=False)
    yield
    if not b.running():
        pytest.fail(f"shoal died during the test (exit code {b.proc.returncode})"
                    f"\n--- stderr tail ---\n{b.stderr_tail()}", pytrace=False)


# ------------------------------------------------------------------ network namespaces
_netns_stale_done = []
_netns_skipped = []  # (test id, reason): repeated in a banner at the end of the run


def _netns_skip(request, reason):
    msg = f"netns cluster tests SKIPPED: {reason}"
    _netns_skipped.append((request.node.nodeid, reason))
    pytest.skip(msg)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _netns_skipped:
        reasons = sorted({r for _, r in _netns_skipped})
        terminalreporter.write_sep("!", "netns cluster tests SKIPPED", red=True, bold=True)
        for r in reasons:
            terminalreporter.write_line(f"!!!!!! {len(_netns_skipped)} test(s) skipped: {r}",
                                        red=True, bold=True)


@pytest.fixture
def netns_cluster(tmp_path_factory, request):
    """Factory: netns_cluster(n, subnet=None) -> a started netns.Cluster of n namespaces on a
    bridge (see netns.py). Everything it made is torn down at the end of the test, pass or
    fail. Skips (loudly) when not root or `ip netns` / `nft` are unusable. Leftovers of killed
    earlier runs are removed once per session, before the first cluster."""
    ok, reason = netns.available()
    if not ok:
        _netns_skip(request, reason)
    if not _netns_stale_done:
        removed = netns.cleanup_stale()
        if removed:
            sys.stderr.write(f"\nnetns: removed leftovers of earlier runs: {removed}\n")
        _netns_stale_done.append(True)
    made = []

    def make(n, **kw):
        c = netns.Cluster(n, workdir=tmp_path_factory.mktemp("netns"), **kw)
        made.append(c)
        return c.up()

    make.made = made
    try:
        yield make
    finally:
        errors = []
        for c in made:
            try:
                c.down()
            except Exception as e:
                errors.append(str(e))
        left = netns.leftovers(os.getpid())
        if errors or left:
            pytest.fail(f"netns teardown left {left}: {errors}", pytrace=False)
