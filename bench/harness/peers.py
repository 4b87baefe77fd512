"""The peers: the same tutorial app on each session store, plus the floor and the ceiling.

Every peer answers `GET /` (counts a visit, slides the TTL), `GET /login`, `POST /login` (form
field `username`), `GET /logout` and the read-only `GET /whoami`. C, D, E and F are built from
bench/peers; the Z peers are the project's own demo binaries (ZA: on actix-web), found beside
CLOAKROOM_BIN.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# The demo signs cookies with this; it only has to be stable for one run and 32 bytes or more.
DEMO_SECRET = "bench-secret-key-0123456789abcdef0123456789"


@dataclass(frozen=True)
class Peer:
    id: str
    name: str
    stack: str
    # a binary of bench/peers, or None for the demo binary given by CLOAKROOM_BIN
    binary: Optional[str]
    # environment on top of PORT, REDIS_URL and SESSION_TTL; "{port}" is replaced by the port,
    # and None removes the variable
    env: dict = field(default_factory=dict)
    uses_redis: bool = True
    has_session: bool = True
    # commands sent together as one pipeline, per route: such a peer sends several commands
    # per round trip (everyone else sends one command per round trip)
    pipelined: dict = field(default_factory=dict)
    # crates of bench/peers/Cargo.lock whose versions the report names; "redis@1": only 1.*
    crates: tuple = ()
    # for a demo peer: which of the demo's binaries; cloakroom-demo is CLOAKROOM_BIN itself,
    # another is found beside it
    demo_binary: str = "cloakroom-demo"

    @property
    def is_demo(self):
        return self.binary is None

    def argv(self, settings):
        if not self.is_demo:
            return [str(settings.peers_bin / self.binary)]
        if self.demo_binary == "cloakroom-demo":
            return [settings.cloakroom_bin]
        # Another of the demo's binaries: built beside it.
        return [str(Path(settings.cloakroom_bin).with_name(self.demo_binary))]

    def round_trips(self, route, cmds_sent):
        return cmds_sent / self.pipelined.get(route, 1)


def _demo(id_, name, stack, env, uses_redis=True, demo_binary="cloakroom-demo"):
    return Peer(
        id=id_,
        name=name,
        stack=stack,
        binary=None,
        uses_redis=uses_redis,
        # No other peer has a log subscriber: the demo runs at `warn` (no request span) unless
        # DEMO_RUST_LOG says otherwise; the caller's RUST_LOG does not reach it.
        env={
            "BIND": "127.0.0.1:{port}",
            "SECRET_KEY": DEMO_SECRET,
            "RUST_LOG": os.environ.get("DEMO_RUST_LOG", "warn"),
            **env,
        },
        demo_binary=demo_binary,
    )


PEERS = {
    p.id: p
    for p in [
        Peer(
            id="C",
            name="C tower-sessions",
            stack="axum + tower-sessions + tower-sessions-redis-store (fred pool of 6); "
            "the whole record is read (GET) and written back (SET)",
            binary="c_tower_sessions",
            crates=("axum", "tower-sessions", "tower-sessions-redis-store", "fred"),
        ),
        Peer(
            id="D",
            name="D actix-session",
            stack="actix-web + actix-session RedisSessionStore (redis-rs ConnectionManager); "
            "the whole state is read (GET) and written back when it changed (SET)",
            binary="d_actix_session",
            crates=("actix-web", "actix-session", "redis@0"),
        ),
        Peer(
            id="E",
            name="E floor",
            stack="axum + redis-rs ConnectionManager, no session library: GET / is one "
            "pipeline HINCRBY+EXPIRE+HGET, /whoami one pipeline HGET+EXPIRE",
            binary="e_floor",
            pipelined={"/": 3, "/whoami": 2},
            crates=("axum", "redis@1"),
        ),
        Peer(
            id="F",
            name="F hello world",
            stack="axum hello world: no session, no Redis; / and /whoami answer a constant",
            binary="f_hello",
            uses_redis=False,
            has_session=False,
            crates=("axum",),
        ),
        _demo(
            id_="Z",
            name="Z cloakroom",
            stack="cloakroom-demo on Redis, NEAR_CACHE=off",
            env={"NEAR_CACHE": "off"},
        ),
        _demo(
            id_="ZA",
            name="ZA cloakroom on actix-web",
            stack="cloakroom-demo-actix (the same demo on actix-web) on Redis, NEAR_CACHE=off",
            env={"NEAR_CACHE": "off"},
            demo_binary="cloakroom-demo-actix",
        ),
        _demo(
            id_="ZC",
            name="ZC cloakroom, near cache",
            stack="cloakroom-demo on Redis, NEAR_CACHE=on",
            env={"NEAR_CACHE": "on"},
        ),
        # No REDIS_URL: the demo keeps its sessions in the embedded memory store.
        _demo(
            id_="ZM",
            name="ZM cloakroom, memory store",
            stack="cloakroom-demo on its embedded memory store (no REDIS_URL)",
            env={"REDIS_URL": None},
            uses_redis=False,
        ),
    ]
}

PEER_IDS = list(PEERS)
