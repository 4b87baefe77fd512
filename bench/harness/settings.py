"""The knobs of a run, read from the environment once and checked before anything starts."""

import os
from dataclasses import dataclass
from pathlib import Path

from .peers import PEER_IDS

BENCH = Path(__file__).resolve().parent.parent

DEFAULT_APPS = "C,D,E,F,Z,ZA,ZC,ZM"
DEFAULT_ROUTES = "/,/whoami"


def _int(name, default, minimum=0):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SystemExit(f"{name}={value}: at least {minimum}")
    return value


def _float(name, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None


def _list(name, default):
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


@dataclass(frozen=True)
class Settings:
    apps: list  # peer ids, in the order each round runs them
    routes: list  # paths wrk asks for, each in its own run
    rounds: int
    wrk_duration: int  # seconds
    wrk_threads: int
    wrk_conns: int
    users: int  # logged-in users whose cookies wrk picks from
    mem_users: int  # logins of the bytes-per-session test
    lost_n: int  # requests of the lost-update test
    lost_conc: int  # of them in flight at once
    settle: float  # seconds after wrk before the counters are read
    monitor_sample: int  # requests seen through MONITOR to tell sent commands from Lua's
    redis_port: int  # 0: a free port
    redis_bench: bool
    redis_bench_reps: int
    cloakroom_bin: str
    cloakroom_rev: str
    peers_bin: Path
    results: Path

    @property
    def raw(self):
        return self.results / "raw"

    @classmethod
    def from_env(cls):
        apps = _list("APPS", DEFAULT_APPS)
        unknown = [a for a in apps if a not in PEER_IDS]
        if unknown or not apps:
            raise SystemExit(
                f"APPS: unknown peer {', '.join(unknown) or '(none given)'}; "
                f"the peers are {', '.join(PEER_IDS)}"
            )
        routes = _list("ROUTES", DEFAULT_ROUTES)
        if "WRK_PATH" in os.environ:  # one route, as a single wrk path
            routes = [os.environ["WRK_PATH"]]
        bad = [r for r in routes if not r.startswith("/")]
        if bad or not routes:
            raise SystemExit(f"ROUTES: paths start with '/': {', '.join(bad) or '(none given)'}")
        return cls(
            apps=apps,
            routes=routes,
            rounds=_int("ROUNDS", 3, minimum=1),
            wrk_duration=_int("WRK_DURATION", 10, minimum=1),
            wrk_threads=_int("WRK_THREADS", 2, minimum=1),
            wrk_conns=_int("WRK_CONNS", 64, minimum=1),
            users=_int("USERS", 1000, minimum=1),
            mem_users=_int("MEM_USERS", 10000, minimum=1),
            lost_n=_int("LOST_N", 2000, minimum=1),
            lost_conc=_int("LOST_CONC", 50, minimum=1),
            settle=_float("SETTLE", 1.0),
            monitor_sample=_int("MONITOR_SAMPLE", 100, minimum=1),
            redis_port=_int("REDIS_PORT", 0),
            redis_bench=os.environ.get("SKIP_REDIS_BENCH", "0") != "1",
            redis_bench_reps=_int("RB_REPS", 2, minimum=1),
            cloakroom_bin=os.environ.get("CLOAKROOM_BIN", ""),
            cloakroom_rev=os.environ.get("CLOAKROOM_REV", ""),
            peers_bin=BENCH / "peers" / "target" / "release",
            results=BENCH / "results",
        )
