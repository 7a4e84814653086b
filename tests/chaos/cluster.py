"""Three Shoal nodes for the fault suite's cluster mode (`chaos.py --nodes 3`), each in its own
network namespace (tests/clients/netns.py), with what the cluster faults need: the nodes'
processes, the partitions' leaders from Metadata, and the waits after a fault.

Node ids are 0..n-1; node id i runs in namespace i + 1 (netns numbers nodes from 1), listens
for Kafka on <its address>:9092 and for Raft/RPC on <its address>:33145. Data and logs go to
<out>/node<i>/ (data/, shoal.log). `down()` kills every process, removes the namespaces, the
veths and the bridge, and is called by the runner in a `finally` (netns also tears down at
exit and on SIGTERM).
"""

import os
import shutil
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import netns
from test_cluster_controller import ADMIN_PORT, RPC_PORT, agreed_leader, views

KAFKA_PORT = 9092
# How long a (re)started node may take to answer, and the cluster to name every leader again.
READY_TIMEOUT_S = 60.0
LEADERS_TIMEOUT_S = 60.0


class ClusterError(Exception):
    pass


class ShoalCluster:
    def __init__(self, out, binary, cores=2, n=3, logger=None):
        self.out = out
        self.binary = binary
        self.cores = cores
        self.n = n
        self.logger = logger
        self.net = None  # the netns.Cluster
        self.procs = {}  # node id -> netns.NsProcess
        self.topic = None
        self.partitions = 0
        self._admin = None
        self.metadata_error = None  # why the last partition_views() returned None
        self.restart_s = []  # how long each restart took to answer again

    # ------------------------------------------------------------------ lifecycle
    def up(self):
        ok, reason = netns.available()
        if not ok:
            raise ClusterError(f"the cluster mode needs network namespaces: {reason}")
        removed = netns.cleanup_stale()
        if removed:
            print(f"chaos: removed netns leftovers of earlier runs: {removed}", flush=True)
        self.net = netns.Cluster(self.n, workdir=os.path.join(self.out, "netns"))
        self.net.up()
        seeds = ",".join(f"{i}@{self.ns_addr(i)}:{RPC_PORT}" for i in range(self.n))
        for i in range(self.n):
            env = {
                "SHOAL_NODE_ID": str(i),
                "SHOAL_SEEDS": seeds,
                "SHOAL_RPC_ADDR": f"{self.ns_addr(i)}:{RPC_PORT}",
                "SHOAL_RACK": f"rack-{i}",
            }
            self.procs[i] = netns.start_shoal(
                self.net, i + 1, self.binary, self.data_dir(i), port=KAFKA_PORT,
                admin_port=ADMIN_PORT, cores=self.cores, env=env, wait=False,
                log_path=self.log_path(i))
        for i in range(self.n):
            self.procs[i].wait_ready(timeout=READY_TIMEOUT_S)
        self._wait("a controller leader and every broker registered and unfenced",
                   lambda: agreed_leader(self.net, list(range(1, self.n + 1))), 30)
        return self

    def down(self):
        """Everything stopped and removed; raises if netns could not remove it all."""
        if self.net is None:
            return
        self._admin = None  # no client left trying addresses that another run may take next
        for p in self.procs.values():
            try:
                p.resume()  # a stopped process is killed as well, but do not leave it so
                p.kill()
            except Exception:
                pass
        try:
            self.net.down()
        finally:
            left = netns.leftovers(os.getpid())
            if left:
                raise ClusterError(f"netns teardown left {left}")

    def views(self):
        """Each node's /v1/cluster (controller leader and term, brokers and their fencing,
        metadata version), None for a node that does not answer within 1 s."""
        return {i - 1: v for i, v in views(self.net, list(range(1, self.n + 1))).items()}

    def drop_data(self):
        """The data dirs (segments and the disk reserve are preallocated: over 1 GiB a node)."""
        for i in range(self.n):
            shutil.rmtree(self.data_dir(i), ignore_errors=True)

    # ------------------------------------------------------------------ addressing
    def ns_addr(self, node):
        return self.net.addr(node + 1)

    def data_dir(self, node):
        return os.path.join(self.out, f"node{node}", "data")

    def log_path(self, node):
        return os.path.join(self.out, f"node{node}", "shoal.log")

    def log_paths(self):
        return [self.log_path(i) for i in range(self.n)]

    @property
    def bootstrap(self):
        return ",".join(f"{self.ns_addr(i)}:{KAFKA_PORT}" for i in range(self.n))

    def admin(self):
        if self._admin is None:
            conf = {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000}
            if self.logger is not None:
                conf["logger"] = self.logger
            self._admin = AdminClient(conf)
        return self._admin

    # ------------------------------------------------------------------ metadata
    def partition_views(self, timeout=5):
        """{partition: (leader, replicas, isrs)} of the topic from one node's Metadata, or
        None when it cannot be had (no node answered in time, the topic not listed)."""
        try:
            md = self.admin().list_topics(topic=self.topic, timeout=timeout)
        except KafkaException as e:
            self.metadata_error = e
            return None
        finally:
            self._admin.poll(0)  # delivers the client's log lines
        t = md.topics.get(self.topic)
        if t is None or t.error is not None:
            self.metadata_error = t.error if t is not None else "topic not listed"
            return None
        return {p: (v.leader, sorted(v.replicas), sorted(v.isrs))
                for p, v in t.partitions.items()}

    def leader_of(self, partition, timeout=30):
        """The leader Metadata names for a partition (a node id), waiting while it names none."""
        def led():
            v = self.partition_views()
            if v and partition in v and v[partition][0] in self.procs:
                return v[partition][0]
            return None
        return self._wait(f"a leader of {self.topic}-{partition}", led, timeout)

    def wait_leaders(self, full_isr=False, timeout=LEADERS_TIMEOUT_S):
        """Until every partition has a leader that is a running node (and, with full_isr,
        every node in its ISR). Returns the views."""
        def known():
            v = self.partition_views()
            if not v or len(v) != self.partitions:
                return None
            for leader, _, isrs in v.values():
                if leader not in self.procs or not self.procs[leader].running():
                    return None
                if full_isr and len(isrs) != self.n:
                    return None
            return v
        what = "every partition's leader" + (" and a full ISR" if full_isr else "")
        return self._wait(what, known, timeout)

    def _wait(self, what, check, timeout, interval=0.2):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last is not None and last is not False:  # node id 0 is an answer
                return last
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout}s waiting for {what} (last: {last!r}, "
                           f"last metadata error: {self.metadata_error!r}); metadata now "
                           f"{self.partition_views()}; processes "
                           f"{[(i, p.pid, p.running()) for i, p in self.procs.items()]}; "
                           f"netns faults {self.net.faults()}")

    # ------------------------------------------------------------------ processes
    def start(self, node):
        """Start a stopped node again on its data dir and wait until it answers."""
        t0 = time.monotonic()
        p = self.procs[node]
        p.start()
        p.wait_ready(timeout=READY_TIMEOUT_S)
        self.restart_s.append(time.monotonic() - t0)
        return p
