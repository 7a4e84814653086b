#!/usr/bin/env python3
"""Bytes and round trips of idle fetches with and without a KIP-227 fetch session.

    benches/fetch-sessions/run.py --bootstrap HOST:PORT [--partitions 1000] [--fetches 200]

Creates a topic with --partitions partitions (one record each, acks=all), then sends raw Fetch
v11 requests for every partition at its log end (nothing new, max_wait_ms 0) on one connection:

  sessionless  session_id 0, epoch -1: every request and answer lists every partition;
  session      one full fetch (session 0, epoch 0) opens a session, then the incremental
               fetches (epoch 1, 2, ...) list no partitions, and the answers list only the
               partitions that changed (none).

Prints bytes per request and per answer and the median and p99 round trip of each mode (the
round trips are for ratios within one run; the machine is shared). Raw frames, so the byte
counts are exact and the same for any broker; it is the client side of what librdkafka (no
KIP-227) and the Java client (KIP-227) send.
"""
import argparse
import socket
import statistics
import struct
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation = 0

    def call(self, api_key, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + kstr("fetch-sessions-bench")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        payload = self._read(size)
        (correlation,) = struct.unpack(">i", payload[:4])
        assert correlation == self.correlation, (correlation, self.correlation)
        return len(frame) + 4, size + 4, payload[4:]

    def _read(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)


def fetch_v11(session_id, epoch, topic, partitions):
    body = struct.pack(">iiiibii", -1, 0, 1, 50 << 20, 0, session_id, epoch)
    if partitions:
        body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", len(partitions))
        for p, offset in partitions:
            body += struct.pack(">iiqqi", p, -1, offset, -1, 1 << 20)
    else:
        body += struct.pack(">i", 0)
    body += struct.pack(">i", 0)  # forgotten topics
    body += kstr("")  # rack id
    return body


def parse_top(payload):
    """(error_code, session_id, partitions answered) of a Fetch v11 answer."""
    _throttle, error, session = struct.unpack(">ihi", payload[:10])
    (topics,) = struct.unpack(">i", payload[10:14])
    pos, answered = 14, 0
    for _ in range(topics):
        (n,) = struct.unpack(">h", payload[pos:pos + 2])
        pos += 2 + n
        (parts,) = struct.unpack(">i", payload[pos:pos + 4])
        pos += 4
        for _ in range(parts):
            _p, perr, _hw, _lso, _ls = struct.unpack(">ihqqq", payload[pos:pos + 30])
            assert perr == 0, f"partition error {perr}"
            pos += 30
            (aborted,) = struct.unpack(">i", payload[pos:pos + 4])
            pos += 4 + max(aborted, 0) * 16
            pos += 4  # preferred read replica
            (rlen,) = struct.unpack(">i", payload[pos:pos + 4])
            pos += 4 + max(rlen, 0)
            answered += 1
    return error, session, answered


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--fetches", type=int, default=200)
    ap.add_argument("--label", default="broker")
    a = ap.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    topic = "fetch-sessions-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=60000)
    admin.create_topics([NewTopic(topic, a.partitions, 1)], timeout_ms=60000)
    admin.close()
    prod = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", linger_ms=20)
    deadline = time.time() + 60
    while True:
        try:
            futures = [prod.send(topic, b"x", partition=p) for p in range(a.partitions)]
            for f in futures:
                f.get(timeout=60)
            break
        except Exception as e:  # metadata of a fresh topic may lag on the peer
            if time.time() > deadline:
                raise
            print(f"produce retry: {e}", file=sys.stderr)
            time.sleep(1)
    prod.close()
    parts = [(p, 1) for p in range(a.partitions)]
    conn = Conn(host, int(port))

    rows = {}
    # sessionless
    req_b, resp_b, rtts = [], [], []
    for _ in range(a.fetches):
        t0 = time.perf_counter()
        rq, rs, payload = conn.call(1, 11, fetch_v11(0, -1, topic, parts))
        rtts.append(time.perf_counter() - t0)
        err, _sid, answered = parse_top(payload)
        assert err == 0 and answered == a.partitions, (err, answered)
        req_b.append(rq)
        resp_b.append(rs)
    rows["sessionless"] = (statistics.mean(req_b), statistics.mean(resp_b), rtts)

    # full fetch opening a session, then incremental ones
    rq, rs, payload = conn.call(1, 11, fetch_v11(0, 0, topic, parts))
    err, sid, answered = parse_top(payload)
    assert err == 0 and sid > 0 and answered == a.partitions, (err, sid, answered)
    full = (rq, rs)
    req_b, resp_b, rtts = [], [], []
    for epoch in range(1, a.fetches + 1):
        t0 = time.perf_counter()
        rq, rs, payload = conn.call(1, 11, fetch_v11(sid, epoch, topic, []))
        rtts.append(time.perf_counter() - t0)
        err, sid2, answered = parse_top(payload)
        assert err == 0 and sid2 == sid and answered == 0, (err, sid2, answered)
        req_b.append(rq)
        resp_b.append(rs)
    rows["incremental"] = (statistics.mean(req_b), statistics.mean(resp_b), rtts)

    print(f"{a.label}: {a.partitions} partitions, {a.fetches} idle fetches per mode")
    print(f"  full fetch opening the session: request {full[0]} B, answer {full[1]} B")
    print(f"  {'mode':<12} {'request B':>10} {'answer B':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, (rq, rs, rtts) in rows.items():
        print(f"  {mode:<12} {rq:>10.0f} {rs:>10.0f} {pct(rtts, 0.5) * 1e3:>8.3f} {pct(rtts, 0.99) * 1e3:>8.3f}")
    sl, inc = rows["sessionless"], rows["incremental"]
    print(f"  ratio sessionless/incremental: bytes {(sl[0] + sl[1]) / (inc[0] + inc[1]):.0f}x, "
          f"p50 round trip {pct(sl[2], 0.5) / pct(inc[2], 0.5):.1f}x")


if __name__ == "__main__":
    main()
