"""The fault suite's history: one JSON object per line, one line per event.

    {"index": 12, "time_ns": 803412, "process": 3, "type": "invoke", "f": "send",
     "value": [["send", "k1", 40]]}
    {"index": 15, "time_ns": 901377, "process": 3, "type": "ok", "f": "send",
     "value": [["send", "k1", [17, 40]]]}

`index` increases by one per event, `time_ns` is monotonic nanoseconds since the writer was
opened; both are assigned under one lock, so the file order, the index order and the time
order agree. Every client operation is an "invoke" followed by exactly one completion of the
same process ("ok", "fail" or "info"). Fault-injector events have process "nemesis" and type
"info". Any further fields (error, group, revoked, ...) are free-form. See README.md.
"""

import json
import threading
import time

TYPES = ("invoke", "ok", "fail", "info")
COMPLETIONS = ("ok", "fail", "info")
NEMESIS = "nemesis"
CORE_FIELDS = ("index", "time_ns", "process", "type", "f", "value")


class HistoryWriter:
    """Appends events to a JSON-lines file; safe to share between threads.

    Each event is written and flushed before the call returns, so a runner that dies keeps
    every event it recorded (at worst the last line is cut short, which the reader tolerates).
    """

    def __init__(self, path_or_file, clock=time.monotonic_ns):
        if hasattr(path_or_file, "write"):
            self._file, self._owned = path_or_file, False
        else:
            # "x": a history is one run; appending to an old one would interleave two runs.
            self._file, self._owned = open(path_or_file, "x", encoding="utf-8"), True
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._next = 0
        self._closed = False

    def append(self, process, type, f, value, **extra):
        """Writes one event and returns it (a dict, with its index and time)."""
        if type not in TYPES:
            raise ValueError(f"event type {type!r} is not one of {TYPES}")
        clash = set(extra) & set(CORE_FIELDS)
        if clash:
            raise ValueError(f"extra fields {sorted(clash)} would overwrite core fields")
        with self._lock:
            if self._closed:
                raise ValueError("history writer is closed")
            event = {"index": self._next, "time_ns": self._clock() - self._t0,
                     "process": process, "type": type, "f": f, "value": value}
            event.update(extra)
            # default=repr: a stray non-JSON extra (an exception object) must not kill a run.
            line = json.dumps(event, separators=(",", ":"), default=repr)
            self._file.write(line + "\n")
            self._file.flush()
            self._next += 1
        return event

    def invoke(self, process, f, value, **extra):
        return self.append(process, "invoke", f, value, **extra)

    def complete(self, process, type, f, value, **extra):
        if type not in COMPLETIONS:
            raise ValueError(f"completion type {type!r} is not one of {COMPLETIONS}")
        return self.append(process, type, f, value, **extra)

    def ok(self, process, f, value, **extra):
        return self.complete(process, "ok", f, value, **extra)

    def fail(self, process, f, value, **extra):
        return self.complete(process, "fail", f, value, **extra)

    def info(self, process, f, value, **extra):
        return self.complete(process, "info", f, value, **extra)

    def nemesis(self, f, value=None, **extra):
        """A fault-injector event ("kill", "stop", "cont", "partition", "heal", "start"...)."""
        return self.append(NEMESIS, "info", f, value, **extra)

    @property
    def count(self):
        with self._lock:
            return self._next

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._file.flush()
            if self._owned:
                self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HistoryReader:
    """Iterates the events of a history file, one dict per line, without loading the file.

    A last line cut short (no newline, not valid JSON: the writer was killed mid-line) is
    skipped and noted in `truncated_tail`; an invalid line anywhere else raises ValueError.
    """

    def __init__(self, path):
        self.path = path
        self.truncated_tail = False
        self.lines = 0

    def __iter__(self):
        self.truncated_tail = False
        self.lines = 0
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    # Only the file's last line can lack its newline.
                    if not line.endswith("\n"):
                        self.truncated_tail = True
                        return
                    raise ValueError(f"{self.path}:{n}: not a JSON event: {line[:120]!r}")
                self.lines += 1
                yield event


def read_history(path):
    """All events of a history file as a list (see HistoryReader for streaming)."""
    return list(HistoryReader(path))


def validate_event(event):
    """The problems of one event's shape, as a list of strings (empty when it is well formed)."""
    if not isinstance(event, dict):
        return [f"event is not an object: {event!r:.80}"]
    problems = [f"missing field {k!r}" for k in ("index", "process", "type", "f")
                if k not in event]
    if "index" in event and (not isinstance(event["index"], int)
                             or isinstance(event["index"], bool)):
        problems.append(f"index {event['index']!r} is not an integer")
    if "type" in event and event["type"] not in TYPES:
        problems.append(f"type {event['type']!r} is not one of {TYPES}")
    return problems
