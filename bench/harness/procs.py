"""Processes started by the harness: each one is stopped here, by its PID, and nothing else is.

CPU and peak memory are read from /proc, so that an app's cost is measured from outside it, the
same way for every peer.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# What a started app inherits from the harness's environment: enough to run, nothing that could
# change its configuration (a REDIS_URL or NEAR_CACHE left in the caller's shell, say).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def app_env(extra):
    """The inherited variables plus `extra`; an `extra` value of None leaves the variable out."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Process:
    """One process started here, its output in a log file."""

    def __init__(self, argv, env, log_path):
        self.name = Path(argv[0]).name
        self.log_path = log_path
        self._log = open(log_path, "w")
        try:
            self._p = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError:
            self._log.close()
            raise
        self.pid = self._p.pid

    def alive(self):
        return self._p.poll() is None

    def wait_for_port(self, port, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with status {self._p.returncode}, see {self.log_path}"
                )
            if port_open(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on port {port} within {seconds} s")

    def _stat_fields(self):
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # the command name may hold spaces and parentheses: fields start after the last ")"
        return stat[stat.rindex(")") + 2 :].split()

    def cpu_seconds(self):
        """User + system CPU of the process, all its threads together."""
        f = self._stat_fields()
        return (int(f[11]) + int(f[12])) / CLK_TCK

    def peak_rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def stop(self, grace=15):
        """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
        try:
            if self._p.poll() is None:
                self._p.send_signal(signal.SIGTERM)
                try:
                    self._p.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._p.kill()
                    self._p.wait(timeout=5)
        finally:
            self._log.close()
