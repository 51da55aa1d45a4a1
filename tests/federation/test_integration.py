"""A real federation on 127.0.0.1: ``rcc-node`` processes, a directory built and signed with the CLI.

One module-scoped federation (operator rcc-nat, regional rcc-se and rcc-gm, rcc-w2 on two workers) serves
the tests that do not change it; tests that change the directory or stop nodes start their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.client import FederationClient
from federation.directory import Directory, load_pinned_keys, verify_envelope
from federation.fanout import PeerCall, fanout
from federation.tokens import Signer
from federation.wire import AiohttpWire
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from schemas.vocabulary import PeerOutcome
from tests.support import jose
from tests.support.federation import (
    PeerIdentity,
    bearer,
    configure,
    directory,
    sign,
    spec_entry,
    token,
    write_json,
)
from tests.support.nodes import NodeSpec, ServedNode, free_port, init_node, invoke_cli, start_node, wait_for

pytestmark = pytest.mark.integration
PING = "/federation/v1/ping"


def ready_serial(base_url: str) -> int | None:
    try:
        response = httpx.get(f"{base_url}/readyz", timeout=2)
    except httpx.TransportError:
        return None
    detail = response.json().get("checks", {}).get("directory", {}).get("detail")
    return detail.get("serial") if response.status_code == 200 and isinstance(detail, dict) else None


START_TIMEOUT = 120.0  # generous: a loaded 2-core CI machine can take many seconds to import the app


def start_all(specs: list[NodeSpec], workers: dict[str, int] | None = None) -> dict[str, ServedNode]:
    """Start nodes side by side; if one fails, stop the others before failing."""
    with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
        futures = {
            s.node_id: pool.submit(start_node, s, workers=(workers or {}).get(s.node_id, 1), timeout=START_TIMEOUT)
            for s in specs
        }
        concurrent.futures.wait(futures.values())
    started = {name: f.result() for name, f in futures.items() if f.exception() is None}
    failed = [f.exception() for f in futures.values() if f.exception() is not None]
    if failed:
        for node in started.values():
            node.stop()
        raise failed[0]  # type: ignore[misc]
    return started


def in_parallel(*jobs: Callable[[], Any], width: int = 3) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(min(width, len(jobs))) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


@dataclass
class Federation:
    tmp: Path
    specs: dict[str, NodeSpec]
    nodes: dict[str, ServedNode]
    caller: PeerIdentity
    sleepy: PeerIdentity
    forger: PeerIdentity
    directory_path: Path
    operator_jwks: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, name: str, path: str = PING) -> str:
        return self.specs[name].base_url + path


def operator_files(tmp: Path, operator: NodeSpec) -> Path:
    ring = KeyRing.load(operator.data_dir / "keys")
    return write_json(tmp / "operator.jwks.json", {"keys": [k.jwk() for k in ring.keys]})


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    tmp = tmp_path_factory.mktemp("federation")
    nat, se, gm, w2, dead = in_parallel(
        lambda: init_node(tmp, "rcc-nat", kind="national", region_code=None),
        lambda: init_node(tmp, "rcc-se", region_code="E12000008"),
        lambda: init_node(tmp, "rcc-gm", region_code="E12000002"),
        lambda: init_node(tmp, "rcc-w2", region_code="E12000007"),
        lambda: init_node(tmp, "rcc-dead", region_code="E12000006"),
    )
    specs = {s.node_id: s for s in (nat, se, gm, w2, dead)}
    jwks_path = operator_files(tmp, nat)
    directory_path = tmp / "directory.json"
    for spec in (nat, se, gm, w2):
        configure(
            spec,
            operator_jwks=jwks_path,
            directory_file=directory_path,
            directory_refresh_seconds=0.3,
            directory_operator=spec is nat,
        )
    caller = PeerIdentity("rcc-caller", retired=[Ed25519PrivateKey.generate()])
    sleepy = PeerIdentity("rcc-sleepy", base_url=f"http://127.0.0.1:{free_port()}")
    forger = PeerIdentity("rcc-forger", base_url=f"http://127.0.0.1:{free_port()}")
    nodes = start_all([nat, se, gm, w2], workers={"rcc-w2": 2})
    try:
        # The operator's real workflow: build from the live descriptors (plus members given in full), sign.
        members = [{"base_url": specs[n].base_url, "node_id": n} for n in ("rcc-nat", "rcc-se", "rcc-gm", "rcc-w2")]
        members += [spec_entry(dead), caller.entry(), sleepy.entry(), forger.entry()]
        nodes_file = write_json(tmp / "nodes.json", {"operator": "rcc-nat", "nodes": members})
        invoke_cli(["directory", "build", str(nodes_file), "--serial", "10", "--out", str(tmp / "unsigned.json")])
        invoke_cli(
            [
                "directory",
                "sign",
                str(tmp / "unsigned.json"),
                "--data-dir",
                str(nat.data_dir),
                "--out",
                str(directory_path),
            ]
        )
        for node in nodes.values():
            wait_for(
                lambda node=node: ready_serial(node.base_url) == 10, what=f"{node.spec.node_id} to load the directory"
            )
        yield Federation(tmp, specs, nodes, caller, sleepy, forger, directory_path, jwks_path)
    finally:
        for node in nodes.values():
            node.stop()


def node_jwk(fed: Federation, name: str) -> dict[str, Any]:
    return KeyRing.load(fed.specs[name].data_dir / "keys").active.jwk()


def assert_signed_by(response: httpx.Response, jwk: dict[str, Any], jti: str | None) -> None:
    payload = jose.verify_compact(response.headers["rcc-response-signature"], jwk)
    assert (payload["jti"], payload["status"]) == (jti, response.status_code)


class TestHappyPath:
    def test_peers_check_succeeds_both_ways(self, fed: Federation) -> None:
        for name in ("rcc-se", "rcc-gm"):
            result = invoke_cli(["peers", "check", "--json", "--data-dir", str(fed.specs[name].data_dir)])
            rows = {row["node_id"]: row for row in json.loads(result.stdout)}
            assert name not in rows
            for other in {"rcc-nat", "rcc-se", "rcc-gm", "rcc-w2"} - {name}:
                assert rows[other]["outcome"] == "ok", rows[other]
                assert rows[other]["kid"] == node_jwk(fed, other)["kid"]
            assert rows["rcc-dead"]["outcome"] == "unreachable"
        table = invoke_cli(["peers", "check", "--data-dir", str(fed.specs["rcc-se"].data_dir)]).stdout
        assert "rcc-gm" in table
        assert "ok" in table

    def test_signed_call_is_answered_and_the_answer_verifies_independently(self, fed: Federation) -> None:
        value, jti = token(fed.caller.active, iss="rcc-caller", aud="rcc-gm", url=fed.url("rcc-gm"))
        response = httpx.get(fed.url("rcc-gm"), headers=bearer(value))
        assert response.status_code == 200, response.text
        assert response.json()["peer"] == "rcc-caller"
        jwks = httpx.get(fed.url("rcc-gm", "/.well-known/jwks.json")).json()
        assert_signed_by(response, jwks["keys"][0], jti)

    def test_operator_serves_the_signed_directory(self, fed: Federation) -> None:
        body = httpx.get(fed.url("rcc-nat", "/federation/v1/directory")).json()
        jose.verify_detached(
            body["directory"], body["signature"], json.loads(fed.operator_jwks.read_text()), "rcc-directory+jws"
        )
        assert body["directory"]["serial"] == 10
        assert httpx.get(fed.url("rcc-se", "/federation/v1/directory")).status_code == 404
        gm = next(n for n in body["directory"]["nodes"] if n["node_id"] == "rcc-gm")
        assert "E12000001" in gm["neighbours"]


def _refusal(fed: Federation, reason: str) -> tuple[str, str, str, bytes]:
    """(token, jti, method, body) for one refusal case against rcc-gm."""
    url, key = fed.url("rcc-gm"), fed.caller.active
    cases: dict[str, Callable[[], tuple[str, str]]] = {
        "unknown-node": lambda: token(key, iss="rcc-stranger", aud="rcc-gm", url=url),
        "unknown-key": lambda: token(Ed25519PrivateKey.generate(), iss="rcc-caller", aud="rcc-gm", url=url),
        "retired-key": lambda: token(fed.caller.retired[0], iss="rcc-caller", aud="rcc-gm", url=url),
        "wrong-audience": lambda: token(key, iss="rcc-caller", aud="rcc-se", url=url),
        "expired": lambda: token(key, iss="rcc-caller", aud="rcc-gm", url=url, now=time.time() - 120),
        "issued-in-future": lambda: token(key, iss="rcc-caller", aud="rcc-gm", url=url, now=time.time() + 90),
        "url-mismatch": lambda: token(key, iss="rcc-caller", aud="rcc-gm", url=fed.url("rcc-se")),
        "method-mismatch": lambda: token(key, iss="rcc-caller", aud="rcc-gm", url=url, method="POST"),
        "body-mismatch": lambda: token(key, iss="rcc-caller", aud="rcc-gm", url=url, method="POST", body=b'{"a":1}'),
    }
    value, jti = cases[reason]()
    method = "POST" if reason == "body-mismatch" else "GET"
    return value, jti, method, b'{"a":2}' if method == "POST" else b""


REASONS = [
    "unknown-node",
    "unknown-key",
    "retired-key",
    "wrong-audience",
    "expired",
    "issued-in-future",
    "url-mismatch",
    "method-mismatch",
    "body-mismatch",
]


class TestRefusals:
    @pytest.mark.parametrize("reason", REASONS)
    def test_refused_with_reason_over_the_wire(self, fed: Federation, reason: str) -> None:
        value, jti, method, body = _refusal(fed, reason)
        headers = {**bearer(value), "content-type": "application/json"}
        response = httpx.request(method, fed.url("rcc-gm"), headers=headers, content=body)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == reason
        assert_signed_by(response, node_jwk(fed, "rcc-gm"), jti)

    def test_replay_is_refused_across_two_workers(self, fed: Federation) -> None:
        url = fed.url("rcc-w2")
        value, _ = token(fed.caller.active, iss="rcc-caller", aud="rcc-w2", url=url)

        def send() -> int:
            with httpx.Client() as fresh_connection:  # a new connection each: spread across both workers
                return fresh_connection.get(url, headers=bearer(value)).status_code

        statuses = in_parallel(*([send] * 16))
        assert sorted(statuses) == [200] + [401] * 15


class TestFanout:
    def test_fanout_reports_killed_sleeping_and_forging_peers(self, fed: Federation) -> None:
        dead = start_node(fed.specs["rcc-dead"], timeout=START_TIMEOUT)
        dead.process.kill()
        dead.process.wait(timeout=10)
        pinned = load_pinned_keys(str(fed.operator_jwks))
        held: Directory = verify_envelope(json.loads(fed.directory_path.read_text()), pinned, now=utcnow())
        ring = KeyRing.load(fed.specs["rcc-se"].data_dir / "keys")
        outcome: dict[str, Any] = {}
        asyncio.run(_fanout_with_bad_peers(fed, held, ring, outcome))
        result = outcome["result"]
        assert result.outcomes() == {
            "rcc-gm": PeerOutcome.ok,
            "rcc-nat": PeerOutcome.ok,
            "rcc-dead": PeerOutcome.unreachable,
            "rcc-sleepy": PeerOutcome.timeout,
            "rcc-forger": PeerOutcome.bad_signature,
        }
        assert not outcome["sleeper_finished"]  # returned while the hung peer was still sleeping
        assert set(result.answers) == {"rcc-gm", "rcc-nat"}
        assert all(r.response_signature for r in result.results if r.ok)


async def _fanout_with_bad_peers(fed: Federation, held: Directory, ring: KeyRing, outcome: dict[str, Any]) -> None:
    finished = asyncio.Event()

    async def sleeper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await asyncio.sleep(30)
            finished.set()
        finally:
            writer.close()

    async def forger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        auth = next(line for line in head.split("\r\n") if line.lower().startswith("authorization:"))
        jti = json.loads(jose.b64d(auth.split()[-1].split(".")[1]))["jti"]
        body = b'{"beds":99}'
        forged = Signer(KeyRing.generate().active).compact(
            {
                "jti": jti,
                "status": 200,
                "bdh": jose.b64e(hashlib.sha256(body).digest()),
                "iat": int(time.time()),
            },
            typ="rcc-response+jws",
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"rcc-response-signature: %s\r\n\r\n%s" % (len(body), forged.encode(), body)
        )
        await writer.drain()
        writer.close()

    servers = [
        await asyncio.start_server(sleeper, "127.0.0.1", int(fed.sleepy.base_url.rsplit(":", 1)[1])),
        await asyncio.start_server(forger, "127.0.0.1", int(fed.forger.base_url.rsplit(":", 1)[1])),
    ]
    client = FederationClient(node_id="rcc-se", signer=Signer(ring.active), directory=lambda: held, wire=AiohttpWire())
    try:
        peers = ["rcc-gm", "rcc-nat", "rcc-dead", "rcc-sleepy", "rcc-forger"]
        outcome["result"] = await fanout(
            client, [PeerCall(p, PING, "placement-search") for p in peers], deadline_seconds=1.5
        )
        outcome["sleeper_finished"] = finished.is_set()
    finally:
        await client.aclose()
        for server in servers:
            server.close()


class TestDirectoryLifecycle:
    def test_member_follows_the_operator_through_removal_and_outage(self, tmp_path: Path) -> None:
        op, member = in_parallel(
            lambda: init_node(tmp_path, "rcc-op", kind="national", region_code=None),
            lambda: init_node(tmp_path, "rcc-m", region_code="E12000003"),
        )
        operator_ring = KeyRing.load(op.data_dir / "keys")
        jwks = operator_files(tmp_path, op)
        caller = PeerIdentity("rcc-caller")
        entries = [spec_entry(op), spec_entry(member), caller.entry()]
        first = write_json(tmp_path / "d1.json", sign(directory(entries, serial=1, operator="rcc-op"), operator_ring))
        second = write_json(
            tmp_path / "d2.json", sign(directory(entries[:2], serial=2, operator="rcc-op"), operator_ring)
        )
        configure(op, operator_jwks=jwks, directory_file=first, directory_operator=True, directory_refresh_seconds=0.3)
        configure(member, operator_jwks=jwks, operator_url=op.base_url, directory_refresh_seconds=0.3)
        started = start_all([op, member])
        served_op, served_member = started["rcc-op"], started["rcc-m"]
        try:
            wait_for(lambda: ready_serial(member.base_url) == 1, what="the member to fetch serial 1")
            url = member.base_url + PING

            def caller_status() -> int:
                return httpx.get(
                    url, headers=bearer(token(caller.active, iss="rcc-caller", aud="rcc-m", url=url)[0])
                ).status_code

            assert caller_status() == 200
            invoke_cli(["directory", "load", str(second), "--data-dir", str(op.data_dir)])
            wait_for(lambda: ready_serial(member.base_url) == 2, what="the member to fetch serial 2")
            refused = httpx.get(url, headers=bearer(token(caller.active, iss="rcc-caller", aud="rcc-m", url=url)[0]))
            assert (refused.status_code, refused.json()["reason"]) == (401, "unknown-node")

            stale = invoke_cli(["directory", "load", str(first), "--data-dir", str(member.data_dir)], check=False)
            assert stale.returncode != 0
            assert "stale-serial" in stale.stderr

            served_op.stop()

            def outage_seen() -> bool:
                body = httpx.get(member.base_url + "/readyz").json()
                detail = body["checks"]["directory"]["detail"]
                return "operator" in (detail.get("last_error") or "") and body["status"] == "ready"

            wait_for(outage_seen, what="a failed fetch while the member stays ready")
            assert ready_serial(member.base_url) == 2
            shown = json.loads(invoke_cli(["directory", "show", "--json", "--data-dir", str(member.data_dir)]).stdout)
            assert shown["serial"] == 2
            assert {n["node_id"] for n in shown["nodes"]} == {"rcc-op", "rcc-m"}
        finally:
            served_member.stop()
            served_op.stop()

    def test_expired_directory_turns_readyz_503_and_refuses_peers(self, tmp_path: Path) -> None:
        spec = init_node(tmp_path, "rcc-x", region_code="E12000009")
        operator = KeyRing.generate()
        caller = PeerIdentity("rcc-caller")

        path = tmp_path / "short.json"
        jwks = write_json(tmp_path / "op.json", operator.jwks())
        configure(spec, operator_jwks=jwks, directory_file=path, directory_refresh_seconds=0.3)
        node = start_node(spec, timeout=START_TIMEOUT)
        try:
            # Written only once the node is up, so its short life is not spent while the node starts.
            document = directory([spec_entry(spec), caller.entry()], issued=utcnow(), lifetime=timedelta(seconds=10))
            write_json(path, sign(document, operator))
            wait_for(lambda: ready_serial(spec.base_url) == 1, what="the directory to load")

            def expired() -> httpx.Response | None:
                response = httpx.get(spec.base_url + "/readyz")
                return response if response.status_code == 503 else None

            response = wait_for(expired, timeout=30, what="readyz to turn 503")
            assert response.json()["checks"]["directory"]["detail"]["expired"] is True
            url = spec.base_url + PING
            value, _ = token(caller.active, iss="rcc-caller", aud="rcc-x", url=url)
            refused = httpx.get(url, headers=bearer(value))
            assert (refused.status_code, refused.json()["code"]) == (503, "directory-unavailable")
        finally:
            node.stop()

    def test_cli_load_refuses_unsigned_foreign_expired_and_older(self, tmp_path: Path) -> None:
        spec = init_node(tmp_path, "rcc-y", region_code="E12000004")
        operator = KeyRing.generate()
        jwks = write_json(tmp_path / "op.json", operator.jwks())
        configure(spec, operator_jwks=jwks)

        members = [spec_entry(spec)]
        good = write_json(tmp_path / "good.json", sign(directory(members, serial=5), operator))
        cases = {
            "unsigned": {"directory": directory(members, serial=6)},
            "wrong-signer": sign(directory(members, serial=6), KeyRing.generate()),
            "expired": sign(
                directory(members, serial=6, issued=utcnow() - timedelta(days=9), lifetime=timedelta(days=1)), operator
            ),
            "stale-serial": sign(directory(members, serial=4), operator),
        }
        invoke_cli(["directory", "load", str(good), "--data-dir", str(spec.data_dir)])
        for reason, envelope in cases.items():
            path = write_json(tmp_path / f"{reason}.json", envelope)
            result = invoke_cli(["directory", "load", str(path), "--data-dir", str(spec.data_dir)], check=False)
            assert result.returncode != 0, reason
            assert f"({reason})" in result.stderr
            assert "Traceback" not in result.stderr
        shown = json.loads(invoke_cli(["directory", "show", "--json", "--data-dir", str(spec.data_dir)]).stdout)
        assert shown["serial"] == 5
