"""Token endpoint benchmark: ``POST /oauth/token`` throughput on one real uvicorn worker, beside a plain route.

Run: ``.venv/bin/python bench/bench_token.py`` (about 40 s; traffic to 127.0.0.1 only).

One ``rcc-node serve`` (1 worker, uvloop + httptools, SQLite) and, in this process, keep-alive HTTP/1.1
clients on raw asyncio streams (so the load generator is not the bottleneck). Measured side by side in one
run, rounds alternating:

* ``GET /healthz`` — the plain, unauthenticated baseline;
* ``POST /oauth/token`` with ``client_secret_basic`` (the scrypt check is paid once per process per client,
  then a keyed-HMAC cache answers);
* ``POST /oauth/token`` with ``private_key_jwt`` (Ed25519 assertion verified, jti burnt in the database);
* ``GET /v1/whoami`` with an access token (what every protected route pays: cached token check + one
  primary-key read of the client, so revocation bites at once).

Printed: requests/s and server CPU per request for each, the cold scrypt cost, and the ratio the token
endpoint is judged by: tokens/s ÷ plain-route requests/s (both on the same worker in the same run).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONNECTIONS = 8
ROUND_SECONDS = 3.0
ROUNDS = 2
WARMUP_SECONDS = 0.5
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _worker(port: int, make: Callable[[], bytes], deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(make())
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


async def _load(port: int, make: Callable[[], bytes], seconds: float) -> int:
    counts = [0]
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_worker(port, make, deadline, counts) for _ in range(CONNECTIONS)))
    return counts[0]


def measure(pid: int, port: int, make: Callable[[], bytes]) -> tuple[float, float]:
    """(requests/s, server CPU ms per request) over one round."""
    asyncio.run(_load(port, make, WARMUP_SECONDS))
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    done = asyncio.run(_load(port, make, ROUND_SECONDS))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return done / elapsed, 1000 * cpu / max(done, 1)


def _per_op_us(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call (process time: less disturbed by other load on the machine than wall time)."""
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def in_process_costs(settings, secret_client, keyed_client, pair) -> dict[str, float]:
    """What each piece costs without HTTP: signing, checking (cold and cached), the revocation read, and the
    whole token endpoint engine (authlib grant + client authentication + signing) for both methods."""
    import jwt

    from registry.core.auth.server import NodeAuthorizationServer, TokenRequest
    from registry.core.auth.service import client_status
    from registry.core.auth.tokens import NodeTokenVerifier, issue_access_token
    from registry.core.db import head_revisions, make_engine
    from registry.core.keys import KeyRing
    from registry.core.node import Node

    keys = KeyRing.load(settings.effective_key_dir)
    engine = make_engine(settings.effective_database_url)
    node = Node(settings=settings, engine=engine, keys=keys, head_revisions=head_revisions())
    server = NodeAuthorizationServer(node)
    verifier = NodeTokenVerifier(keys=keys, base_url=settings.base_url, engine=engine)
    cid = secret_client.client_id

    def issue() -> str:
        return issue_access_token(keys, base_url=settings.base_url, client_id=cid, roles=["analyst"]).access_token

    token = issue()
    fresh = [issue() for _ in range(400)]

    def cold() -> None:
        verifier.verify(fresh.pop())

    basic = base64.b64encode(f"{cid}:{secret_client.client_secret}".encode()).decode()
    form = {"grant_type": "client_credentials"}

    def token_basic() -> None:
        status, _, _ = server.token(TokenRequest("", {"Authorization": f"Basic {basic}"}, dict(form)))
        assert status == 200

    def token_keyed() -> None:
        now = int(time.time())
        kid = keyed_client.client_id
        claims = {"iss": kid, "sub": kid, "aud": server.token_url, "exp": now + 60, "jti": secrets.token_urlsafe(12)}
        assertion = jwt.encode(claims, pair.private, algorithm="EdDSA")
        request = TokenRequest("", {}, {**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
        status, _, _ = server.token(request)
        assert status == 200

    costs = {
        "issue access token (Ed25519 sign)": _per_op_us(issue, 300),
        "check token, first sight (verify + client read)": _per_op_us(cold, 300),
        "check token, cached (client read only)": _per_op_us(lambda: verifier.verify(token), 1000),
        "client revocation read alone (PK lookup)": _per_op_us(lambda: client_status(engine, cid), 1000),
        "token engine, client_secret_basic (warm)": _per_op_us(token_basic, 200),
        "token engine, private_key_jwt (incl. signing the assertion)": _per_op_us(token_keyed, 200),
    }
    engine.dispose()
    return costs


def main() -> None:
    import jwt
    from sqlmodel import Session

    from registry.core.auth import service
    from registry.core.auth.models import ClientCreate
    from registry.core.db import make_engine
    from registry.core.settings import load_settings
    from schemas.vocabulary import Role
    from tests.support.tokens import ed25519_pair

    workdir = Path(tempfile.mkdtemp(prefix="rcc-bench-token-"))
    data_dir, port = workdir / "node", free_port()
    cli = [sys.executable, "-m", "registry.cli"]
    subprocess.run(
        [*cli, "init", "--data-dir", str(data_dir), "--node-id", "rcc-bench", "--region-code", "E12000008",
         "--base-url", f"http://127.0.0.1:{port}", "--port", str(port)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = load_settings(data_dir=data_dir, config=data_dir / "node.toml")
    engine = make_engine(settings.effective_database_url)
    pair = ed25519_pair("bench-key")
    with Session(engine) as session:
        secret_client = service.create(session, data=ClientCreate(name="bench basic", roles=[Role.analyst]))
        keyed_client = service.create(
            session, data=ClientCreate(name="bench keyed", roles=[Role.analyst], jwk=pair.public_jwk)
        )
        session.commit()
    engine.dispose()

    stored = service.hash_secret("a-client-secret")
    t0 = time.perf_counter()
    for _ in range(5):
        service.verify_secret("a-client-secret", stored)
    scrypt_ms = (time.perf_counter() - t0) / 5 * 1000

    inproc = in_process_costs(settings, secret_client, keyed_client, pair)

    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [*cli, "serve", "--data-dir", str(data_dir), "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        form = b"grant_type=client_credentials"
        basic = base64.b64encode(f"{secret_client.client_id}:{secret_client.client_secret}".encode()).decode()
        form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        basic_request = request_bytes(
            "POST", "/oauth/token", port, {**form_headers, "Authorization": f"Basic {basic}"}, form
        )
        healthz_request = request_bytes("GET", "/healthz", port, {})

        def assertion_request() -> bytes:
            now = int(time.time())
            claims = {
                "iss": keyed_client.client_id, "sub": keyed_client.client_id, "aud": f"{settings.base_url}/oauth/token",
                "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12),
            }  # fmt: skip
            token = jwt.encode(claims, pair.private, algorithm="EdDSA")
            body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={token}"
            return request_bytes("POST", "/oauth/token", port, form_headers, body.encode())

        import httpx

        token = httpx.post(
            f"{settings.base_url}/oauth/token",
            content=form,
            headers={**form_headers, "Authorization": f"Basic {basic}"},
        ).json()["access_token"]
        whoami_request = request_bytes("GET", "/v1/whoami", port, {"Authorization": f"Bearer {token}"})

        scenarios: dict[str, Callable[[], bytes]] = {
            "GET /healthz (plain baseline)": lambda: healthz_request,
            "POST /oauth/token client_secret_basic": lambda: basic_request,
            "POST /oauth/token private_key_jwt": assertion_request,
            "GET /v1/whoami (token check + revocation read)": lambda: whoami_request,
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
        for _ in range(ROUNDS):
            for name, make in scenarios.items():
                results[name].append(measure(server.pid, port, make))
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()

    print(f"token endpoint benchmark — 1 uvicorn worker, {CONNECTIONS} keep-alive connections, SQLite, "
          f"{ROUNDS}x{ROUND_SECONDS:.0f} s rounds alternating, {os.cpu_count()} CPUs")  # fmt: skip
    best = {name: max(r[0] for r in runs) for name, runs in results.items()}
    cpu = {name: min(r[1] for r in runs) for name, runs in results.items()}
    for name in scenarios:
        print(f"  {name:<48} {best[name]:8.0f} req/s   {cpu[name]:6.2f} ms server CPU/req")
    print(f"  scrypt (n=2^14, r=8, p=1), one cold secret check: {scrypt_ms:.0f} ms -> {1000 / scrypt_ms:.0f} tokens/s "
          "if every request paid it")  # fmt: skip
    print("in-process CPU per operation (no HTTP):")
    for name, micro in inproc.items():
        print(f"  {name:<62} {micro:8.0f} us")
    plain = best["GET /healthz (plain baseline)"]
    basic_tps = best["POST /oauth/token client_secret_basic"]
    keyed_tps = best["POST /oauth/token private_key_jwt"]
    print(f"RATIO token endpoint / plain route: client_secret_basic {basic_tps / plain:.2f}x, "
          f"private_key_jwt {keyed_tps / plain:.2f}x")  # fmt: skip
    whoami = best["GET /v1/whoami (token check + revocation read)"]
    print(f"RATIO protected route (whoami) / plain route: {whoami / plain:.2f}x")
    print(f"TOKENS/S (one worker): client_secret_basic {basic_tps:.0f}, private_key_jwt {keyed_tps:.0f}")


if __name__ == "__main__":
    main()
