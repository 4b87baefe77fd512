"""A small Redis client (RESP2 over one socket): what the harness asks of its redis-server.

INFO snapshots give the per-request accounting; a MONITOR sample tells the commands an app
sent from the ones its Lua scripts ran inside Redis, which INFO counts alike.
"""

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

# Commands that run Lua (or a function) inside Redis: each is one command on the wire, and the
# commands it runs show up in INFO commandstats as if they had been sent too.
SCRIPT_CMDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})

# Commands the harness itself sends while an app is measured.
HARNESS_CMDS = frozenset({"info", "monitor"})


class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rb")

    def close(self):
        self._file.close()
        self._sock.close()

    def send(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self._sock.sendall(b"".join(parts))

    def call(self, *args):
        self.send(*args)
        return self.read()

    def read(self):
        line = self._file.readline()
        if not line:
            raise ConnectionError("redis-server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RedisError(f"unexpected reply {line[:40]!r}")

    def info(self, section):
        """INFO `section` as a dict of its `key:value` lines (values left as text)."""
        text = self.call("INFO", section).decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and ":" in line:
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def scan_all(self):
        cursor, keys = "0", []
        while True:
            cursor, batch = self.call("SCAN", cursor, "COUNT", 1000)
            keys += batch
            cursor = cursor.decode()
            if cursor == "0":
                return keys

    def wait_ready(self, seconds=10):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.call("PING")
            except RedisError as e:  # LOADING
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not ready: {e}") from None
                time.sleep(0.05)


def connect(port, seconds=10):
    """A connection to a redis-server that is starting up."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            r = Redis(port)
            r.wait_ready(seconds)
            return r
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Snapshot:
    calls: dict  # command -> calls, from INFO commandstats
    reads: int  # total_reads_processed: socket reads Redis made
    net_in: int
    net_out: int
    cpu: float  # used_cpu_user + used_cpu_sys, seconds
    used_memory: int


def snapshot(r):
    stats, cpu, mem = r.info("stats"), r.info("cpu"), r.info("memory")
    calls = {}
    for k, v in r.info("commandstats").items():
        fields = dict(x.split("=", 1) for x in v.split(","))
        calls[k[len("cmdstat_") :]] = int(fields["calls"])
    return Snapshot(
        calls=calls,
        reads=int(stats.get("total_reads_processed", 0)),
        net_in=int(stats["total_net_input_bytes"]),
        net_out=int(stats["total_net_output_bytes"]),
        cpu=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        used_memory=int(mem["used_memory"]),
    )


def calls_between(a, b):
    """Calls per command between two snapshots, without the harness's own INFO calls."""
    out = {}
    for cmd, n in b.calls.items():
        # subcommands are listed as "parent|sub" (client|list, script|load)
        if cmd.split("|")[0] in HARNESS_CMDS:
            continue
        d = n - a.calls.get(cmd, 0)
        if d:
            out[cmd] = d
    return out


# +1700000000.123456 [0 127.0.0.1:54321] "evalsha" "..."   (a Lua call shows "[0 lua]")
MONITOR_LINE = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]*)"')


def monitor(port, action):
    """Runs `action()` while MONITOR watches; returns (sent, from_lua): Counters of commands the
    clients sent and commands Lua scripts ran. MONITOR slows Redis down, so it only watches a
    short sample, never a measured run."""
    r = Redis(port)
    lines = []
    r.send("MONITOR")
    if r.read() != "OK":
        raise RuntimeError("MONITOR refused")

    def reader():
        try:
            for line in r._file:
                lines.append(line)
        except (OSError, ValueError):
            pass  # closed below

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        action()
        time.sleep(0.3)  # let the last lines arrive
    finally:
        r._sock.shutdown(socket.SHUT_RDWR)
        t.join(5)
        r.close()
    sent, from_lua = Counter(), Counter()
    for line in lines:
        m = MONITOR_LINE.match(line)
        if not m:
            continue
        cmd = m.group(2).decode(errors="replace").lower()
        (from_lua if m.group(1) == b"lua" else sent)[cmd] += 1
    return sent, from_lua
