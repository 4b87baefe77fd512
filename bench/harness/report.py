"""The markdown report: one table per question, peers in the order they ran."""

import os
import platform
import re
import subprocess
from pathlib import Path

from .peers import PEERS
from .settings import BENCH

# Crates every peer built from bench/peers shares.
COMMON_CRATES = ("tokio", "hyper")


def fmt(x, digits=0):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def best_round(res, route):
    """The round in which the peer served `route` fastest: the least disturbed by other load."""
    recs = [rnd["routes"][route] for rnd in res["rounds"] if route in rnd["routes"]]
    recs = [x for x in recs if x["wrk"].get("rps")]
    return max(recs, key=lambda x: x["wrk"]["rps"]) if recs else None


def best_rps(results, pid, route):
    if pid not in results:
        return None
    b = best_round(results[pid], route)
    return b["wrk"]["rps"] if b else None


def locked_versions():
    """name -> versions in bench/peers/Cargo.lock (a crate may be there in several)."""
    lock = (BENCH / "peers" / "Cargo.lock").read_text()
    found = {}
    for name, version in re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', lock):
        found.setdefault(name, []).append(version)
    return found


def crate_cell(versions, crate):
    """The crate's locked versions: `crate` is a name, or "name@1" for its versions 1.* only."""
    name, _, major = crate.partition("@")
    found = [v for v in versions.get(name, []) if not major or v.split(".")[0] == major]
    return f"{name} {' and '.join(found) or '?'}"


def tool_versions():
    out = []
    # the first line of each, up to the build details
    for cmd, keep in (
        (["rustc", "--version"], r"rustc \S+"),
        (["redis-server", "--version"], r"v=\S+"),
        (["wrk", "-v"], r"wrk \S+"),
    ):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            m = re.search(keep, p.stdout + p.stderr)
            out.append(f"{cmd[0]} {m.group(0).split('=')[-1].split()[-1]}" if m else f"{cmd[0]} ?")
        except (OSError, subprocess.SubprocessError) as e:
            out.append(f"{cmd[0]}: {e}")
    out.append(f"Python {platform.python_version()}")
    return out


def markdown(settings, results, ceiling, meta, chart_file):
    """The whole report: one section per question, the peers in the order they ran."""
    apps = [a for a in settings.apps if a in results]
    sections = [
        header(settings, apps, meta, chart_file),
        throughput(settings, apps, results),
        cost(settings, apps, results),
        correctness(settings, apps, results),
        layout(apps, results),
        redis_ceiling(settings, ceiling),
        peers_and_versions(apps, results),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def header(s, apps, meta, chart_file):
    L = ["# Session stores side by side\n"]
    L.append(
        f"- run of {meta['start']}, {meta['wall_s']:.0f} s; {meta['cores']} cores, load "
        f"average {' '.join(meta['load_start'])} at the start and "
        f"{' '.join(meta['load_end'])} at the end. Apps, Redis, wrk and the harness share "
        "this machine: compare within this report."
    )
    L.append(
        f"- load: `wrk -t{s.wrk_threads} -c{s.wrk_conns} -d{s.wrk_duration}s --latency`, "
        f"every request GET of the route with the cookie of one of {s.users:,} logged-in "
        f"users, picked at random; {s.rounds} round(s), interleaved across peers; each figure "
        "is from the peer's best round on that route"
    )
    L.append(
        f"- Redis {meta.get('redis_version', '?')} on 127.0.0.1 (persistence off), emptied "
        "between peers"
    )
    if any(PEERS[a].is_demo for a in apps):
        rev = f" ({s.cloakroom_rev})" if s.cloakroom_rev else ""
        # Only the file name: a report is shared, the machine's paths are not its business.
        demo_log = os.environ.get("DEMO_RUST_LOG", "warn")
        L.append(f"- cloakroom: `{Path(s.cloakroom_bin).name}`{rev}, run with `RUST_LOG={demo_log}` (`DEMO_RUST_LOG`)")
    L.append(f"\n![Requests per second of each peer and route, best round]({chart_file})\n")
    return L


def throughput(s, apps, results):
    L = ["## Throughput\n"]
    L.append(
        "÷ E and ÷ F: the peer's requests per second over those of the floor E and of the "
        "hello world F on the same route.\n"
    )
    L.append(
        "| peer | route | req/s (best) | req/s per round | ÷ E | ÷ F | p50 ms | p99 ms | errors |"
    )
    L.append("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for pid in apps:
        res, name = results[pid], PEERS[pid].name
        for route in s.routes:
            b = best_round(res, route)
            if not b:
                why = "failed, see Errors" if res.get("error") else "no result"
                L.append(f"| {name} | `{route}` | {why} | | | | | | |")
                continue
            w = b["wrk"]
            rounds = [rnd["routes"][route] for rnd in res["rounds"] if route in rnd["routes"]]
            per_round = " / ".join(fmt(x["wrk"].get("rps")) for x in rounds)
            e, f = best_rps(results, "E", route), best_rps(results, "F", route)
            to_e = fmt(w["rps"] / e if e else None, 2)
            to_f = fmt(w["rps"] / f if f else None, 2)
            L.append(
                f"| {name} | `{route}` | {fmt(w['rps'])} | {per_round} | {to_e} | {to_f} | "
                f"{fmt(w['p50'], 2)} | {fmt(w['p99'], 2)} | {errors_cell(w)} |"
            )
    L.append("")
    return L


def cost(s, apps, results):
    L = ["## Cost per request\n"]
    L.append(
        "Over the wrk run of the best round (plus the settle time), divided by the requests "
        "wrk completed. Round trips: commands sent, with a pipeline counted once (E) and a "
        "script call counted once. Sent: for an app without scripts, INFO commandstats; for "
        "one with scripts, its script calls from INFO commandstats plus the other commands it "
        "sent per request in a MONITOR sample before wrk (commands sent on a timer left out). "
        "Read events: Redis's `total_reads_processed`, below the round trips "
        "when a client writes several requests' commands at once. Executed: every command "
        "Redis ran, scripts' inner commands included.\n"
    )
    L.append(
        "| peer | route | round trips/req | sent/req | read events/req | executed/req: mix | "
        "Redis bytes in / out per req | app CPU µs/req | Redis CPU µs/req | app + Redis µs/req |"
    )
    L.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for pid in apps:
        name = PEERS[pid].name
        for route in s.routes:
            b = best_round(results[pid], route)
            if not b:
                continue
            app = b.get("app_cpu_us")
            if "cmds_sent" not in b:
                no_redis = "– | – | – | no Redis | – "
                L.append(f"| {name} | `{route}` | {no_redis}| {fmt(app)} | – | {fmt(app)} |")
                continue
            mix = ", ".join(f"{k.upper()} {v:.2f}" for k, v in b["mix"].items() if v >= 0.005)
            redis_cpu = b["redis_cpu_us"]
            total = app + redis_cpu if app is not None else None
            L.append(
                f"| {name} | `{route}` | {fmt(b['round_trips'], 2)} | {fmt(b['cmds_sent'], 2)} | "
                f"{b['read_events']:.2f} | {b['cmds_executed']:.2f}: {mix or 'none'} | "
                f"{fmt(b['net_in'])} / {fmt(b['net_out'])} | {fmt(app)} | {fmt(redis_cpu, 1)} | "
                f"{fmt(total)} |"
            )
    L.append("")
    return L


def correctness(s, apps, results):
    L = ["## Correctness and memory\n"]
    L.append(
        f"Lost increments: one user, {s.lost_n:,} `GET /` with {s.lost_conc} in flight at once, "
        "then one more to read the count; lost = answered requests whose increment is not in "
        "the count. Increments during wrk on `/`: visits recorded by the users over the "
        "requests wrk completed (a little over 100 % is requests still in flight when wrk "
        f"stopped). Bytes per session: Redis `used_memory` after {s.mem_users:,} logins less "
        "before, over the sessions; keys per session counts extra keys such as an index.\n"
    )
    L.append(
        "| peer | tutorial flow | lost increments per round | increments during wrk on `/` | "
        "Redis bytes/session | keys/session | peak app RSS MiB |"
    )
    L.append("|---|---|---|---|---:|---:|---:|")
    for pid in apps:
        res, peer = results[pid], PEERS[pid]
        rss = fmt((res.get("peak_rss_kib") or 0) / 1024 or None, 1)
        if not peer.has_session:
            L.append(f"| {peer.name} | n/a | n/a | n/a | n/a | n/a | {rss} |")
            continue
        notes = res.get("flow_notes")
        flow = "n/a" if notes is None else "ok" if not notes else "FAILED: " + "; ".join(notes)
        lost = " / ".join(lost_cell(rnd.get("lost") or {}) for rnd in res["rounds"]) or "n/a"
        kept = " / ".join(
            kept_cell(rnd["routes"]["/"]) for rnd in res["rounds"] if "/" in rnd["routes"]
        )
        mem = res.get("memory") or {}
        L.append(
            f"| {peer.name} | {flow} | {lost} | {kept or 'n/a'} | "
            f"{fmt(mem.get('bytes_per_session'))} | {fmt(mem.get('keys_per_session'), 2)} | {rss} |"
        )
    counted = [
        (pid, x)
        for pid in apps
        for rnd in results[pid]["rounds"]
        for route, x in rnd["routes"].items()
        if route != "/" and x.get("counted")
    ]
    if counted:
        L.append(
            "\nRead-only routes that counted visits (they should not): "
            + ", ".join(f"{PEERS[pid].name} `{x['route']}` {x['counted']:,}" for pid, x in counted)
        )
    L.append("")
    return L


def layout(apps, results):
    stored = [(pid, results[pid]["layout"]) for pid in apps if results[pid].get("layout")]
    if not stored:
        return []
    L = ["## Stored layout (one session after its login and one visit)\n"]
    for pid, keys in stored:
        for k in keys:
            size = "" if k.get("value_bytes") is None else f"{k['value_bytes']} value bytes, "
            L.append(
                f"- **{PEERS[pid].name}**: `{k['key']}` {k['type']}, TTL {k['ttl']} s, {size}"
                f"MEMORY USAGE {k['memory_usage']} B: `{k['value']}`"
            )
    L.append("")
    return L


def redis_ceiling(s, ceiling):
    if not ceiling:
        return []
    L = ["## Redis ceiling\n"]
    L.append(
        f"`redis-benchmark -c {s.wrk_conns} -r {s.users}` against the same redis-server, from "
        "the same machine: the most it does for these commands here. A peer at N req/s with M "
        "round trips per request uses N × M of it.\n"
    )
    L.append("| benchmark | ops/s (best) | ops/s per repetition | p50 ms | p99 ms |")
    L.append("|---|---:|---|---:|---:|")
    for x in ceiling:
        b = x["best"] or {}
        reps = " / ".join(fmt(v) for v in x["all_rps"])
        L.append(
            f"| {x['label']} | {fmt(b.get('rps'))} | {reps} | "
            f"{fmt(b.get('p50_latency_ms'), 3)} | {fmt(b.get('p99_latency_ms'), 3)} |"
        )
    L.append("")
    return L


def peers_and_versions(apps, results):
    versions = locked_versions()
    L = ["## Peers and versions\n"]
    for pid in apps:
        peer = PEERS[pid]
        crates = ", ".join(crate_cell(versions, c) for c in peer.crates)
        L.append(f"- **{peer.name}**: {peer.stack}" + (f" ({crates})" if crates else ""))
    common = ", ".join(crate_cell(versions, c) for c in COMMON_CRATES)
    L.append(f"- common to the peers built from bench/peers: {common}")
    L.append("- tools: " + "; ".join(tool_versions()))
    errors = [(pid, results[pid]["error"]) for pid in apps if results[pid].get("error")]
    if errors:
        L.append("\n## Errors\n")
        L.extend(f"- {PEERS[pid].name}: {e}" for pid, e in errors)
    return L


def kept_cell(rec):
    if rec.get("counted") is not None and rec["wrk"].get("requests"):
        return f"{rec['counted'] / rec['wrk']['requests'] * 100:.1f} %"
    if rec.get("not_logged_in_after"):
        return f"{rec['not_logged_in_after']} users logged out"
    return "n/a"


def errors_cell(w):
    parts = []
    if w["socket_errors"]:
        parts.append(f"{w['socket_errors']} socket")
    if w["non2xx"]:
        parts.append(f"{w['non2xx']} non-2xx/3xx")
    return ", ".join(parts) or "0"


def lost_cell(lost):
    if lost.get("lost") is None:
        return f"n/a ({lost.get('error', 'not run')})"
    return f"{lost['lost']:,}" + (f" ({lost['errors']} errors)" if lost.get("errors") else "")
