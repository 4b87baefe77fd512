"""The comparison: interleaved rounds over the peers, each route under wrk, and the accounting.

Round 1 of a peer: start → tutorial flow check → log in USERS users → per route: MONITOR sample,
visits before, wrk, visits after → lost-update test → bytes per session and key layout → stop.
Later rounds repeat the login, the routes and the lost-update test. Rounds are interleaved
(C D E …, C D E …) so that a burst of load from elsewhere on the machine hits one round of
every peer rather than every round of one peer; the report keeps each peer's best round.
"""

import datetime as dt
import http.client
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import chart, checks, load, report
from .peers import PEERS, Peer
from .procs import Process, app_env, free_port, port_open
from .report import fmt
from .resp import SCRIPT_CMDS, Redis, calls_between, connect, monitor, snapshot
from .settings import Settings
from .web import Client, fan_out

SESSION_TTL = "1800"


@dataclass
class Bench:
    """What every step of a run needs: the knobs and the harness's redis-server."""

    settings: Settings
    redis: Redis
    redis_port: int

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}"


@dataclass
class App:
    """A started peer, with the users logged in to it for this round."""

    peer: Peer
    proc: Process
    port: int
    cookies: list  # the Cookie header of each user
    cookie_file: Path  # the same, one per line, for wrk


def log(*parts):
    print(f"[bench {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def file_tag(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "root"


def start_app(bench, peer, rnd):
    settings = bench.settings
    port = free_port()
    extra = {"PORT": str(port), "REDIS_URL": bench.redis_url, "SESSION_TTL": SESSION_TTL}
    extra.update(
        {
            k: (v.replace("{port}", str(port)) if v is not None else None)
            for k, v in peer.env.items()
        }
    )
    proc = Process(
        peer.argv(settings), app_env(extra), settings.raw / f"app_{peer.id}_r{rnd + 1}.log"
    )
    try:
        proc.wait_for_port(port)
        # Listening is not the same as ready: wait until the app answers (it may still be
        # connecting to Redis).
        deadline = time.monotonic() + 30
        while True:
            c = Client(port, timeout=5)
            try:
                if c.get("/").status == 200:
                    return proc, port
            except (OSError, http.client.HTTPException):
                pass
            finally:
                c.close()
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{peer.id} does not answer GET / with 200, see {proc.log_path}")
            time.sleep(0.1)
    except BaseException:
        proc.stop()
        raise


# Commands an app sends on a timer, not per request (cloakroom's near-cache checks its channel
# four times a second): counted in a short MONITOR sample, they would read as per-request.
BACKGROUND_CMDS = frozenset({"role", "ping", "hello", "client", "cluster"})


def direct_per_request(bench, port, route, cookies):
    """Commands other than script calls that the app sends per request on this route, from a
    MONITOR sample (commands sent on a timer left out). INFO commandstats
    counts the commands a Lua script runs as if they had been sent, so for an app that runs
    scripts, what crossed the wire is its script calls (from commandstats) plus these. (Taking
    the sample's inner commands per script call off commandstats instead would be wrong when a
    script takes another path during the sample than under load: a first visit creates the
    counter, later ones only increment it.)"""
    picks = [cookies[i % len(cookies)] for i in range(bench.settings.monitor_sample)]

    def requests():
        fan_out(port, picks, lambda client, cookie: client.get(route, cookie), workers=1)

    sent, from_lua = monitor(bench.redis_port, requests)
    direct = sum(
        calls
        for cmd, calls in sent.items()
        if cmd not in SCRIPT_CMDS and cmd not in BACKGROUND_CMDS
    )
    return direct / len(picks), dict(sent), dict(from_lua)


def measure_route(bench, app, route, tag):
    settings, r = bench.settings, bench.redis
    peer, proc, port, cookies = app.peer, app.proc, app.port, app.cookies
    rec = dict(route=route)
    if peer.uses_redis:
        direct, sample_sent, sample_lua = direct_per_request(bench, port, route, cookies)
        rec["monitor_sample"] = dict(
            requests=settings.monitor_sample, sent=sample_sent, from_lua=sample_lua
        )
    before = checks.visits_of(port, cookies) if peer.has_session else None
    a = snapshot(r) if peer.uses_redis else None
    cpu0 = proc.cpu_seconds()
    w = load.wrk(settings, port, route, app.cookie_file, settings.raw / f"wrk_{tag}.txt")
    # requests still in flight when wrk stopped finish now, inside the accounting window
    time.sleep(settings.settle)
    cpu1 = proc.cpu_seconds()
    b = snapshot(r) if peer.uses_redis else None
    rec["wrk"] = w
    reqs = w["requests"] or 0
    if reqs:
        rec["app_cpu_us"] = (cpu1 - cpu0) / reqs * 1e6
    if reqs and peer.uses_redis:
        calls = calls_between(a, b)
        executed = sum(calls.values())
        scripts = sum(n for cmd, n in calls.items() if cmd in SCRIPT_CMDS)
        if not scripts:
            sent = executed / reqs
        else:
            sent = scripts / reqs + direct
        rec.update(
            cmds_executed=executed / reqs,
            cmds_sent=sent,
            script_calls=scripts / reqs,
            round_trips=peer.round_trips(route, sent) if sent is not None else None,
            read_events=(b.reads - a.reads) / reqs,
            net_in=(b.net_in - a.net_in) / reqs,
            net_out=(b.net_out - a.net_out) / reqs,
            redis_cpu_us=(b.cpu - a.cpu) / reqs * 1e6,
            mix={cmd: n / reqs for cmd, n in sorted(calls.items(), key=lambda kv: -kv[1])},
        )
    if before is not None:
        after = checks.visits_of(port, cookies)
        if None in before or None in after:
            rec["not_logged_in_after"] = sum(v is None for v in after)
        else:
            # every GET of the check counts one visit itself
            rec["counted"] = sum(x - y - 1 for x, y in zip(after, before))
    log(
        peer.id,
        route,
        f"{w['rps']:,.0f} req/s p99={w['p99']} ms",
        f"sent/req={fmt(rec.get('cmds_sent'), 2)}" if peer.uses_redis else "",
        f"errors={w['socket_errors'] + w['non2xx']}",
    )
    return rec


def peer_round(bench, peer, rnd, res):
    settings, r = bench.settings, bench.redis
    if peer.uses_redis:
        r.call("FLUSHALL")
    proc, port = start_app(bench, peer, rnd)
    try:
        if rnd == 0 and peer.has_session:
            res["flow_notes"] = checks.flow_check(port)
            log(peer.id, "tutorial flow", "ok" if not res["flow_notes"] else res["flow_notes"])
            if peer.uses_redis:
                r.call("FLUSHALL")
        if peer.has_session:
            t0 = time.monotonic()
            cookies = checks.login_users(port, [f"user{i:05d}" for i in range(settings.users)])
            log(peer.id, f"logged in {len(cookies)} users in {time.monotonic() - t0:.1f} s")
        else:  # the same requests, with a cookie the app ignores
            cookies = [f"sid={i:032x}" for i in range(settings.users)]
        cookie_file = settings.raw / f"cookies_{peer.id}.txt"
        cookie_file.write_text("\n".join(cookies) + "\n")
        app = App(peer, proc, port, cookies, cookie_file)
        this = dict(routes={})
        for route in settings.routes:
            tag = f"{peer.id}_{file_tag(route)}_r{rnd + 1}"
            this["routes"][route] = measure_route(bench, app, route, tag)
        if peer.has_session:  # its result swings with scheduling: every round
            this["lost"] = checks.lost_updates(port, settings.lost_n, settings.lost_conc)
            log(peer.id, "lost-update test", this["lost"])
        if rnd == 0 and peer.uses_redis and peer.has_session:
            res["memory"] = checks.bytes_per_session(r, port, settings.mem_users)
            log(peer.id, "memory", res["memory"])
            res["layout"] = checks.layout(r, port)
        res["peak_rss_kib"] = max(res.get("peak_rss_kib") or 0, proc.peak_rss_kib() or 0)
        res["rounds"].append(this)
    finally:
        proc.stop()
        if peer.uses_redis:
            r.call("FLUSHALL")


def _stop_on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")  # the finally blocks stop what was started


def start_redis(settings):
    port = settings.redis_port or free_port()
    if port_open(port):
        raise SystemExit(f"port {port} is in use; set REDIS_PORT to a free one")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(settings.raw)]
    # No persistence: no snapshot or log write competes with the measured requests.
    argv += ["--save", "", "--appendonly", "no"]
    return Process(argv, app_env({}), settings.raw / "redis.log"), port


def run_rounds(bench, results, meta):
    r = bench.redis
    meta["redis_version"] = r.info("server")["redis_version"]
    r.call("FLUSHALL")
    ceiling = []
    if bench.settings.redis_bench:
        ceiling = load.redis_benchmark(bench.settings, bench.redis_port, log)
        r.call("FLUSHALL")
    rounds = bench.settings.rounds
    for rnd in range(rounds):
        for pid in bench.settings.apps:
            if results[pid].get("error"):
                continue
            log(f"=== {pid} round {rnd + 1}/{rounds}")
            try:
                peer_round(bench, PEERS[pid], rnd, results[pid])
            except Exception as e:  # noqa: BLE001 - the other peers still run
                log(pid, "FAILED:", repr(e))
                results[pid]["error"] = repr(e)
    return ceiling


def main():
    settings = Settings.from_env()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    demo = any(PEERS[a].is_demo for a in settings.apps)
    if demo and not os.access(settings.cloakroom_bin or "", os.X_OK):
        raise SystemExit(
            f"CLOAKROOM_BIN={settings.cloakroom_bin!r} is not an executable "
            "(bench/compare builds it; or name a cloakroom-demo binary)"
        )
    settings.raw.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    meta = dict(
        start=dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        cores=os.cpu_count(),
        kernel=os.uname().release,
        load_start=loadavg(),
    )
    results = {a: dict(rounds=[]) for a in settings.apps}
    redis_proc, redis_port = start_redis(settings)
    try:
        r = connect(redis_port)
        try:
            ceiling = run_rounds(Bench(settings, r, redis_port), results, meta)
        finally:
            r.close()
    finally:
        redis_proc.stop()
    meta["wall_s"] = time.monotonic() - t0
    meta["load_end"] = loadavg()
    everything = dict(meta=meta, results=results, redis_ceiling=ceiling)
    (settings.raw / "results.json").write_text(json.dumps(everything, indent=1, default=str))
    (settings.results / "latest.svg").write_text(chart.bars(settings, results, meta))
    md = report.markdown(settings, results, ceiling, meta, chart_file="latest.svg")
    (settings.results / "latest.md").write_text(md)
    print(md)
