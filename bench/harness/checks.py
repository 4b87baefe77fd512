"""What is checked beside the load: the tutorial flow, lost updates, bytes per session, layout."""

import http.client
import json
import threading
import time

from .web import NOT_LOGGED_IN, Client, fan_out, login, visits_in, whoami_in

# A name that has to come back HTML-escaped.
TRICKY_NAME = "<b>&Ann"
TRICKY_ESCAPED = "&lt;b&gt;&amp;Ann"


def flow_check(port):
    """The tutorial's flow end to end, with /whoami between two visits (it must not count one).
    Returns what went wrong, as a list of notes (empty: all well)."""
    c = Client(port)
    notes = []

    def expect(what, ok, r):
        if not ok:
            notes.append(f"{what}: {r.status} {r.body[:80]!r}")

    try:
        r = c.get("/")
        expect("anonymous GET /", NOT_LOGGED_IN in r.body, r)
        r = c.get("/whoami")
        expect("anonymous GET /whoami", NOT_LOGGED_IN in r.body, r)
        r = c.get("/login")
        expect("GET /login", r.status == 200 and "<form" in r.body, r)
        cookie = login(c, TRICKY_NAME)
        if not cookie:
            notes.append("POST /login: no redirect with a session cookie")
            return notes
        r = c.get("/", cookie)
        expect("GET / #1", visits_in(r.body) == 1 and TRICKY_ESCAPED in r.body, r)
        r = c.get("/whoami", cookie)
        expect("GET /whoami", whoami_in(r.body) == TRICKY_ESCAPED, r)
        r = c.get("/", cookie)
        expect("GET / #2 (after /whoami)", visits_in(r.body) == 2, r)
        r = c.get("/logout", cookie)
        expect("GET /logout", r.status in (302, 303), r)
        r = c.get("/", cookie)
        expect("GET / with the old cookie after logout", NOT_LOGGED_IN in r.body, r)
    finally:
        c.close()
    return notes


def login_users(port, names, workers=32):
    """Cookies of `names`, logged in concurrently; raises if any login failed."""
    cookies = fan_out(port, names, login, workers)
    bad = [n for n, c in zip(names, cookies) if not isinstance(c, str)]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(names)} logins failed (first: {bad[0]})")
    return cookies


def visits_of(port, cookies, workers=32):
    """One GET / per cookie: each user's visit count (which that GET itself just raised)."""

    def one(client, cookie):
        return visits_in(client.get("/", cookie).body)

    return [v if isinstance(v, int) else None for v in fan_out(port, cookies, one, workers)]


def lost_updates(port, n, conc):
    """One user, `n` GET / with `conc` in flight at once; every one should count. Returns the
    counts, with `lost` = increments that vanished."""
    cookie = _once(port, lambda c: login(c, "racer"))
    if not cookie:
        return dict(error="login failed")
    lock = threading.Lock()
    left = [n]
    ok = errors = 0

    def work():
        nonlocal ok, errors
        client = Client(port)
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                try:
                    good = visits_in(client.get("/", cookie).body) is not None
                except (OSError, http.client.HTTPException):
                    client.close()
                    good = False
                with lock:
                    ok, errors = (ok + 1, errors) if good else (ok, errors + 1)
        finally:
            client.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    final = _once(port, lambda c: visits_in(c.get("/", cookie).body))
    if final is None:
        return dict(sent=n, ok=ok, errors=errors, error="not logged in afterwards")
    recorded = final - 1  # the final GET counted itself
    # Requests that failed never counted: only the answered ones can have been lost.
    return dict(
        sent=n,
        ok=ok,
        errors=errors,
        recorded=recorded,
        lost=ok - recorded,
        seconds=round(seconds, 2),
    )


def _once(port, fn):
    c = Client(port)
    try:
        return fn(c)
    finally:
        c.close()


def bytes_per_session(r, port, n):
    """Redis memory per logged-in session: used_memory before and after `n` logins, divided by
    the sessions made. Everything a session costs counts, extra keys (an index) included."""
    r.call("FLUSHALL")
    time.sleep(0.2)
    m0 = int(r.info("memory")["used_memory"])
    cookies = login_users(port, [f"mem{i:05d}" for i in range(n)])
    time.sleep(0.2)
    m1 = int(r.info("memory")["used_memory"])
    keys = r.call("DBSIZE")
    return dict(
        sessions=len(cookies),
        keys=keys,
        bytes_per_session=(m1 - m0) / len(cookies),
        keys_per_session=keys / len(cookies),
    )


def layout(r, port):
    """Every key one session leaves in Redis after its login and one visit."""
    r.call("FLUSHALL")

    def visit_once(c):
        cookie = login(c, "sample")
        if cookie:
            c.get("/", cookie)

    _once(port, visit_once)
    out = []
    for key in sorted(r.scan_all()):
        kind = r.call("TYPE", key)
        if kind == "hash":
            flat = r.call("HGETALL", key)
            pairs = dict(zip(flat[::2], flat[1::2]))
            value = json.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs.items()}
            )
            size = sum(len(k) + len(v) for k, v in pairs.items())
        elif kind == "string":
            raw = r.call("GET", key)
            value, size = repr(raw[:90]) + ("..." if len(raw) > 90 else ""), len(raw)
        elif kind == "zset":
            value, size = f"{r.call('ZCARD', key)} member(s)", None
        else:
            value, size = "", None
        out.append(
            dict(
                key=key.decode(errors="replace"),
                type=kind,
                ttl=r.call("TTL", key),
                memory_usage=r.call("MEMORY", "USAGE", key, "SAMPLES", "0"),
                value=value,
                value_bytes=size,
            )
        )
    return out
