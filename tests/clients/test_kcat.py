"""kcat (Debian's, linking librdkafka 2.0.2: an older librdkafka than the wheel's)."""

import json
import re
import shutil
import subprocess

import pytest

from helpers import NODE_ID, create_topic, unique_topic

KCAT = shutil.which("kcat") or "/usr/bin/kcat"


def kcat(broker, *args, input=None, timeout=60):
    r = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=input, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')}"
    assert b"ERROR" not in r.stderr, r.stderr.decode(errors="replace")
    return r.stdout.decode()


def consume_lines(broker, topic, partition, fmt="%p\t%o\t%k\t%s\t%h\n"):
    out = kcat(broker, "-C", "-t", topic, "-p", str(partition), "-o", "beginning", "-e", "-q",
               "-f", fmt)
    return [line for line in out.split("\n") if line]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produce_consume(broker, codec):
    name = unique_topic(f"kcat-{codec}")
    create_topic(broker.bootstrap, name, 3)
    n = 50
    lines = "".join(f"key-{i}:value-{i}-{'x' * (i % 17)}\n" for i in range(n)).encode()
    args = ["-P", "-t", name, "-p", "1", "-K:", "-H", "h1=v1", "-H", "h2=", "-X", "acks=all"]
    if codec != "none":
        args += ["-z", codec]
    kcat(broker, *args, input=lines)

    got = consume_lines(broker, name, 1)
    assert got == [f"1\t{i}\tkey-{i}\tvalue-{i}-{'x' * (i % 17)}\th1=v1,h2=" for i in range(n)]
    # Other partitions stay empty.
    for p in (0, 2):
        assert consume_lines(broker, name, p) == []


def test_kcat_metadata_listing(broker):
    name = unique_topic("kcat-md")
    create_topic(broker.bootstrap, name, 4)
    md = json.loads(kcat(broker, "-L", "-J", "-t", name))
    assert [(b["id"], b["name"]) for b in md["brokers"]] == [(NODE_ID, broker.bootstrap)]
    [t] = md["topics"]
    assert t["topic"] == name
    assert "error" not in t, t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2, 3]
    for p in parts:
        assert p["leader"] == NODE_ID
        assert [r["id"] for r in p["replicas"]] == [NODE_ID]
        assert [r["id"] for r in p["isrs"]] == [NODE_ID]
        assert "error" not in p, p

    # Plain-text listing of all topics mentions it too.
    text = kcat(broker, "-L")
    assert re.search(rf'topic "{re.escape(name)}" with 4 partitions', text), text


def test_kcat_auto_create_and_query_offsets(broker):
    name = unique_topic("kcat-auto")
    kcat(broker, "-P", "-t", name, "-X", "acks=all",
         input="".join(f"m{i}\n" for i in range(20)).encode())
    md = json.loads(kcat(broker, "-L", "-J", "-t", name))
    assert [p["partition"] for p in md["topics"][0]["partitions"]] == [0]

    got = consume_lines(broker, name, 0, fmt="%o\t%T\t%s\n")
    rows = [line.split("\t") for line in got]
    assert [(int(o), s) for o, _, s in rows] == [(i, f"m{i}") for i in range(20)]
    stamps = [int(t) for _, t, _ in rows]
    assert all(t > 0 for t in stamps)

    target = stamps[10]
    expected = min(i for i, t in enumerate(stamps) if t >= target)
    out = kcat(broker, "-Q", "-t", f"{name}:0:{target}")
    m = re.search(r"\[0\]\s+offset\s+(-?\d+)", out)
    assert m, out
    assert int(m.group(1)) == expected

    out = kcat(broker, "-Q", "-t", f"{name}:0:{max(stamps) + 60_000}")
    m = re.search(r"\[0\]\s+offset\s+(-?\d+)", out)
    assert m and int(m.group(1)) == -1, out
