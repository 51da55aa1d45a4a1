"""Federation transport benchmark: signed+verified+audited ping vs the same route plain; fan-out; hung peer.

Run: ``.venv/bin/python bench/bench_federation.py`` (about a minute; traffic to 127.0.0.1 only).
``--only=throughput`` runs part 1 alone (about 20 s), ``--only=fanout`` parts 2 and 3.

1. Throughput, one uvicorn worker (uvloop + httptools), 10 concurrent keep-alive clients in another process:
   ``GET /federation/v1/ping`` on a real node (token verified against the directory, jti burnt in the replay
   table, audited, response signed) against the same handler on a bare FastAPI app (no token, no audit, no
   signature). Judged by the ratio signed/plain (target >= 0.40, stretch 0.50). Runs alternate, paired.
2. Fan-out from a real node's client (signing, response verification, outbound audit) to 10 real peer
   nodes: p99 of the fan-out against p99 of its slowest peer (target: within 15 ms) and client CPU per peer
   (target <= 1 ms), measured for the aiohttp wire and the httpx wire side by side (the client choice).
3. One hung peer among 10: how long after its deadline the fan-out returns (target <= 30 ms).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PING = "/federation/v1/ping"
CONNECTIONS = 10
ROUND_SECONDS = 2.5
ROUNDS = 2
FANOUT_PEERS = 10
FANOUT_RUNS = 100
FANOUT_BUDGET_SECONDS = 5.0  # each fan-out series stops early past this, so the bench stays under 90 s
HUNG_RUNS = 8
HUNG_DEADLINE = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- building nodes without the CLI (same files `rcc-node init` writes) -----------------------------------


def template_db(root: Path) -> Path:
    from registry.core.db import upgrade

    path = root / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def make_node(root: Path, template: Path, node_id: str, port: int, **settings: Any) -> Path:
    from registry.core.keys import KeyRing
    from registry.core.settings import write_config

    data_dir = root / node_id
    data_dir.mkdir()
    shutil.copy(template, data_dir / "node.db")
    KeyRing.create(data_dir / "keys")
    values = {
        "node_id": node_id,
        "name": node_id,
        "region_code": "E12000008",
        "base_url": f"http://127.0.0.1:{port}",
        "port": port,
        **settings,
    }
    write_config(data_dir / "node.toml", values)
    return data_dir


def write_directory(root: Path, members: dict[str, tuple[Path, int]]) -> tuple[Path, Path]:
    """Sign a directory listing every member with a throw-away operator key; return (directory, jwks) files."""
    from registry.core.keys import KeyRing
    from registry.core.signing import TYP_DIRECTORY, sign_detached

    operator = KeyRing.generate()
    now = int(time.time())
    nodes = []
    for node_id, (data_dir, port) in members.items():
        ring = KeyRing.load(data_dir / "keys")
        nodes.append(
            {
                "node_id": node_id,
                "name": node_id,
                "kind": "regional",
                "region_code": "E12000008",
                "base_url": f"http://127.0.0.1:{port}",
                "keys": ring.jwks()["keys"],
                "neighbours": [],
            }
        )
    document = {
        "serial": 1,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5)),
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400)),
        "operator": "rcc-operator",
        "nodes": nodes,
    }
    envelope = {"directory": document, "signature": sign_detached(document, operator.active, typ=TYP_DIRECTORY)}
    directory_path, jwks_path = root / "directory.json", root / "operator.json"
    directory_path.write_text(json.dumps(envelope))
    jwks_path.write_text(json.dumps(operator.jwks()))
    return directory_path, jwks_path


def federated(directory_path: Path, jwks_path: Path) -> dict[str, Any]:
    return {"operator_jwks": str(jwks_path), "directory_file": str(directory_path), "directory_refresh_seconds": 3600}


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on {port} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


# --- 1. throughput -----------------------------------------------------------------------------------------


def plain_app() -> Any:
    """The baseline: the ping handler's answer on a bare app (request-id middleware only, no auth, audit, signature)."""
    from fastapi import FastAPI

    from federation.models import PingResponse
    from registry.core.http import RequestContextMiddleware

    app = FastAPI()

    @app.get(PING, response_model=PingResponse)
    async def ping() -> Any:
        return plain_answer()

    app.add_middleware(RequestContextMiddleware, max_body_bytes=1024 * 1024)
    return app


def _tokens(data_dir: str, port: int, count: int) -> list[str]:
    from federation.tokens import Signer, build_request_token
    from registry.core.keys import KeyRing

    signer = Signer(KeyRing.load(Path(data_dir) / "keys").active)
    url = f"http://127.0.0.1:{port}{PING}"
    now = time.time()
    return [
        build_request_token(
            signer,
            issuer="rcc-caller",
            audience="rcc-target",
            method="GET",
            url=url,
            body=b"",
            purpose="placement-search",
            agreement=None,
            now=now,
        ).token
        for _ in range(count)
    ]


def load_process(port: int, path: str, seconds: float, caller_dir: str | None, queue: Any) -> None:
    """10 keep-alive connections, each sending one request at a time, for ``seconds``; pre-made tokens."""
    tokens = _tokens(caller_dir, port, int(seconds * 5000)) if caller_dir else []
    length = re.compile(rb"content-length: (\d+)", re.IGNORECASE)

    async def main() -> tuple[int, int]:
        done, bad, index = 0, 0, 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, bad, index
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while time.perf_counter() < end:
                auth = ""
                if tokens:
                    auth, index = f"authorization: Bearer {tokens[index]}\r\n", index + 1
                writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                found = length.search(head)
                await reader.readexactly(int(found.group(1)) if found else 0)
                done += 1
                bad += head[9:12] != b"200"
            writer.close()

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        return done, bad

    queue.put(asyncio.run(main()))


def measure(port: int, pid: int, path: str, caller_dir: str | None, seconds: float) -> tuple[float, float, int]:
    """Requests/s, server CPU ms per request, and non-200 count for one load run."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=load_process, args=(port, path, seconds, caller_dir, queue))
    before_start = cpu_seconds(pid)
    process.start()
    done, bad = queue.get(timeout=180)
    used = cpu_seconds(pid) - before_start  # the server is idle while the loader starts and makes tokens
    process.join()
    return done / seconds, used / max(done, 1) * 1000, bad


def node_app() -> Any:
    """The real node (``create_app`` from RCC_DATA_DIR) plus an unguarded, unsigned twin of the ping route.

    The twin still passes the node's request-context and audit middleware and is matched first, as the ping
    is, so signed/twin isolates what the federation transport itself costs (verify, replay, signature).
    """
    from registry.app import create_app

    app = create_app()

    @app.get("/bench/ping", response_model=Any)
    async def twin() -> Any:
        return plain_answer()

    app.router.routes.insert(0, app.router.routes.pop())  # not behind every other route of the node
    return app


def plain_answer() -> Any:
    from federation.models import PingResponse
    from registry.core.db import utcnow
    from schemas.vocabulary import Purpose

    return PingResponse(
        node_id="rcc-target",
        peer="rcc-caller",
        kid="k" * 43,
        purpose=Purpose.placement_search,
        agreement=None,
        jti="j" * 22,
        server_time=utcnow(),
    )


def uvicorn_server(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One worker, uvloop + httptools, as ``rcc-node serve`` runs it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"bench_federation:{factory}",
            "--app-dir",
            str(ROOT / "bench"),
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def throughput(root: Path, template: Path) -> dict[str, float]:
    target_port, plain_port = free_port(), free_port()
    caller_dir = make_node(root, template, "rcc-caller", free_port())
    # The directory lists the target's key: make the target, then the directory, then point the target at it.
    target_dir = make_node(root, template, "rcc-target", target_port)
    members = {"rcc-caller": (caller_dir, 0), "rcc-target": (target_dir, target_port)}
    directory_path, jwks_path = write_directory(root, members)
    with (target_dir / "node.toml").open("a") as fh:
        for key, value in federated(directory_path, jwks_path).items():
            fh.write(f"{key} = {json.dumps(value)}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RCC_DATA_DIR": str(target_dir)}
    node = uvicorn_server("node_app", target_port, env)
    plain = uvicorn_server("plain_app", plain_port, env)
    targets = {
        "plain": (plain_port, plain, PING, None),
        "twin": (target_port, node, "/bench/ping", None),
        "signed": (target_port, node, PING, str(caller_dir)),
    }
    try:
        wait_healthy(target_port, node)
        wait_healthy_plain(plain_port, plain)
        rows: dict[str, list[tuple[float, float, int]]] = {name: [] for name in targets}
        for port, server, path, caller in targets.values():  # warm-up
            measure(port, server.pid, path, caller, 0.5)
        for _ in range(ROUNDS):
            for name, (port, server, path, caller) in targets.items():
                rows[name].append(measure(port, server.pid, path, caller, ROUND_SECONDS))
    finally:
        for process in (node, plain):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    result = {}
    for name, measured in rows.items():
        result[f"{name}_rps"] = statistics.mean(r[0] for r in measured)
        result[f"{name}_cpu_ms"] = statistics.mean(r[1] for r in measured)
        result[f"{name}_non_200"] = sum(r[2] for r in measured)
    result["ratio"] = result["signed_rps"] / result["plain_rps"]
    result["ratio_twin"] = result["signed_rps"] / result["twin_rps"]
    return result


def wait_healthy_plain(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("plain server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("plain server did not start")


# --- 2./3. fan-out ------------------------------------------------------------------------------------------


def serve_peers(config_path: str) -> None:
    """Subprocess: every peer node (real create_app) on its own port in one uvicorn loop, plus one hung peer."""
    import uvicorn

    from registry.app import create_app
    from registry.core.db import claim_database, make_engine
    from registry.core.settings import load_settings

    config = json.loads(Path(config_path).read_text())
    servers = []
    for data_dir, port in config["peers"]:
        settings = load_settings(data_dir=Path(data_dir))
        engine = make_engine(settings.effective_database_url)
        claim_database(engine, settings.node_id)
        app = create_app(settings, engine=engine)
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                    loop="uvloop",
                    http="httptools",
                    access_log=False,
                )
            )
        )

    async def hung(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)  # accepts, reads nothing, never answers

    async def main() -> None:
        server = await asyncio.start_server(hung, "127.0.0.1", config["hung_port"])
        async with server:
            await asyncio.gather(*(s.serve() for s in servers))

    import uvloop

    uvloop.run(main())


async def run_fanouts(
    caller_dir: Path, peers: list[str], wire_name: str, runs: int, deadline: float, *, audit: bool = True
) -> dict[str, Any]:
    from federation.fanout import PeerCall, fanout
    from federation.wire import AiohttpWire, HttpxWire
    from registry.app import create_app
    from registry.core.db import claim_database, make_engine
    from registry.core.settings import load_settings

    settings = load_settings(data_dir=caller_dir)
    engine = make_engine(settings.effective_database_url)
    claim_database(engine, settings.node_id)
    if wire_name == "httpx":
        import httpx

        transport: Any = HttpxWire(httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200)))
    else:
        transport = AiohttpWire()
    app = create_app(settings, engine=engine, transport=transport)
    federation = app.state.node.extensions["federation"]
    if not audit:
        federation.client.auditor = None  # to split the transport's own CPU from the audit log's
    calls = [PeerCall(p, PING, "placement-search") for p in peers]
    walls, slowest, overhead, cpu = [], [], [], 0.0
    outcomes: dict[str, int] = {}
    budget_end = time.perf_counter() + FANOUT_BUDGET_SECONDS
    for i in range(runs + 10):
        if i >= 30 and time.perf_counter() > budget_end:
            break
        cpu_before = time.process_time()
        result = await fanout(federation.client, calls, deadline_seconds=deadline)
        if i < 10:
            continue  # warm-up: connections, caches
        cpu += time.process_time() - cpu_before
        walls.append(result.elapsed_ms)
        worst = max(r.latency_ms for r in result.results)
        slowest.append(worst)
        overhead.append(result.elapsed_ms - worst)
        for r in result.results:
            outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1
    await federation.aclose()
    engine.dispose()
    return {
        "wall_p50": pct(walls, 0.5),
        "wall_p99": pct(walls, 0.99),
        "slowest_p99": pct(slowest, 0.99),
        "overhead_p99": pct(overhead, 0.99),
        "cpu_ms_per_peer": cpu / (len(walls) * len(peers)) * 1000,
        "runs": len(walls),
        "outcomes": outcomes,
        "walls": walls,
    }


def fanout_bench(root: Path, template: Path) -> dict[str, Any]:
    peer_ports = [free_port() for _ in range(FANOUT_PEERS)]
    hung_port = free_port()
    caller_dir = root / "fan" / "rcc-fan-caller"
    (root / "fan").mkdir()
    peers = {
        f"rcc-peer-{i}": (make_node(root / "fan", template, f"rcc-peer-{i}", port), port)
        for i, port in enumerate(peer_ports)
    }
    caller_dir = make_node(root / "fan", template, "rcc-fan-caller", free_port())
    hung_dir = make_node(root / "fan", template, "rcc-hung", hung_port)
    members = {**peers, "rcc-fan-caller": (caller_dir, 0), "rcc-hung": (hung_dir, hung_port)}
    directory_path, jwks_path = write_directory(root / "fan", members)
    for data_dir, _port in [*peers.values(), (caller_dir, 0)]:
        with (data_dir / "node.toml").open("a") as fh:
            for key, value in federated(directory_path, jwks_path).items():
                fh.write(f"{key} = {json.dumps(value)}\n")
    config = root / "fan" / "peers.json"
    config.write_text(json.dumps({"peers": [[str(d), p] for d, p in peers.values()], "hung_port": hung_port}))
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-peers", str(config)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in peer_ports:
            wait_healthy(port, server)
        names = list(peers)
        one = asyncio.run(run_fanouts(caller_dir, names[:1], "aiohttp", FANOUT_RUNS, 5.0))
        aio = asyncio.run(run_fanouts(caller_dir, names, "aiohttp", FANOUT_RUNS, 5.0))
        bare = asyncio.run(run_fanouts(caller_dir, names, "aiohttp", FANOUT_RUNS, 5.0, audit=False))
        hx = asyncio.run(run_fanouts(caller_dir, names, "httpx", FANOUT_RUNS // 3, 5.0, audit=False))
        hung = asyncio.run(run_fanouts(caller_dir, [*names[:9], "rcc-hung"], "aiohttp", HUNG_RUNS, HUNG_DEADLINE))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    late = [w - HUNG_DEADLINE * 1000 for w in hung["walls"]]
    return {
        "one": one,
        "aiohttp": aio,
        "bare": bare,
        "httpx": hx,
        "hung": hung,
        "hung_late_max": max(late),
        "hung_late_p99": pct(late, 0.99),
    }


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rcc-bench-fed-") as tmp:
        root = Path(tmp)
        template = template_db(root)
        only = next((arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--only=")), None)
        tp = throughput(root, template) if only in (None, "throughput") else None
        fo = fanout_bench(root, template) if only in (None, "fanout") else None
    out = print
    out("== federation transport benchmark (one worker, uvloop + httptools; 127.0.0.1) ==")
    if tp is not None:
        show_throughput(tp)
    if fo is not None:
        show_fanout(fo)
    print(f"(bench took {time.perf_counter() - started:.0f} s)")


def show_throughput(tp: dict[str, float]) -> None:
    out = print
    out(f"ping, {CONNECTIONS} concurrent keep-alive clients, {ROUNDS} interleaved rounds of {ROUND_SECONDS:.0f} s:")
    labels = {
        "plain": "plain app, same handler (no token/audit/sig)",
        "twin": "node, unguarded twin route (audited)",
        "signed": "node, /federation/v1/ping (verify+jti+audit+sig)",
    }
    for name, label in labels.items():
        out(
            f"  {label:<50} {tp[name + '_rps']:7.0f} req/s  {tp[name + '_cpu_ms']:.3f} ms server CPU/req"
            f"  non-200: {tp[name + '_non_200']}"
        )
    out(f"  RATIO signed/plain = {tp['ratio']:.2f}   (target >= 0.40, stretch 0.50)")
    out(f"  ratio signed/twin  = {tp['ratio_twin']:.2f}   (the transport's own cost: same node, same audit)")
    out(
        f"  server CPU per request, plain/signed = {tp['plain_cpu_ms'] / tp['signed_cpu_ms']:.2f}"
        "   (the throughput ratio when both servers are CPU-bound)"
    )


def show_fanout(fo: dict[str, Any]) -> None:
    out = print
    one, aio, hx = fo["one"], fo["aiohttp"], fo["httpx"]
    out(f"fan-out to {FANOUT_PEERS} real peer nodes ({aio['runs']} runs; signed, verified, audited):")
    out(f"  1 peer:   p50 {one['wall_p50']:.1f} ms  p99 {one['wall_p99']:.1f} ms")
    out(
        f"  10 peers: p50 {aio['wall_p50']:.1f} ms  p99 {aio['wall_p99']:.1f} ms;"
        f" slowest peer p99 {aio['slowest_p99']:.1f} ms"
    )
    out(
        f"  fan-out p99 - slowest-peer p99 = {aio['wall_p99'] - aio['slowest_p99']:.1f} ms (target <= 15);"
        f" per-run overhead (wall - slowest) p99 {aio['overhead_p99']:.2f} ms"
    )
    out(f"  10 peers / 1 peer p99 ratio = {aio['wall_p99'] / one['wall_p99']:.2f}")
    bare = fo["bare"]
    out(
        f"  client CPU per peer, transport only (sign, HTTP, verify): aiohttp {bare['cpu_ms_per_peer']:.3f} ms"
        f" vs httpx {hx['cpu_ms_per_peer']:.3f} ms"
        f" (httpx/aiohttp = {hx['cpu_ms_per_peer'] / bare['cpu_ms_per_peer']:.1f}x)"
    )
    out(f"  client CPU per peer, with the outbound audit entry: {aio['cpu_ms_per_peer']:.3f} ms (target <= 1 ms)")
    out(f"  outcomes: aiohttp {aio['outcomes']}  bare {bare['outcomes']}  httpx {hx['outcomes']}")
    out(
        f"one hung peer among 10, deadline {HUNG_DEADLINE * 1000:.0f} ms ({HUNG_RUNS} runs): returned at most"
        f" {fo['hung_late_max']:.1f} ms after the deadline (p99 {fo['hung_late_p99']:.1f} ms; target <= 30)"
    )
    out(f"  outcomes {fo['hung']['outcomes']}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-peers":
        serve_peers(sys.argv[2])
    else:
        main()
