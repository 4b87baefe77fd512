"""The load generators: wrk against an app, redis-benchmark against the redis-server."""

import os
import re
import subprocess
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "random_cookie.lua"
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(token):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", token)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def wrk(settings, port, route, cookie_file, raw_path):
    """One wrk run: GET `route` with the cookie of a random user. Bounded by `timeout`."""
    cmd = [
        "timeout",
        str(settings.wrk_duration + 30),
        "wrk",
        f"-t{settings.wrk_threads}",
        f"-c{settings.wrk_conns}",
        f"-d{settings.wrk_duration}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}{route}",
    ]
    env = dict(os.environ, COOKIE_FILE=str(cookie_file), WRK_PATH=route)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    raw_path.write_text(p.stdout + p.stderr)
    out = p.stdout
    res = dict(requests=None, rps=None, p50=None, p99=None, socket_errors=0, non2xx=0)
    if m := re.search(r"(\d+) requests in", out):
        res["requests"] = int(m.group(1))
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", out, re.M):
            res[f"p{pct}"] = _ms(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        res["socket_errors"] = sum(map(int, m.groups()))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        res["non2xx"] = int(m.group(1))
    if res["rps"] is None:
        raise RuntimeError(
            f"wrk gave no result (exit {p.returncode}): {(p.stderr or out)[-200:]!r}"
        )
    return res


# What the peers' routes ask of Redis, as redis-benchmark can send it: the most this server does
# on this machine, with a client that shares the machine as the apps do.
CEILING = [
    ("HINCRBY (-P 1)", ["-n", "200000", "-P", "1"], ["HINCRBY", "rb:__rand_int__", "visits", "1"]),
    (
        "HINCRBY, pipelined (-P 16)",
        ["-n", "2000000", "-P", "16"],
        ["HINCRBY", "rb:__rand_int__", "visits", "1"],
    ),
    ("HGET (-P 1)", ["-n", "200000", "-P", "1"], ["HGET", "rb:__rand_int__", "visits"]),
    ("EXPIRE (-P 1)", ["-n", "200000", "-P", "1"], ["EXPIRE", "rb:__rand_int__", "1800"]),
]


def redis_benchmark(settings, port, log):
    """Each benchmark `redis_bench_reps` times, interleaved; the best of each is reported."""
    runs = {label: [] for label, _, _ in CEILING}
    for _ in range(settings.redis_bench_reps):
        for label, extra, command in CEILING:
            cmd = [
                "timeout",
                "90",
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-c",
                str(settings.wrk_conns),
                "-r",
                str(settings.users),
                "--csv",
                *extra,
                *command,
            ]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            rows = [line for line in p.stdout.splitlines() if line.strip()]
            if len(rows) < 2:
                log("redis-benchmark", label, "failed:", (p.stderr or p.stdout)[-200:])
                continue
            header = [h.strip('"') for h in rows[0].split(",")]
            # the first column (the command) may hold commas: read the numbers from the right
            values = [v.strip('"') for v in rows[-1].split(",")][-(len(header) - 1) :]
            rec = {h: float(v) for h, v in zip(header[1:], values)}
            runs[label].append(rec)
            log("redis-benchmark", label, rec.get("rps"))
    out = []
    for label, recs in runs.items():
        best = max(recs, key=lambda x: x.get("rps", 0), default=None)
        out.append(dict(label=label, best=best, all_rps=[x.get("rps") for x in recs]))
    return out
