"""Faults injected into real broker processes, one at a time, each recorded in the history as
events of the process "nemesis" (type "info") when it begins and when it is healed.

Kinds of one node (`Nemesis`):
  kill   SIGKILL, then a restart on the same data dir after a random pause
  term   SIGTERM (a clean shutdown), then a restart
  powercut  SIGUSR2 to a broker built with `--features fault-switches`: every write not yet
         covered by a completed sync is lost (zeroed) and the process dies as by SIGKILL
         (shoal_runtime::power_cut), then a restart
  pause  SIGSTOP for a random time, then SIGCONT (clients see a broker that stops answering)
  fill   the data file system is filled to the last block, the broker killed and restarted on
         the full disk, and the space freed after a while (needs root: the runner loop-mounts
         a small file system for the data dir)

Kinds of a three-node cluster (`ClusterNemesis`, `chaos.py --nodes 3`; the leader is the one
Metadata names for a random key's partition):
  kill-leader       SIGKILL the leader, restart it after a random pause
  kill-any          SIGKILL a random node, restart it after a random pause
  pause-leader      SIGSTOP the leader for a random time, then SIGCONT
  partition-leader  isolate the leader's namespace (nftables drops everything on its eth0,
                    from the other nodes and from the clients), heal after a random time
  rolling-restart   SIGTERM each node in turn (it must stop cleanly), restarted, and the next
                    one only once it answers and every partition has a leader and a full ISR
                    again
"""

import os
import shutil
import signal
import subprocess
import time

# How long a restarted broker may take to answer. Seen on this machine: up to 25 s after a
# kill right after the fill fault freed its blocks, while CI built beside it (the loop
# device's backing file and the host disk shared); above this the run fails, with stacks.
RESTART_TIMEOUT_S = 60.0

KINDS = ("kill", "term", "pause", "fill", "powercut")
CLUSTER_KINDS = ("kill-leader", "kill-any", "pause-leader", "partition-leader",
                 "rolling-restart")


class Nemesis:
    def __init__(self, broker, history, rng, fill_dir=None):
        self.broker = broker
        self.history = history
        self.rng = rng
        self.fill_dir = fill_dir  # a directory on the broker's data file system, or None
        self.counts = {}
        self.restart_s = []  # how long each restart took to answer again

    def available(self):
        return [k for k in KINDS if k != "fill" or self.fill_dir is not None]

    def _event(self, f, **value):
        self.history.nemesis(f, value)

    def inject(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        getattr(self, f"_{kind}")()

    def _restart(self):
        t0 = time.monotonic()
        try:
            self.broker.start(wait=False)
            self.broker.wait_ready(timeout=RESTART_TIMEOUT_S)
        except Exception:
            self.dump_stuck_broker()
            raise
        self.restart_s.append(time.monotonic() - t0)
        self._event("start", pid=self.broker.pid, generation=self.broker.generation)

    def _kill(self):
        self._event("kill", pid=self.broker.pid)
        self.broker.kill9()
        time.sleep(self.rng.uniform(0.1, 2.0))
        self._restart()

    def _powercut(self):
        self._event("powercut", pid=self.broker.pid)
        os.kill(self.broker.pid, signal.SIGUSR2)
        try:
            rc = self.broker.proc.wait(timeout=30)
        except Exception:
            raise RuntimeError("broker did not die within 30s of SIGUSR2: is it a "
                               "fault-switches build?")
        if rc != -signal.SIGKILL:
            raise RuntimeError(f"broker exited with {rc} on SIGUSR2, not by the power cut's "
                               f"SIGKILL: is it a fault-switches build?")
        self.broker.exit_codes.append((self.broker.generation, "powercut", rc))
        time.sleep(self.rng.uniform(0.1, 1.0))
        self._restart()

    def _term(self):
        self._event("term", pid=self.broker.pid)
        rc, clean = self.broker.stop()
        if clean is not True:
            raise RuntimeError(f"broker did not stop cleanly on SIGTERM (rc {rc}, clean {clean})")
        time.sleep(self.rng.uniform(0.1, 1.0))
        self._restart()

    def _pause(self):
        pause_s = self.rng.uniform(1.0, 4.0)
        self._event("stop", pid=self.broker.pid, seconds=round(pause_s, 2))
        os.killpg(self.broker.pid, signal.SIGSTOP)
        try:
            time.sleep(pause_s)
        finally:
            os.killpg(self.broker.pid, signal.SIGCONT)
        self._event("cont", pid=self.broker.pid)

    def _fill(self):
        """Takes every free block and keeps taking what the broker frees (a sealed segment
        gives back the blocks it had reserved ahead), so the broker really meets ENOSPC."""
        hold_s = float(os.environ.get("CHAOS_FILL_S", "0")) or self.rng.uniform(3.0, 6.0)
        st = os.statvfs(self.fill_dir)
        self._event("fill", free_bytes=st.f_bfree * st.f_frsize, seconds=round(hold_s, 2))
        fillers = []
        try:
            self._take_free_blocks(fillers)
            # A running broker writes into blocks it reserved ahead (and a sealed segment
            # returns its unused reserve to the next one), so a short fill may never reach
            # it: a crash and a restart on the full disk always do (the disk reserve cannot
            # be taken, recovery runs on a full disk, appends are refused until space is back).
            self._event("kill", pid=self.broker.pid)
            self.broker.kill9()
            self._take_free_blocks(fillers)
            self._restart()
            end = time.monotonic() + hold_s
            while time.monotonic() < end:
                self._take_free_blocks(fillers)
                time.sleep(0.05)
        finally:
            for p in fillers:
                try:
                    os.remove(p)
                except FileNotFoundError:
                    pass
        self._event("free", filler_files=len(fillers))

    def _take_free_blocks(self, fillers):
        st = os.statvfs(self.fill_dir)
        # f_bfree, not f_bavail: the broker runs as root and may use the root reserve too.
        free = st.f_bfree * st.f_frsize
        if free < 4096:
            return
        path = os.path.join(self.fill_dir, f"nemesis-filler-{len(fillers)}")
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        except OSError:
            return  # not even room for the file: the disk is full already
        fillers.append(path)
        try:
            while free >= 4096:
                try:
                    os.posix_fallocate(fd, 0, free)
                    return
                except OSError:
                    free //= 2  # the file's own metadata needs some: take what fits
        finally:
            os.close(fd)

    def dump_stuck_broker(self):
        """A broker that does not answer: its threads' kernel stacks and a gdb backtrace go
        to the run's directory, before the harness kills it."""
        if self.broker.pid is None or not self.broker.running():
            return
        dump_stacks(self.broker.pid, os.path.dirname(self.broker.log_path))

    def heal(self):
        """Leaves the broker running and answering (the start of the recovery phase)."""
        if not self.broker.running():
            self._restart()


def dump_stacks(pid, out_dir):
    """The kernel stacks of a process's threads and a gdb backtrace, to out_dir/stuck-<pid>.txt."""
    out = os.path.join(out_dir, f"stuck-{pid}.txt")
    with open(out, "w") as f:
        for task in sorted(os.listdir(f"/proc/{pid}/task")):
            for what in ("comm", "wchan", "stack"):
                try:
                    with open(f"/proc/{pid}/task/{task}/{what}") as src:
                        f.write(f"--- task {task} {what}\n{src.read()}\n")
                except OSError as e:
                    f.write(f"--- task {task} {what}: {e}\n")
        f.flush()
        if shutil.which("gdb"):
            subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           stdout=f, stderr=subprocess.STDOUT, timeout=60, check=False)
    print(f"chaos: the broker did not answer; its stacks are in {out}", flush=True)


class ClusterNemesis:
    """The cluster faults on a `cluster.ShoalCluster` whose topic is created. One at a time:
    each fault is healed (the node restarted and answering, the network whole) before
    `inject` returns. The events name the node id (`node`) and, for the leader kinds, the key
    whose partition's leader was chosen."""

    def __init__(self, cluster, history, rng, keys):
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.keys = list(keys)  # key -> partition: workload.partition_of
        self.counts = {}

    @property
    def restart_s(self):
        return self.cluster.restart_s

    def available(self):
        return list(CLUSTER_KINDS)

    def _event(self, f, **value):
        self.history.nemesis(f, value)

    def inject(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        getattr(self, "_" + kind.replace("-", "_"))()

    def _leader(self):
        """(node id, key) of a random key's partition, as Metadata names it now."""
        key = self.rng.choice(self.keys)
        return self.cluster.leader_of(int(key[1:])), key

    def _restart(self, node):
        try:
            p = self.cluster.start(node)
        except Exception:
            p = self.cluster.procs[node]
            if p.running():
                dump_stacks(p.pid, os.path.dirname(p.log_path))
            raise
        self._event("start", node=node, pid=p.pid, generation=p.generation)

    def _kill9(self, node, **why):
        p = self.cluster.procs[node]
        self._event("kill", node=node, pid=p.pid, **why)
        p.kill()
        time.sleep(self.rng.uniform(0.1, 2.0))
        self._restart(node)

    def _kill_leader(self):
        node, key = self._leader()
        self._kill9(node, leader_of=key)

    def _kill_any(self):
        self._kill9(self.rng.randrange(self.cluster.n))

    def _pause_leader(self):
        node, key = self._leader()
        p = self.cluster.procs[node]
        pause_s = self.rng.uniform(1.0, 4.0)
        self._event("stop", node=node, pid=p.pid, leader_of=key, seconds=round(pause_s, 2))
        p.pause()
        try:
            time.sleep(pause_s)
        finally:
            p.resume()
        self._event("cont", node=node, pid=p.pid)

    def _partition_leader(self):
        node, key = self._leader()
        hold_s = self.rng.uniform(3.0, 8.0)
        self._event("partition", node=node, isolated=[node], leader_of=key,
                    seconds=round(hold_s, 2))
        self.cluster.net.isolate(node + 1)
        try:
            time.sleep(hold_s)
        finally:
            self.cluster.net.heal()
        self._event("heal", node=node)

    def _rolling_restart(self):
        order = list(range(self.cluster.n))
        self.rng.shuffle(order)
        for node in order:
            p = self.cluster.procs[node]
            self._event("term", node=node, pid=p.pid, rolling=True)
            rc, clean = p.stop()
            if clean is not True or rc != 0:
                raise RuntimeError(f"node {node} did not stop cleanly on SIGTERM (rc {rc}, "
                                   f"clean {clean}); its log: {p.log_path}")
            self._restart(node)
            # As an operator would: the next node only once every partition is led and has
            # all its replicas in sync again (as far as Metadata tells).
            views = self.cluster.wait_leaders(full_isr=True)
            self._event("leaders", node=node,
                        leaders={str(k): v[0] for k, v in sorted(views.items())})

    def heal(self):
        """Every node running and answering, the network whole, every partition led."""
        self.cluster.net.heal()
        for node, p in self.cluster.procs.items():
            p.resume()
            if not p.running():
                self._restart(node)
        self.cluster.wait_leaders()
