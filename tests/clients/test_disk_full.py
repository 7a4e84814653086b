"""The data disk fills up: a 400 MiB ext4 the test creates and loop-mounts (root only), holding
the broker's data directory and its log file. Producers write until the disk is full; then:
the broker is still up (logging to the full disk cannot abort it), produce is refused with a
storage error, offset commits and reads still work, DeleteTopics frees space, and the partition
that went offline on the full disk comes back by itself with every acknowledged record, without
a restart."""

import os
import shutil
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import Broker, _stop
from helpers import admin_client, consume_partitions, create_topics, producer, unique_topic, wait_for

FS_MIB = 400


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: the disk-full test mounts a loop file system and needs root")
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"SKIPPED LOUDLY: {tool} is missing")
    image = tmp_path / "disk.img"
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", f"{FS_MIB}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot loop-mount ({mounted.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def metric(broker, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/metrics", timeout=5).read()
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def fill(bootstrap, topics, value_bytes=64 * 1024, limit_mib=2 * FS_MIB):
    """Produces to `topics` until deliveries fail; returns {(topic, partition): acked count}."""
    acked, failed = {}, []

    def report(err, msg):
        if err is None:
            key = (msg.topic(), msg.partition())
            acked[key] = acked.get(key, 0) + 1
        else:
            failed.append(err)

    p = producer(bootstrap, acks="all", **{"linger.ms": 20, "message.timeout.ms": 15000,
                                           "retries": 0, "batch.size": 1 << 20})
    value = os.urandom(value_bytes)
    sent = 0
    while not failed and sent < limit_mib * 1024 * 1024:
        for topic in topics:
            p.produce(topic, value=value, on_delivery=report)
            sent += value_bytes
        p.poll(0)
        if sent % (16 << 20) < value_bytes * len(topics):
            p.flush(30)
    p.flush(30)
    assert failed, f"the disk never filled ({sent >> 20} MiB sent)"
    return acked, failed


def space_report(broker, mount):
    """What holds the disk, for a failed wait: free space, the data directory's largest
    files, and files the broker keeps open after they were deleted."""
    st = os.statvfs(mount)
    lines = [f"free {st.f_bavail * st.f_frsize >> 20} MiB of {st.f_blocks * st.f_frsize >> 20} MiB"]
    sizes = []
    for root, _, files in os.walk(broker.data_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                sizes.append((os.stat(path).st_blocks * 512, path))
            except OSError:
                pass
    sizes.sort(reverse=True)
    lines += [f"  {size >> 20} MiB {path}" for size, path in sizes[:10]]
    fd_dir = f"/proc/{broker.pid}/fd"
    try:
        deleted = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
    except OSError as e:
        deleted = [f"cannot list {fd_dir}: {e}"]
    lines += [f"  open, deleted: {link}" for link in deleted if "(deleted)" in link]
    return "\n".join(lines)


def commit(bootstrap, group, topic, offset):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        got = c.committed([TopicPartition(topic, 0)], timeout=10)
        return got[0].offset
    finally:
        c.close()


def produce_one(bootstrap, topic):
    errors = []
    p = producer(bootstrap, acks="all", **{"message.timeout.ms": 5000, "retries": 0})
    p.produce(topic, value=b"after",
              on_delivery=lambda err, msg: errors.append(None if err is None else str(err)))
    p.flush(10)
    return errors[0] if errors else "no delivery report"


def test_a_full_disk_keeps_metadata_offsets_and_reads_working(small_fs):
    broker = Broker(small_fs, cores=2)
    broker.start()
    try:
        fill_a, fill_b, keep = unique_topic("fa"), unique_topic("fb"), unique_topic("keep")
        create_topics(broker.bootstrap, {fill_a: 1, fill_b: 1, keep: 1})
        p = producer(broker.bootstrap, acks="all")
        for i in range(10):
            p.produce(keep, value=b"kept-%d" % i, partition=0)
        assert p.flush(10) == 0
        assert commit(broker.bootstrap, "g-full", keep, 3) == 3

        acked, failed = fill(broker.bootstrap, [fill_a, fill_b])
        assert broker.running(), "the broker died when the disk filled:\n" + broker.stderr_tail()
        wait_for(lambda: metric(broker, "shoal_disk_full") == 1, 10, what="disk_full gauge")
        assert metric(broker, "shoal_disk_reserve_releases_total") >= 1

        # Produce is refused, with a storage error, on a partition that did not fail.
        err = produce_one(broker.bootstrap, keep)
        assert "KAFKA_STORAGE_ERROR" in err or "_MSG_TIMED_OUT" in err, err
        # Offset commits and reads go on.
        assert commit(broker.bootstrap, "g-full", keep, 7) == 7
        got, errors = consume_partitions(broker.bootstrap, keep, {0: 10})
        assert [m.value() for m in got[0]] == [b"kept-%d" % i for i in range(10)]

        # DeleteTopics frees space; produce resumes by itself.
        admin = admin_client(broker.bootstrap)
        admin.delete_topics([fill_a], operation_timeout=15, request_timeout=15)[fill_a].result(15)
        try:
            wait_for(lambda: metric(broker, "shoal_disk_full") == 0, 30,
                     what="reserve taken again")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{space_report(broker, small_fs)}\n"
                                 f"{broker.stderr_tail(80)}") from None
        assert produce_one(broker.bootstrap, keep) is None

        # The partition that went offline on the full disk is back without a restart, with
        # every record acknowledged before the disk filled.
        count_b = acked.get((fill_b, 0), 0)
        assert count_b > 0
        wait_for(lambda: produce_one(broker.bootstrap, fill_b) is None, 30,
                 what=f"{fill_b} back online")
        got, errors = consume_partitions(broker.bootstrap, fill_b, {0: count_b + 1}, timeout=60)
        assert len(got[0]) == count_b + 1 and errors == []
        assert broker.running()
    finally:
        _stop(broker)
