"""Network-namespace harness for multi-node tests on one machine (root only).

    with netns.Cluster(3, workdir=tmp) as c:          # or the `netns_cluster` fixture
        p = c.start(1, [shoal, "start", "--kafka-addr", f"{c.addr(1)}:9092", ...])
        c.isolate(1); c.heal()
        c.partition([[1], [2, 3]]); c.cut(1, 2, one_way=True); c.heal()
        p.pause(); p.resume(); p.kill(); p.restart()

Topology (root namespace = "host"):

    bridge shbr<pid>  10.77.K.1/24      (K: SHOAL_NETNS_SUBNET or the first free 10.77.K.0/24)
      +-- veth shv<pid>n1 <-> eth0 in netns shoal-<pid>-n1   10.77.K.11/24, default via .1
      +-- veth shv<pid>n2 <-> eth0 in netns shoal-<pid>-n2   10.77.K.12/24
      ...
Namespaces reach each other over the bridge (layer 2) and the host through the bridge address;
the host reaches them through the bridge's connected route. No sysctl of the host is changed.

Faults are nftables DROP rules in a table `inet shoal_<pid>` that the harness creates INSIDE
EACH NAMESPACE (chains on the input and output hooks, matching the peer's address; `isolate`
matches everything on eth0). Why there and not on the host's bridge: traffic between two
namespaces is bridged, and reaches the host's `inet forward` hook only when br_netfilter is
loaded with bridge-nf-call-iptables=1 (true on this kernel, not in general), while traffic
between the host and a namespace is never forwarded at all (it is the host's own input/output).
Rules in the namespace's own stack see every packet that namespace sends or receives, whatever
the host's bridge/netfilter configuration. A rule set is replaced atomically (`nft -f`) per
namespace on every change. Faults accumulate (isolate + cut + partition) until `heal()`.

Every packet is dropped (no ct state match, no reject): established TCP connections stall and
retransmit, new connects time out, exactly as on a real partition. `cut(a, b, one_way=True)`
drops only packets a->b; note that TCP then fails in both directions (handshakes need both),
use UDP to observe the direction. A pair's rule sits on both ends (the sender's output, the
receiver's input); a drop on the sender's own output makes a UDP sendto() fail with EPERM
instead of vanishing silently, while TCP just retransmits (connects time out), as on a real
partition.

Teardown (`down()`, idempotent) always runs: context manager, the pytest fixture, atexit, and
SIGTERM (a handler is installed if none was). It kills every process it started and any other
process left in its namespaces, deletes the nft tables, veths, namespaces and the bridge, and
waits until they are gone. `cleanup_stale()` removes what killed runs left (matched by name:
the pid in the name is not alive any more). Processes are started with PR_SET_PDEATHSIG, so
they die with the thread that started them even when pytest is SIGKILLed.
"""

import atexit
import ctypes
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

NS_PREFIX = "shoal"  # namespaces shoal-<pid>-n<i>
BR_PREFIX = "shbr"   # bridge shbr<pid>
VETH_PREFIX = "shv"  # host end of a veth: shv<pid>n<i> (<= 15 chars: pid_max is 7 digits at most)
TABLE_PREFIX = "shoal_"  # nft table inet shoal_<pid>, inside each namespace
LOCK_PATH = "/run/shoal-netns.lock"
DEFAULT_BASE = "10.77"  # third octet chosen at run time unless SHOAL_NETNS_SUBNET says

_NS_RE = re.compile(rf"^{NS_PREFIX}-(\d+)-n(\d+)$")
_BR_RE = re.compile(rf"^{BR_PREFIX}(\d+)$")
_VETH_RE = re.compile(rf"^{VETH_PREFIX}(\d+)n(\d+)$")
_TABLE_RE = re.compile(rf"^{TABLE_PREFIX}(\d+)$")

HOST = "host"  # pseudo-node for cut()/partition(): the root namespace (bridge address)


class NetnsError(Exception):
    pass


# ----------------------------------------------------------------------------- helpers
def _sh(args, check=True, input=None, timeout=20):
    r = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _pdeathsig():
    """preexec_fn: SIGKILL the child if the thread that forked it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def available():
    """(True, "") if this process can build clusters, else (False, reason)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (running as uid %d)" % os.geteuid()
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return False, f"'{tool}' not found (apt-get install {pkg})"
    try:
        _sh(["ip", "netns", "list"], timeout=5)
        _sh(["nft", "list", "tables"], timeout=5)
    except (NetnsError, subprocess.TimeoutExpired) as e:
        return False, f"ip netns / nft unusable here: {e}"
    return True, ""


def netns_names():
    out = _sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names():
    out = _sh(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def nft_tables(ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["nft", "list", "tables"]
    out = _sh(cmd, check=False).stdout
    return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("table ")]


def leftovers(pid=None):
    """Names of harness objects still present (all runs, or only those of `pid`)."""
    def mine(m):
        return m and (pid is None or int(m.group(1)) == pid)
    found = [f"netns {n}" for n in netns_names() if mine(_NS_RE.match(n))]
    found += [f"link {n}" for n in link_names() if mine(_BR_RE.match(n)) or mine(_VETH_RE.match(n))]
    found += [f"nft table {f} {t}" for f, t in nft_tables() if mine(_TABLE_RE.match(t))]
    return found


def _kill_netns_pids(ns, timeout=10):
    """SIGKILL every process in namespace `ns` and wait until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        r = _sh(["ip", "netns", "pids", ns], check=False)
        pids = [int(p) for p in r.stdout.split()] if r.returncode == 0 else []
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:  # reap it if it is our child
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} in netns {ns} survived SIGKILL")
        time.sleep(0.05)


def _wait_links_gone(names, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        left = set(names) & set(link_names())
        if not left:
            return
        if time.monotonic() > deadline:
            raise NetnsError(f"links still present after deletion: {sorted(left)}")
        time.sleep(0.05)


def cleanup_stale(include_live=False):
    """Remove namespaces, links and root-namespace nft tables of earlier runs whose pid is
    dead (or of every other run too, with include_live=True; never this process's own).
    Returns the list of what was removed."""
    me = os.getpid()

    def stale(m):
        if not m:
            return False
        pid = int(m.group(1))
        return pid != me and (include_live or not _pid_alive(pid))

    removed = []
    for ns in netns_names():
        if stale(_NS_RE.match(ns)):
            _kill_netns_pids(ns)
            _sh(["ip", "netns", "delete", ns], check=False)
            removed.append(f"netns {ns}")
    links = [n for n in link_names() if stale(_VETH_RE.match(n)) or stale(_BR_RE.match(n))]
    for n in links:
        _sh(["ip", "link", "delete", n], check=False)
        removed.append(f"link {n}")
    _wait_links_gone(links)
    for fam, t in nft_tables():  # none is made in the root namespace today; belt and braces
        if stale(_TABLE_RE.match(t)):
            _sh(["nft", "delete", "table", fam, t], check=False)
            removed.append(f"nft table {fam} {t}")
    return removed


_PROBE = r"""
import socket, sys, threading
res = {}
def probe(a):
    s = socket.socket(); s.settimeout(float(sys.argv[1]))
    try:
        s.connect((a, 9)); res[a] = "open"
    except ConnectionRefusedError:
        res[a] = "refused"
    except OSError as e:
        res[a] = type(e).__name__
    finally:
        s.close()
ts = [threading.Thread(target=probe, args=(a,)) for a in sys.argv[2:]]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join(f"{a}={res[a]}" for a in sys.argv[2:]))
"""


# ----------------------------------------------------------------------------- processes
class NsProcess:
    """A process running inside a node's namespace, restartable with the same argv."""

    def __init__(self, cluster, node, argv, log_path, env=None, cwd=None):
        self.cluster = cluster
        self.node = node
        self.argv = [str(a) for a in argv]
        self.log_path = str(log_path)
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.generation = 0
        self.exits = []  # (generation, how, returncode)

    def start(self):
        assert not self.running(), f"{self} already running"
        self.generation += 1
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== generation {self.generation} in {self.node.ns}: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node.ns] + self.argv,  # ip execs: same pid
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env, cwd=self.cwd,
                preexec_fn=_pdeathsig, start_new_session=True, close_fds=True)
        self.cluster._procs.append(self)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)  # its own session: the whole group
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL (the whole process group) and reap; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self.exits.append((self.generation, "SIGKILL", rc))
        return rc

    def pause(self):
        """SIGSTOP: the process stays, its sockets stay open, nothing is answered."""
        assert self.running(), f"{self} not running"
        self._signal(signal.SIGSTOP)

    def resume(self):
        """SIGCONT."""
        if self.proc is not None:
            self._signal(signal.SIGCONT)

    def stop(self, grace=10.0):
        """SIGCONT + SIGTERM, then SIGKILL after `grace` s. Returns (rc, clean)."""
        if not self.running():
            return self.returncode, None
        self._signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc, clean = self.proc.wait(timeout=grace), True
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            rc, clean = self.proc.wait(timeout=30), False
        self.exits.append((self.generation, "SIGTERM" if clean else "SIGTERM+SIGKILL", rc))
        return rc, clean

    def restart(self):
        """Kill it if it runs (SIGKILL), then start the same argv again."""
        if self.running():
            self.kill()
        return self.start()

    def wait_tcp(self, port, timeout=20.0):
        """Wait until the node's address accepts TCP on `port` from the host; raises with the
        log tail if the process exits or the deadline passes."""
        import socket
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise NetnsError(f"{self} exited with {self.returncode}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.node.addr, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise NetnsError(f"{self}: {self.node.addr}:{port} not accepting within {timeout}s\n{self.log_tail()}")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self):
        return f"<NsProcess {self.node.ns} pid={self.pid} gen={self.generation} {self.argv[0]}>"


# ----------------------------------------------------------------------------- cluster
class Node:
    def __init__(self, index, ns, addr, veth):
        self.index, self.ns, self.addr, self.veth = index, ns, addr, veth

    def __repr__(self):
        return f"<Node {self.index} {self.ns} {self.addr}>"


_LIVE = []  # clusters that are up (atexit / SIGTERM tear them down)
_lock = threading.Lock()


def _teardown_all():
    for c in list(_LIVE):
        try:
            c.down()
        except Exception as e:  # report, go on with the others
            sys.stderr.write(f"netns: teardown of {c} failed: {e}\n")


atexit.register(_teardown_all)

_sigterm_installed = False


def _install_sigterm():
    """Tear down on SIGTERM too (then die of it as before), unless someone handles it."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def on_term(signum, frame):
        _teardown_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    _sigterm_installed = True


def _subnet_in_use(net):
    out = _sh(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    out += _sh(["ip", "-4", "route", "show", "table", "all"], check=False).stdout
    for tok in re.findall(r"\d+\.\d+\.\d+\.\d+(?:/\d+)?", out):
        try:
            other = ipaddress.ip_network(tok, strict=False)
        except ValueError:
            continue
        if other.prefixlen > 0 and other.overlaps(net):
            return True
    return False


class Cluster:
    """N namespaces on one bridge. Nodes are numbered 1..n (`c.nodes[i-1]`, `c.node(i)`)."""

    def __init__(self, n, workdir=None, subnet=None, reach_timeout=10.0):
        """subnet: "10.77.5" / "10.77.5.0/24" (default: $SHOAL_NETNS_SUBNET, else the first
        10.77.K.0/24 with no address or route on the host)."""
        assert 1 <= n <= 200
        self.n = n
        self.pid = os.getpid()
        self.workdir = str(workdir) if workdir else f"/tmp/shoal-netns-{self.pid}"
        self.subnet_req = subnet or os.environ.get("SHOAL_NETNS_SUBNET") or None
        self.reach_timeout = reach_timeout
        self.bridge = f"{BR_PREFIX}{self.pid}"
        self.table = f"{TABLE_PREFIX}{self.pid}"
        self.nodes = []
        self.net = None
        self.host_addr = None
        self._procs = []
        self._isolated = set()  # node indices
        self._blocked = set()   # directed (src, dst), each a node index or HOST
        self._is_up = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
        return False

    def _pick_subnet(self):
        if self.subnet_req:
            s = self.subnet_req
            if "/" not in s:
                s = s.rstrip(".") + ".0/24" if s.count(".") == 2 else s + "/24"
            net = ipaddress.ip_network(s, strict=False)
            if net.prefixlen != 24:
                raise NetnsError(f"subnet must be a /24: {s}")
            if _subnet_in_use(net):
                raise NetnsError(f"subnet {net} already has an address or route on this host")
            return net
        for k in range(1, 255):
            net = ipaddress.ip_network(f"{DEFAULT_BASE}.{k}.0/24")
            if not _subnet_in_use(net):
                return net
        raise NetnsError(f"no free {DEFAULT_BASE}.K.0/24 subnet")

    def up(self):
        with _lock:
            if any(c.pid == self.pid for c in _LIVE):
                raise NetnsError("one Cluster per process at a time (names are per pid)")
            _LIVE.append(self)
        _install_sigterm()
        os.makedirs(self.workdir, exist_ok=True)
        try:
            # The subnet choice and the bridge address are one step for concurrent runs.
            with open(LOCK_PATH, "w") as lockf:
                fcntl.flock(lockf, fcntl.LOCK_EX)
                self.net = self._pick_subnet()
                hosts = list(self.net.hosts())
                self.host_addr = str(hosts[0])
                _sh(["ip", "link", "add", self.bridge, "type", "bridge"])
                _sh(["ip", "addr", "add", f"{self.host_addr}/24", "dev", self.bridge])
            _sh(["ip", "link", "set", self.bridge, "up"])
            for i in range(1, self.n + 1):
                node = Node(i, f"{NS_PREFIX}-{self.pid}-n{i}", str(hosts[9 + i]),
                            f"{VETH_PREFIX}{self.pid}n{i}")
                self.nodes.append(node)
                ns = ["ip", "-n", node.ns]
                _sh(["ip", "netns", "add", node.ns])
                _sh(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
                     "netns", node.ns])
                _sh(["ip", "link", "set", node.veth, "master", self.bridge, "up"])
                _sh(ns + ["link", "set", "lo", "up"])
                _sh(ns + ["addr", "add", f"{node.addr}/24", "dev", "eth0"])
                _sh(ns + ["link", "set", "eth0", "up"])
                _sh(ns + ["route", "add", "default", "via", self.host_addr])
                _sh(["ip", "netns", "exec", node.ns, "nft", "-f", "-"], input=(
                    f"table inet {self.table} {{\n"
                    f"  chain input {{ type filter hook input priority -150; policy accept; }}\n"
                    f"  chain output {{ type filter hook output priority -150; policy accept; }}\n"
                    f"}}\n"))
            self._is_up = True
            self.verify_reachability()
        except BaseException:
            self.down()
            raise
        return self

    def verify_reachability(self, timeout=None):
        """Every namespace reaches every other one and the host, the host reaches every
        namespace (TCP to a closed port: "refused" proves the round trip). Raises if not."""
        deadline = time.monotonic() + (timeout or self.reach_timeout)
        while True:
            m = self.reach_matrix(timeout=0.5)
            bad = {k: v for k, v in m.items() if not v}
            if not bad:
                return m
            if time.monotonic() > deadline:
                raise NetnsError(f"namespaces not reachable (src, dst): {sorted(bad, key=str)}")
            time.sleep(0.1)

    def reach_matrix(self, timeout=0.5, sources=None):
        """{(src, dst): bool} for src, dst in nodes + HOST, src != dst. A pair is reachable if
        a TCP connect to port 9 gets an answer (refused or accepted) within `timeout`."""
        everyone = [HOST] + [nd.index for nd in self.nodes]
        sources = everyone if sources is None else [self._idx(s) for s in sources]
        procs = {}
        for src in sources:
            dsts = [self._addr(d) for d in everyone if d != src]
            cmd = [sys.executable, "-c", _PROBE, str(timeout)] + dsts
            if src != HOST:
                cmd = ["ip", "netns", "exec", self.node(src).ns] + cmd
            procs[src] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = {}
        by_addr = {self._addr(d): d for d in everyone}
        for src, p in procs.items():
            so, se = p.communicate(timeout=timeout + 20)
            if p.returncode != 0:
                raise NetnsError(f"probe from {src} failed: {se.strip()}")
            for item in so.split():
                a, res = item.split("=")
                out[(src, by_addr[a])] = res in ("refused", "open")
        return out

    def down(self):
        """Kill processes, remove nft tables, veths, namespaces, bridge; idempotent."""
        errors = []
        for p in self._procs:
            try:
                p.kill() if p.running() else None
            except Exception as e:
                errors.append(f"kill {p}: {e}")
        for node in self.nodes:
            try:
                _kill_netns_pids(node.ns)
            except Exception as e:
                errors.append(str(e))
        present_ns = set(netns_names())
        for node in self.nodes:
            if node.ns in present_ns:
                _sh(["ip", "netns", "exec", node.ns, "nft", "delete", "table", "inet", self.table],
                    check=False)
        links = [nd.veth for nd in self.nodes] + [self.bridge]
        have = set(link_names())
        for name in links:  # deleting the host end removes the pair now, not when the ns dies
            if name in have:
                r = _sh(["ip", "link", "delete", name], check=False)
                if r.returncode != 0:
                    errors.append(f"ip link delete {name}: {r.stderr.strip()}")
        for node in self.nodes:
            if node.ns in present_ns:
                r = _sh(["ip", "netns", "delete", node.ns], check=False)
                if r.returncode != 0:
                    errors.append(f"ip netns delete {node.ns}: {r.stderr.strip()}")
        try:
            _wait_links_gone(links)
        except NetnsError as e:
            errors.append(str(e))
        self._is_up = False
        self._isolated.clear()
        self._blocked.clear()
        with _lock:
            if self in _LIVE:
                _LIVE.remove(self)
        if errors:
            raise NetnsError("netns teardown incomplete: " + "; ".join(errors))

    # ------------------------------------------------------------------ addressing
    def node(self, i):
        return self.nodes[self._idx(i) - 1]

    def _idx(self, x):
        if x == HOST:
            return HOST
        if isinstance(x, Node):
            return x.index
        if isinstance(x, NsProcess):
            return x.node.index
        if isinstance(x, int) and 1 <= x <= self.n:
            return x
        if isinstance(x, str):
            for nd in self.nodes:
                if x in (nd.ns, nd.addr):
                    return nd.index
        raise ValueError(f"no such node: {x!r} (nodes are 1..{self.n}, or netns.HOST)")

    def addr(self, i):
        """IPv4 address of node i (netns.HOST: the bridge address)."""
        return self._addr(self._idx(i))

    def _addr(self, idx):
        return self.host_addr if idx == HOST else self.nodes[idx - 1].addr

    # ------------------------------------------------------------------ processes
    def start(self, node, argv, log_path=None, env=None, cwd=None):
        """Start argv inside the node's namespace (`ip netns exec`); stdout+stderr appended to
        log_path (default <workdir>/n<i>-<prog>.log). Returns an NsProcess."""
        nd = self.node(node)
        if log_path is None:
            log_path = os.path.join(self.workdir, f"n{nd.index}-{os.path.basename(str(argv[0]))}.log")
        return NsProcess(self, nd, argv, log_path, env=env, cwd=cwd).start()

    def run(self, node, argv, timeout=30, **kw):
        """Run argv to completion inside the node's namespace; a CompletedProcess (text)."""
        cmd = ["ip", "netns", "exec", self.node(node).ns] + [str(a) for a in argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_pdeathsig, **kw)

    def processes(self):
        return list(self._procs)

    # ------------------------------------------------------------------ faults
    def isolate(self, node):
        """Drop everything to and from the node's eth0 (other nodes and the host)."""
        self._isolated.add(self._idx(node))
        self._apply()

    def partition(self, groups):
        """Drop traffic between nodes of different groups (both directions). Members are node
        numbers or netns.HOST; nodes named in no group form one more group."""
        groups = [[self._idx(x) for x in g] for g in groups]
        named = {x for g in groups for x in g}
        rest = [nd.index for nd in self.nodes if nd.index not in named]
        if rest:
            groups.append(rest)
        for gi, g in enumerate(groups):
            for gj, h in enumerate(groups):
                if gi != gj:
                    for a in g:
                        for b in h:
                            self._blocked.add((a, b))
        self._apply()

    def cut(self, a, b, one_way=False):
        """Drop packets a->b, and b->a too unless one_way. Either may be netns.HOST."""
        a, b = self._idx(a), self._idx(b)
        if a == b:
            raise ValueError("cut of a node from itself")
        self._blocked.add((a, b))
        if not one_way:
            self._blocked.add((b, a))
        self._apply()

    def heal(self):
        """Remove every fault."""
        self._isolated.clear()
        self._blocked.clear()
        self._apply()

    def faults(self):
        return {"isolated": sorted(self._isolated),
                "blocked": sorted(self._blocked, key=lambda p: (str(p[0]), str(p[1])))}

    def ruleset(self, node):
        """Current nft rules of the node's table (for debugging)."""
        return _sh(["ip", "netns", "exec", self.node(node).ns, "nft", "-a", "list", "table",
                    "inet", self.table]).stdout

    def _apply(self):
        assert self._is_up, "cluster is not up"
        for nd in self.nodes:
            i = nd.index
            rules = [f"flush chain inet {self.table} input", f"flush chain inet {self.table} output"]
            if i in self._isolated:
                rules += [f'add rule inet {self.table} input iifname "eth0" counter drop',
                          f'add rule inet {self.table} output oifname "eth0" counter drop']
            for (a, b) in sorted(self._blocked, key=lambda p: (str(p[0]), str(p[1]))):
                if a == i:
                    rules.append(f"add rule inet {self.table} output ip daddr {self._addr(b)} counter drop")
                if b == i:
                    rules.append(f"add rule inet {self.table} input ip saddr {self._addr(a)} counter drop")
            _sh(["ip", "netns", "exec", nd.ns, "nft", "-f", "-"], input="\n".join(rules) + "\n")

    def __repr__(self):
        return f"<netns.Cluster n={self.n} net={self.net} bridge={self.bridge} up={self._is_up}>"


# ----------------------------------------------------------------------------- shoal
def start_shoal(cluster, node, binary, data_dir, port=9092, admin_port=9644, cores=1,
                extra=(), log_path=None, ready_timeout=20.0, wait=True, env=None):
    """Start `shoal start` inside the node's namespace, listening on the node's address
    (Kafka on `port`, admin HTTP on `admin_port`), data in `data_dir`. Returns the NsProcess,
    with `.bootstrap` ("addr:port") and `.wait_ready()` (also used after `restart()`)."""
    nd = cluster.node(node)
    os.makedirs(data_dir, exist_ok=True)
    bootstrap = f"{nd.addr}:{port}"
    argv = [binary, "start", "--data-dir", data_dir, "--kafka-addr", bootstrap,
            "--advertised-addr", bootstrap, "--admin-addr", f"{nd.addr}:{admin_port}",
            "--cores", str(cores)] + list(extra)
    if env is not None:
        env = {**os.environ, **env}
    p = cluster.start(nd, argv, env=env,
                      log_path=log_path or os.path.join(cluster.workdir, f"shoal-n{nd.index}.log"))
    p.bootstrap, p.port, p.data_dir = bootstrap, port, data_dir

    def wait_ready(timeout=ready_timeout):
        """TCP accept, then ApiVersions v0 and Metadata v1 answered (hand-encoded, helpers)."""
        from helpers import raw_api_versions, raw_metadata_brokers
        deadline = time.monotonic() + timeout
        p.wait_tcp(port, timeout)
        last = None
        while time.monotonic() < deadline:
            if not p.running():
                raise NetnsError(f"shoal in {nd.ns} exited with {p.returncode}\n{p.log_tail()}")
            try:
                raw_api_versions(nd.addr, port)
                brokers, _ = raw_metadata_brokers(nd.addr, port)
                if any(h == nd.addr and pt == port for (_, h, pt) in brokers):
                    return p
                last = brokers
            except Exception as e:  # not ready yet
                last = e
            time.sleep(0.1)
        raise NetnsError(f"shoal in {nd.ns} not ready in {timeout}s (last: {last!r})\n{p.log_tail()}")

    p.wait_ready = wait_ready
    if wait:
        wait_ready()
    return p
