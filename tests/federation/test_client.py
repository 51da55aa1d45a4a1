"""The outbound client and fan-out: two in-process nodes calling each other, and peers that misbehave."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, col, select

from federation.client import FederationClient
from federation.directory import Directory, load_pinned_keys, verify_envelope
from federation.fanout import PeerCall, fanout
from federation.models import FanoutResult, PeerResult
from federation.runtime import Federation
from federation.tokens import Signer, body_digest, sign_response
from federation.wire import HttpxWire
from registry.app import create_app
from registry.core.audit.models import AuditEntry
from registry.core.db import claim_database, make_engine, upgrade, utcnow
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from schemas.vocabulary import PeerOutcome
from tests.support import jose
from tests.support.databases import fresh_database
from tests.support.federation import directory, operator_jwks, ring_entry, sign, write_json

PING = "/federation/v1/ping"


class HostRouter(httpx.AsyncBaseTransport):
    """Routes each request to the in-process app serving its host (apps registered after creation)."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


@pytest.fixture
def rings() -> dict[str, KeyRing]:
    return {name: KeyRing.generate() for name in ("rcc-a", "rcc-b", "operator")}


@pytest.fixture
def two_nodes(tmp_path: Path, rings: dict[str, KeyRing]) -> Iterator[dict[str, FastAPI]]:
    """Nodes rcc-a and rcc-b in one process, each calling the other through an injected transport."""
    operator = rings["operator"]
    document = directory(
        [
            ring_entry("rcc-a", "http://rcc-a.test", rings["rcc-a"]),
            ring_entry("rcc-b", "http://rcc-b.test", rings["rcc-b"], region_code="E12000002"),
        ]
    )
    path = write_json(tmp_path / "directory.json", sign(document, operator))
    router = HostRouter()
    apps: dict[str, FastAPI] = {}
    engines = []
    with fresh_database(tmp_path / "a") as url_a, fresh_database(tmp_path / "b") as url_b:
        for name, url in (("rcc-a", url_a), ("rcc-b", url_b)):
            (tmp_path / name).mkdir(exist_ok=True)
            upgrade(url)
            settings = load_settings(
                data_dir=tmp_path / name,
                node_id=name,
                database_url=url,
                base_url=f"http://{name}.test",
                operator_jwks=operator_jwks(operator),
                directory_file=str(path),
            )
            engine = make_engine(url)
            engines.append(engine)
            claim_database(engine, name)
            apps[name] = create_app(settings, keys=rings[name], engine=engine, transport=router)
            router.apps[f"{name}.test"] = httpx.ASGITransport(app=apps[name])
        yield apps
        for engine in engines:
            engine.dispose()


def federation_of(app: FastAPI) -> Federation:
    federation: Federation = app.state.node.extensions["federation"]
    return federation


def run(coroutine_factory: Callable[[], Awaitable[Any]], *apps: FastAPI) -> Any:
    """Run on a fresh loop, closing the nodes' connection pools on that loop afterwards."""

    async def main() -> Any:
        try:
            return await coroutine_factory()
        finally:
            for app in apps:
                await federation_of(app).client.aclose()

    return asyncio.run(main())


class TestTwoNodes:
    def test_each_node_calls_the_other(self, two_nodes: dict[str, FastAPI], rings: dict[str, KeyRing]) -> None:
        a, b = federation_of(two_nodes["rcc-a"]), federation_of(two_nodes["rcc-b"])

        async def both() -> tuple[Any, Any]:
            there = await a.client.call("rcc-b", "GET", PING, purpose="placement-search", agreement="agr-7")
            back = await b.client.call("rcc-a", "POST", PING, purpose="secure-placement", json_body={"n": 1})
            return there, back

        there, back = run(both, two_nodes["rcc-a"], two_nodes["rcc-b"])
        assert there.outcome is PeerOutcome.ok, there.detail
        assert (there.body["peer"], there.body["node_id"], there.body["agreement"]) == ("rcc-a", "rcc-b", "agr-7")
        assert there.kid == rings["rcc-b"].active.kid
        payload = jose.verify_compact(there.response_signature, rings["rcc-b"].active.jwk())
        assert payload["status"] == 200
        assert back.outcome is PeerOutcome.ok, back.detail
        assert back.body["echo"] == {"n": 1}
        assert back.body["purpose"] == "secure-placement"

    def test_outbound_call_is_audited_with_the_peer_signature(self, two_nodes: dict[str, FastAPI]) -> None:
        a = federation_of(two_nodes["rcc-a"])
        result = run(lambda: a.client.call("rcc-b", "GET", PING, purpose="placement-search"), two_nodes["rcc-a"])
        assert result.outcome is PeerOutcome.ok
        with Session(a.node.engine) as session:
            rows = session.exec(select(AuditEntry).where(col(AuditEntry.peer) == "rcc-b")).all()
        entries = [json.loads(row.entry) for row in rows]
        outbound = [e for e in entries if e.get("direction") == "outbound"]
        assert len(outbound) == 1
        assert outbound[0]["peer_signature"] == result.response_signature
        assert outbound[0]["outcome"] == "ok"

    def test_peer_missing_from_directory_is_an_error_not_a_crash(self, two_nodes: dict[str, FastAPI]) -> None:
        a = federation_of(two_nodes["rcc-a"])
        result = run(lambda: a.client.call("rcc-zz", "GET", PING, purpose="placement-search"), two_nodes["rcc-a"])
        assert result.outcome is PeerOutcome.error
        assert "not in the federation directory" in (result.detail or "")


# --- misbehaving peers behind a mock transport ------------------------------------------------------------

Handler = Callable[[httpx.Request, str], Awaitable[httpx.Response]]


@pytest.fixture
def peer_ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def client_directory(rings: dict[str, KeyRing], peer_ring: KeyRing) -> Directory:
    operator = rings["operator"]
    document = directory(
        [
            ring_entry("rcc-a", "http://rcc-a.test", rings["rcc-a"]),
            ring_entry("rcc-p", "http://rcc-p.test", peer_ring),
            ring_entry("rcc-q", "http://rcc-q.test", KeyRing.generate()),
        ]
    )
    return verify_envelope(sign(document, operator), load_pinned_keys(operator_jwks(operator)), now=utcnow())


def jti_of(request: httpx.Request) -> str:
    token = request.headers["authorization"].removeprefix("Bearer ")
    return str(json.loads(jose.b64d(token.split(".")[1]))["jti"])


def signed(
    ring: KeyRing,
    request: httpx.Request,
    status: int,
    body: bytes,
    *,
    sign_body: bytes | None = None,
    jti: str | None = None,
) -> httpx.Response:
    """A response signed as a peer would sign it (optionally over another body or jti, to tamper)."""
    signature = sign_response(
        Signer(ring.active),
        jti=jti or jti_of(request),
        status=status,
        bdh=body_digest(body if sign_body is None else sign_body),
        iat=int(utcnow().timestamp()),
    )
    headers = {"rcc-response-signature": signature, "content-type": "application/json"}
    return httpx.Response(status, content=body, headers=headers)


def mock_client(
    rings: dict[str, KeyRing], directory_: Directory, handler: Callable[[httpx.Request], Awaitable[httpx.Response]]
) -> tuple[FederationClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    client = FederationClient(
        node_id="rcc-a",
        signer=Signer(rings["rcc-a"].active),
        directory=lambda: directory_,
        wire=HttpxWire(httpx.MockTransport(record)),
    )
    return client, seen


def call(client: FederationClient, method: str = "GET", **kwargs: Any) -> Any:
    async def go() -> Any:
        try:
            return await client.call("rcc-p", method, PING, purpose="placement-search", **kwargs)
        finally:
            await client.aclose()

    return asyncio.run(go())


def fan_out_q_then_p(client: FederationClient, on_result: Callable[[PeerResult], None]) -> FanoutResult:
    """A fan-out to rcc-q, then rcc-p, handing each result to ``on_result``; the client closed after."""

    async def go() -> FanoutResult:
        try:
            return await fanout(
                client,
                [PeerCall("rcc-q", PING, "placement-search"), PeerCall("rcc-p", PING, "placement-search")],
                deadline_seconds=5,
                on_result=on_result,
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "outcome"),
        [(200, PeerOutcome.ok), (401, PeerOutcome.unauthorized), (403, PeerOutcome.refused), (404, PeerOutcome.error)],
    )
    def test_signed_status_is_classified(
        self,
        rings: dict[str, KeyRing],
        peer_ring: KeyRing,
        client_directory: Directory,
        status: int,
        outcome: PeerOutcome,
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return signed(peer_ring, request, status, b'{"reason":"no-agreement","detail":"no active agreement"}')

        result = call(mock_client(rings, client_directory, handler)[0])
        assert (result.outcome, result.status) == (outcome, status)
        if status != 200:
            assert result.detail == "no-agreement: no active agreement"

    @pytest.mark.parametrize(
        ("status", "body"), [(200, b"not json at all"), (200, b'{"a":1}'), (403, b'{"reason":"x","detail":"why"}')]
    )
    def test_unparsed_answers_keep_their_signed_bytes_and_refusals_are_still_read(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory, status: int, body: bytes
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return signed(peer_ring, request, status, body)

        result = call(mock_client(rings, client_directory, handler)[0], parse=False)
        assert result.content == body
        if status == 200:  # the caller validates the bytes itself, so not even JSON is judged here
            assert (result.outcome, result.body) == (PeerOutcome.ok, None)
        else:
            assert (result.outcome, result.body, result.detail) == (
                PeerOutcome.refused,
                {"reason": "x", "detail": "why"},
                "x: why",
            )

    def test_a_tampered_unparsed_answer_is_still_bad_signature(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return signed(peer_ring, request, 200, b'{"a":1}', sign_body=b'{"a":2}')

        result = call(mock_client(rings, client_directory, handler)[0], parse=False)
        assert result.outcome is PeerOutcome.bad_signature

    @pytest.mark.parametrize("tamper", ["unsigned", "other-key", "body-altered", "other-jti", "other-status"])
    def test_untrustworthy_answer_is_bad_signature(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory, tamper: str
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            body = b'{"ok":true}'
            if tamper == "unsigned":
                return httpx.Response(200, content=body)
            if tamper == "other-key":
                return signed(KeyRing.generate(), request, 200, body)
            if tamper == "body-altered":
                return signed(peer_ring, request, 200, body, sign_body=b'{"ok":false}')
            response = signed(peer_ring, request, 201 if tamper == "other-status" else 200, body)
            if tamper == "other-status":
                return httpx.Response(200, content=body, headers=response.headers)
            return signed(peer_ring, request, 200, body, jti="x" * 22)

        result = call(mock_client(rings, client_directory, handler)[0])
        assert result.outcome is PeerOutcome.bad_signature, result.detail

    def test_unsigned_gateway_error_is_error(self, rings: dict[str, KeyRing], client_directory: Directory) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(502, content=b"bad gateway")

        client, seen = mock_client(rings, client_directory, handler)
        result = call(client)
        assert result.outcome is PeerOutcome.error
        assert len(seen) == 2  # an idempotent read is retried once

    def test_unreachable_get_is_retried_with_a_new_token_but_post_is_not(
        self, rings: dict[str, KeyRing], client_directory: Directory
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        client, seen = mock_client(rings, client_directory, handler)
        result = call(client)
        assert (result.outcome, result.attempts) == (PeerOutcome.unreachable, 2)
        assert jti_of(seen[0]) != jti_of(seen[1])
        client, seen = mock_client(rings, client_directory, handler)
        assert call(client, "POST", json_body={"x": 1}).attempts == 1
        assert len(seen) == 1

    def test_request_token_binds_method_url_and_body(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return signed(peer_ring, request, 200, b"{}")

        client, seen = mock_client(rings, client_directory, handler)
        call(client, "POST", json_body={"age": 14})
        token = seen[0].headers["authorization"].removeprefix("Bearer ")
        claims = jose.verify_compact(token, rings["rcc-a"].active.jwk())
        assert json.loads(jose.b64d(token.split(".")[0]))["typ"] == "rcc-request+jwt"
        assert (claims["iss"], claims["aud"], claims["htm"]) == ("rcc-a", "rcc-p", "POST")
        assert claims["htu"] == "http://rcc-p.test/federation/v1/ping"
        assert claims["bdh"] == body_digest(seen[0].content)
        assert 0 < claims["exp"] - claims["iat"] <= 60
        assert claims["agreement"] is None

    def test_fanout_returns_at_the_deadline_with_each_outcome(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory
    ) -> None:
        release = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "rcc-q.test":
                await release.wait()  # hangs until the test ends
            return signed(peer_ring, request, 200, b'{"n":1}')

        client, _ = mock_client(rings, client_directory, handler)

        async def go() -> Any:
            try:
                return await fanout(
                    client,
                    [PeerCall("rcc-p", PING, "placement-search"), PeerCall("rcc-q", PING, "placement-search")],
                    deadline_seconds=0.3,
                )
            finally:
                hung_still_waiting = not release.is_set()
                release.set()
                await client.aclose()
                assert hung_still_waiting

        result = asyncio.run(go())
        assert result.outcomes() == {"rcc-p": PeerOutcome.ok, "rcc-q": PeerOutcome.timeout}
        assert result.answers == {"rcc-p": {"n": 1}}

    def test_fanout_hands_over_each_result_while_the_slower_calls_are_still_out(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory
    ) -> None:
        release = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "rcc-q.test":
                await release.wait()  # answers only once the fast peer's result has been handed over
            return signed(peer_ring, request, 200, b'{"n":1}')

        client, _ = mock_client(rings, client_directory, handler)
        seen: list[tuple[str, bool]] = []

        def on_result(result: PeerResult) -> None:
            seen.append((result.peer, release.is_set()))
            release.set()

        result = fan_out_q_then_p(client, on_result)
        assert seen == [("rcc-p", False), ("rcc-q", True)]
        assert [r.peer for r in result.results] == ["rcc-q", "rcc-p"]  # still in the order of the calls
        assert result.results[1].outcome is PeerOutcome.ok

    def test_fanout_reports_a_reader_that_fails_on_one_answer_as_that_peers_error(
        self, rings: dict[str, KeyRing], peer_ring: KeyRing, client_directory: Directory
    ) -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return signed(peer_ring, request, 200, b'{"n":1}')

        client, _ = mock_client(rings, client_directory, handler)
        read: list[str] = []

        def on_result(result: PeerResult) -> None:
            if result.peer == "rcc-q":
                raise KeyError("a reader's bug")
            read.append(result.peer)

        # The fan-out itself does not raise: the other peer's answer still counts.
        result = fan_out_q_then_p(client, on_result)
        assert read == ["rcc-p"]
        assert result.outcomes() == {"rcc-q": PeerOutcome.error, "rcc-p": PeerOutcome.ok}
        assert result.results[0].detail == "KeyError"
        assert result.answers == {"rcc-p": {"n": 1}}
