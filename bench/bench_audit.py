"""Audit log benchmark: durable appends through the sequencer, time to a signed head, proofs and verify at 10^6,
and what auditing costs a trivial authenticated route.

Run: ``.venv/bin/python bench/bench_audit.py`` (about 60-90 s; traffic to 127.0.0.1 only; needs PostgreSQL on
127.0.0.1:5432 for the PostgreSQL figures, override with ``RCC_BENCH_POSTGRES_URL``; ``--quick`` uses 10^5
entries instead of 10^6; ``--only=route`` runs part 4 alone, ``--only=append,latency`` parts 1 and 2 —
any comma-separated prefixes of ``append_sqlite``, ``append_postgres``, ``latency``, ``route``, ``million``).

Figures, all measured in this one run:

1. **Durable append rate through the sequencer**, SQLite and PostgreSQL: 256 concurrent requests on one event
   loop append entries as the audit middleware does (each waits until its entry is committed); the background
   sequencer assigns indices and signs heads. Rate = entries sequenced and signed per second. Beside it, 16
   threads each committing one-row transactions (no shared commit), to show why the writer shares commits.
   Target >= 5,000/s.
2. **Commit -> signed tree head latency** (p50/p99) under a steady 400 entries/s, from the moment an entry's
   commit returns to the moment a signed head covering it commits.
3. **At 10^6 entries** (SQLite, generated with bulk inserts: entries, perfect-subtree nodes, a signed head):
   inclusion and consistency proof time (target < 5 ms), tree head time, sequencing 5,000 more entries, and a
   full ``audit verify`` (target >= 100,000 entries/s).
4. **A trivial authenticated route with vs without audit**: ``GET /v1/whoami`` with an access token on two
   one-worker uvicorn servers (uvloop, httptools), one with the audit middleware and one without, loaded in
   alternating rounds by keep-alive clients on raw asyncio streams. Target >= 0.8x.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APPEND_TASKS = 256  # requests in flight on one worker's event loop
SINGLE_THREADS = 16
APPEND_SECONDS = 2.0
LATENCY_RATE = 400
LATENCY_SECONDS = 3.0
CONNECTIONS = 8
# Many short alternating rounds rather than a few long ones: on a shared machine a burst of someone else's
# load then falls on both servers alike instead of on whichever happened to be running (same 9 s in total).
ROUND_SECONDS = 0.75
ROUNDS = 6
POSTGRES_ADMIN = os.environ.get("RCC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# --------------------------------------------------------------------------------------------------
# Server factories (uvicorn --factory imports this module in the server process)


def audited_app() -> Any:
    """The node as ``rcc-node serve`` builds it."""
    from registry.app import create_app

    return create_app()


def plain_app() -> Any:
    """The same node without the audit middleware (and without its sequencer): the baseline."""
    from registry.app import create_app
    from registry.core.audit.middleware import AuditMiddleware
    from registry.core.audit.recording import audit_log

    app = create_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not AuditMiddleware]
    audit_log(app.state.node).stop()
    return app


# --------------------------------------------------------------------------------------------------
# Helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sqlite_template(tmp: Path) -> Path:
    """A migrated, empty SQLite database, made once per run and copied (migrating costs seconds each time)."""
    from registry.core.db import upgrade

    template = tmp / "template.db"
    if not template.exists():
        upgrade(f"sqlite:///{template}")
        with sqlite3.connect(template) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return template


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, migrated database URL on SQLite or PostgreSQL (dropped afterwards)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from registry.core.db import upgrade

    if kind == "sqlite":
        target = tmp / f"bench-{secrets.token_hex(3)}.db"
        shutil.copyfile(sqlite_template(tmp), target)
        yield f"sqlite:///{target}"
        return
    name = f"rcc_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def sample_entries(count: int, prefix: str = "b") -> list[Any]:
    from registry.core.audit.context import AuditContext
    from registry.core.audit.entry import build_entry

    entries = []
    for i in range(count):
        context = AuditContext(actor_type="client", actor_id=f"client-{i % 7}", roles=["commissioner"])
        context.dataset, context.purpose, context.agreement = "capacity.vacancies", "placement-search", "agr-1"
        context.permit()
        context.result_count = i % 20
        entries.append(
            build_entry(
                node_id="rcc-bench",
                direction="inbound",
                action="capacity.search",
                context=context,
                request_id=f"{prefix}-{i}",
                method="POST",
                status=200,
                request_sha256=secrets.token_hex(32),
                response_sha256=secrets.token_hex(32),
            )
        )
    return entries


class Timeline:
    """AuditObserver recording when each entry committed and when a signed head covered each index."""

    def __init__(self) -> None:
        self.commits: dict[str, float] = {}
        self.heads: list[tuple[int, int, float]] = []

    def committed(self, entries: Sequence[Any], at: float) -> None:
        for entry in entries:
            self.commits[entry.document["request_id"]] = at

    def signed(self, first: int, size: int, at: float) -> None:
        self.heads.append((first, size, at))

    def signed_at(self, index: int) -> float | None:
        for first, size, at in self.heads:
            if first <= index < size:
                return at
        return None


# --------------------------------------------------------------------------------------------------
# 1 and 2: appends through the sequencer, latency to a signed head


def append_rate(kind: str, tmp: Path) -> dict[str, float]:
    from sqlalchemy import insert

    from registry.core.audit.log import ENTRY, AuditLog
    from registry.core.db import make_engine
    from registry.core.keys import KeyRing

    entries = sample_entries(2000)
    with database(kind, tmp) as url:
        engine = make_engine(url)
        timeline = Timeline()
        log = AuditLog(engine=engine, node_id="rcc-bench", keys=KeyRing.generate(), observer=timeline)
        log.start()
        start = time.perf_counter()
        stop = start + APPEND_SECONDS

        async def producer(t: int) -> int:
            n = 0
            while time.perf_counter() < stop:
                await log.aappend(entries[(t * 131 + n) % len(entries)])
                n += 1
            return n

        async def produce() -> list[int]:
            return await asyncio.gather(*(producer(t) for t in range(APPEND_TASKS)))

        counts = asyncio.run(produce())
        appended = sum(counts)
        committed_s = time.perf_counter() - start
        while not timeline.heads or timeline.heads[-1][1] < appended:
            time.sleep(0.005)
        through = appended / (timeline.heads[-1][2] - start)
        log.stop()

        # The same threads, one row per transaction each (no shared commit), for comparison.
        rows = [e.row() for e in entries]
        singles = [0] * SINGLE_THREADS
        stop = time.perf_counter() + 1.0

        def single(t: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                with engine.begin() as conn:
                    conn.execute(insert(ENTRY), [rows[(t + n) % len(rows)]])
                n += 1
            singles[t] = n

        begun = time.perf_counter()
        threads = [threading.Thread(target=single, args=(t,)) for t in range(SINGLE_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        single_rate = sum(singles) / (time.perf_counter() - begun)
        engine.dispose()
    return {"committed_per_s": appended / committed_s, "sequenced_per_s": through, "one_row_txn_per_s": single_rate}


def head_latency(tmp: Path) -> dict[str, float]:
    from sqlalchemy import select

    from registry.core.audit.log import ENTRY, AuditLog
    from registry.core.db import make_engine
    from registry.core.keys import KeyRing

    threads_n = 4
    per_thread = int(LATENCY_RATE * LATENCY_SECONDS / threads_n)
    entries = sample_entries(per_thread * threads_n, prefix="lat")
    with database("sqlite", tmp) as url:
        engine = make_engine(url)
        timeline = Timeline()
        log = AuditLog(engine=engine, node_id="rcc-bench", keys=KeyRing.generate(), observer=timeline)
        log.start()
        interval = threads_n / LATENCY_RATE

        def producer(t: int) -> None:
            next_at = time.perf_counter()
            for entry in entries[t::threads_n]:
                log.append(entry)
                next_at += interval
                time.sleep(max(0.0, next_at - time.perf_counter()))

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        while not timeline.heads or timeline.heads[-1][1] < len(entries):
            time.sleep(0.005)
        log.stop()
        with engine.connect() as conn:
            rows = conn.execute(select(ENTRY.c.seq, ENTRY.c.entry)).all()
        engine.dispose()
    latencies = []
    for seq, text in rows:
        committed = timeline.commits[json.loads(text)["request_id"]]
        signed = timeline.signed_at(seq)
        assert signed is not None
        latencies.append((signed - committed) * 1000)
    return {"p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "count": len(latencies)}


# --------------------------------------------------------------------------------------------------
# 3: proofs, appends and verify at 10^6


def generate_log(path: str, size: int) -> None:
    """Write a sequenced log of ``size`` realistic entries, its perfect-subtree nodes and head, by bulk insert.

    The governance filter indexes are dropped for the load (proofs and verify never use them); the unique
    index on ``seq`` that verify reads through is rebuilt once at the end, which is far faster than keeping
    it up to date row by row.
    """
    import hashlib

    from registry.core.merkle import perfect_nodes, root_of

    template = sample_entries(1, prefix="ZZZZZZZZ")[0]
    head_part, tail_part = template.canonical.decode().split("ZZZZZZZZ-0", 1)
    ts = template.row()["ts"].replace(tzinfo=None).isoformat(sep=" ")
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=OFF")  # a throw-away bulk load: no rollback journal, no WAL
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("PRAGMA cache_size=-400000")
    indexes = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_entry' AND sql IS NOT NULL"
    ).fetchall()
    for (name,) in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    leaves: list[bytes] = []
    sha256 = hashlib.sha256
    chunk = 100_000
    for begin in range(0, size, chunk):
        batch = []
        for i in range(begin, min(size, begin + chunk)):
            entry = f"{head_part}{i:010d}{tail_part}"
            leaf = sha256(b"\x00" + entry.encode()).digest()
            leaves.append(leaf)
            batch.append((i + 1, i, ts, entry, leaf, "capacity.search"))
        connection.executemany(
            "INSERT INTO audit_entry (id, seq, ts, entry, leaf_hash, action) VALUES (?, ?, ?, ?, ?, ?)", batch
        )
    connection.executemany(
        "INSERT INTO audit_node (level, idx, digest) VALUES (?, ?, ?)",
        ((n.level, n.index, n.hash) for n in perfect_nodes(leaves)),
    )
    connection.execute("CREATE UNIQUE INDEX uq_audit_entry_seq ON audit_entry (seq) WHERE seq IS NOT NULL")
    connection.execute("CREATE INDEX ix_audit_entry_pending ON audit_entry (id) WHERE seq IS NULL")
    connection.execute(
        "UPDATE audit_head SET node_id = 'rcc-bench', tree_size = ?, root_hash = ? WHERE id = 1",
        (size, root_of(leaves).hex()),
    )
    connection.commit()
    connection.execute("PRAGMA locking_mode=NORMAL")
    connection.execute("PRAGMA journal_mode=WAL")  # as the node runs it
    connection.close()


def million(tmp: Path, size: int) -> dict[str, float]:
    from registry.core.audit import service
    from registry.core.audit.log import AuditLog
    from registry.core.audit.verify import verify_log
    from registry.core.db import make_engine
    from registry.core.keys import KeyRing

    figures: dict[str, float] = {}
    with database("sqlite", tmp) as url:
        started = time.perf_counter()
        generate_log(url.removeprefix("sqlite:///"), size)
        figures["generate_s"] = time.perf_counter() - started

        keys = KeyRing.generate()
        engine = make_engine(url)
        log = AuditLog(engine=engine, node_id="rcc-bench", keys=keys)
        log.sign_now()
        rng = random.Random(7)
        timings: dict[str, list[float]] = {"inclusion": [], "consistency": [], "tree_head": []}
        for _ in range(300):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            service.inclusion(log, index=index, tree_size=size)
            timings["inclusion"].append(time.perf_counter() - t0)
            first = rng.randrange(1, size)
            t0 = time.perf_counter()
            service.consistency(log, first=first, second=size)
            timings["consistency"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            service.signed_tree_head(log)
            timings["tree_head"].append(time.perf_counter() - t0)
        for name, values in timings.items():
            figures[f"{name}_mean_ms"] = statistics.fmean(values) * 1000
            figures[f"{name}_p99_ms"] = pct(values, 0.99) * 1000

        more = sample_entries(5000, prefix="more")
        log.insert_now(more)
        t0 = time.perf_counter()
        log.sequence_pending()
        figures["sequence_5000_at_size_per_s"] = 5000 / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        report = verify_log(engine, jwks=keys.jwks(), node_id="rcc-bench")
        elapsed = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        figures["verify_entries_per_s"] = report.entries_checked / elapsed
        figures["verify_s"] = elapsed
        engine.dispose()
    return figures


# --------------------------------------------------------------------------------------------------
# 4: trivial authenticated route, with and without audit


def prepare_node(tmp: Path, name: str, port: int) -> tuple[Path, str]:
    from sqlmodel import Session

    from registry.core.auth.models import ClientCreate
    from registry.core.auth.service import create
    from registry.core.auth.tokens import issue_access_token
    from registry.core.db import claim_database, make_engine
    from registry.core.keys import KeyRing
    from registry.core.settings import write_config
    from schemas.vocabulary import Role

    data_dir = tmp / name
    data_dir.mkdir()
    keys = KeyRing.create(data_dir / "keys")
    base_url = f"http://127.0.0.1:{port}"
    write_config(data_dir / "node.toml", {"node_id": "rcc-bench", "base_url": base_url, "port": port})
    shutil.copyfile(sqlite_template(tmp), data_dir / "node.db")
    url = f"sqlite:///{data_dir / 'node.db'}"
    engine = make_engine(url)
    claim_database(engine, "rcc-bench")
    with Session(engine) as session:
        create(session, data=ClientCreate(name="bench", roles=[Role.analyst]), client_id="bench")
        session.commit()
    engine.dispose()
    token = issue_access_token(keys, base_url=base_url, client_id="bench", roles=["analyst"], ttl_seconds=900)
    return data_dir, token.access_token


def start_server(factory: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RCC_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    command = f"-m uvicorn --factory bench_audit:{factory} --host 127.0.0.1 --port {port} --loop uvloop"
    command += " --http httptools --log-level warning --no-access-log"
    process = subprocess.Popen(
        [sys.executable, *command.split(), "--app-dir", str(ROOT / "bench")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{factory} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{factory} did not start")


async def _client(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            counts[0] += 1
    finally:
        writer.close()


def load(port: int, request: bytes, seconds: float) -> int:
    counts = [0]
    deadline = time.perf_counter() + seconds

    async def run() -> None:
        await asyncio.gather(*(_client(port, request, deadline, counts) for _ in range(CONNECTIONS)))

    asyncio.run(run())
    return counts[0]


def route_ratio(tmp: Path) -> dict[str, float]:
    servers: dict[str, tuple[subprocess.Popen[bytes], int, bytes]] = {}
    try:
        for name in ("audited", "plain"):
            port = free_port()
            data_dir, token = prepare_node(tmp, name, port)
            request = (
                f"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
            servers[name] = (start_server(f"{name}_app", data_dir, port), port, request)
        for _, port, request in servers.values():
            load(port, request, 0.5)  # warm up: token cache, connection pools
        totals = {name: [0, 0.0, 0.0] for name in servers}
        for _ in range(ROUNDS):
            for name, (process, port, request) in servers.items():
                cpu0 = cpu_seconds(process.pid)
                t0 = time.perf_counter()
                done = load(port, request, ROUND_SECONDS)
                totals[name][0] += done
                totals[name][1] += time.perf_counter() - t0
                totals[name][2] += cpu_seconds(process.pid) - cpu0
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(10)
    rates = {name: count / seconds for name, (count, seconds, _) in totals.items()}
    cpu = {name: cpu_s / count * 1e6 for name, (count, _, cpu_s) in totals.items()}
    return {
        "audited_rps": rates["audited"],
        "plain_rps": rates["plain"],
        "audited_cpu_us": cpu["audited"],
        "plain_cpu_us": cpu["plain"],
        "ratio": rates["audited"] / rates["plain"],
    }


# --------------------------------------------------------------------------------------------------


def main() -> None:
    import logging

    logging.getLogger("rcc").setLevel(logging.CRITICAL)
    size = 100_000 if "--quick" in sys.argv else 1_000_000
    began = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rcc-bench-audit-") as name:
        tmp = Path(name)
        sections: list[tuple[str, Callable[[], Any]]] = [
            ("append_sqlite", lambda: append_rate("sqlite", tmp)),
            ("append_postgres", lambda: append_rate("postgres", tmp)),
            ("latency", lambda: head_latency(tmp)),
            ("route", lambda: route_ratio(tmp)),
            ("million", lambda: million(tmp, size)),
        ]
        only = [arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--only=")]
        for key, run in sections:
            if only and not any(key.startswith(prefix) for prefix in only[0].split(",")):
                results[key] = {"skipped": "--only"}
                continue
            t0 = time.perf_counter()
            try:
                results[key] = run()
            except Exception as exc:  # report and carry on: one engine down must not hide the rest
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[{key}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr)

    def show(key: str, fmt: Callable[[dict[str, float]], str]) -> None:
        value = results[key]
        if "skipped" in value:
            print(f"  {key}: skipped ({value['skipped']})")
        elif "error" in value:
            print(f"  {key}: FAILED {value['error']}")
        else:
            print(fmt(value))

    print(f"audit log benchmark ({size:,} entries for the proof/verify figures)")
    print(f"1. durable appends through the sequencer ({APPEND_TASKS} requests in flight), target >= 5,000/s:")
    for engine in ("sqlite", "postgres"):
        show(
            f"append_{engine}",
            lambda v, e=engine: (
                f"  {e:<9} sequenced+signed {v['sequenced_per_s']:8,.0f}/s   committed {v['committed_per_s']:8,.0f}/s"
                f"   vs one row per transaction {v['one_row_txn_per_s']:7,.0f}/s"
                f"   ({v['sequenced_per_s'] / v['one_row_txn_per_s']:.1f}x)"
            ),
        )
    show(
        "latency",
        lambda v: (
            f"2. commit -> signed tree head at {LATENCY_RATE}/s: p50 {v['p50_ms']:.0f} ms, p99 {v['p99_ms']:.0f} ms"
        ),
    )
    show(
        "million",
        lambda v: (
            f"3. at {size:,} entries (SQLite; bulk generation {v['generate_s']:.1f} s):\n"
            f"   inclusion proof   mean {v['inclusion_mean_ms']:.2f} ms  p99 {v['inclusion_p99_ms']:.2f} ms"
            f"  (target < 5 ms)\n"
            f"   consistency proof mean {v['consistency_mean_ms']:.2f} ms  p99 {v['consistency_p99_ms']:.2f} ms"
            f"  (target < 5 ms)\n"
            f"   signed tree head  mean {v['tree_head_mean_ms']:.2f} ms\n"
            f"   sequencing 5,000 more entries: {v['sequence_5000_at_size_per_s']:,.0f}/s\n"
            f"   full verify: {v['verify_entries_per_s']:,.0f} entries/s ({v['verify_s']:.1f} s; target >= 100,000/s)"
        ),
    )
    show(
        "route",
        lambda v: (
            f"4. GET /v1/whoami (authenticated), 1 worker, {CONNECTIONS} connections, {ROUNDS} alternating rounds:\n"
            f"   with audit {v['audited_rps']:7,.0f} req/s ({v['audited_cpu_us']:.0f} us CPU/req)   "
            f"without {v['plain_rps']:7,.0f} req/s ({v['plain_cpu_us']:.0f} us CPU/req)\n"
            f"   ratio with/without audit: {v['ratio']:.2f}x (target >= 0.8x)"
        ),
    )
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
