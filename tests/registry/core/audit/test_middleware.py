"""The audit middleware: every request recorded before it is answered, whatever the outcome; fail closed."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from fastapi import Request
from sqlmodel import select
from starlette.types import Message, Receive, Scope, Send

from registry.core.audit.log import append_in
from registry.core.audit.middleware import AuditMiddleware, request_entry
from registry.core.audit.recording import audit_log, sequence_pending
from registry.core.db import NodeMeta, SessionDep
from registry.core.errors import Conflict
from schemas.vocabulary import Role
from tests.support.garbage import garbage_into
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres


@pytest.fixture
def gov(app) -> dict[str, str]:
    return bearer(app, Role.governance, subject="dpo-app")


@pytest.fixture(scope="module")
def routes(app):
    """Test-only routes: a crash, a state change that records its own entry, and one that fails after it."""

    @app.get("/v1/test/crash", name="test.crash")
    def crash() -> dict[str, str]:
        raise RuntimeError("boom")

    @app.post("/v1/test/change", name="test.change")
    def change(request: Request, session: SessionDep, payload: dict[str, str]) -> dict[str, str]:
        session.add(NodeMeta(key=payload["key"], value="v"))
        session.flush()
        append_in(session, request_entry(request, status=200))
        if payload.get("fail"):
            raise Conflict("changed my mind")
        return {"ok": "yes"}

    return app


def entries_by_request(client, headers) -> dict[str, list[dict]]:
    sequence_pending(client.app.state.node)
    found: dict[str, list[dict]] = {}
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/audit/entries", params=params, headers=headers).json()
        for item in page["items"]:
            found.setdefault(item["entry"]["request_id"], []).append(item["entry"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


class TestEveryOutcomeIsRecorded:
    def test_errors_refusals_and_crashes_leave_entries(self, client, routes, gov) -> None:
        calls = {
            "r404": ("GET", "/no/such/route", {}, 404, "unmatched"),
            "r405": ("POST", "/healthz", {"json": {}}, 405, "well_known.healthz"),
            "r413": (
                "POST",
                "/v1/test/change",
                {"content": b"x" * (1024 * 1024 + 1), "headers": {"content-type": "application/json"}},
                413,
                "unmatched",
            ),
            "r415": (
                "POST",
                "/v1/test/change",
                {"content": b"<x/>", "headers": {"content-type": "text/xml"}},
                415,
                None,
            ),
            "r422": ("POST", "/v1/test/change", {"json": {"nokey": 1}}, 422, "test.change"),
            "r500": ("GET", "/v1/test/crash", {}, 500, "test.crash"),
        }
        for request_id, (method, path, kwargs, status, _) in calls.items():
            headers = {**kwargs.pop("headers", {}), "x-request-id": request_id}
            response = client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == status, (request_id, response.text)
        found = entries_by_request(client, gov)
        for request_id, (method, _, _, status, action) in calls.items():
            [entry] = found[request_id]
            assert (entry["method"], entry["status"]) == (method, status), request_id
            if action is not None:
                assert entry["action"] == action, request_id

    def test_request_and_response_bodies_are_kept_as_digests_only(self, client, routes, gov) -> None:
        body = json.dumps({"key": "secret-postcode-SW1A"}).encode()
        response = client.post(
            "/v1/test/change", content=body, headers={"content-type": "application/json", "x-request-id": "b-1"}
        )
        assert response.status_code == 200
        [entry] = entries_by_request(client, gov)["b-1"]
        assert entry["request_sha256"] == hashlib.sha256(body).hexdigest()
        assert "SW1A" not in json.dumps(entry)

    def test_a_body_the_app_never_read_is_still_hashed(self, client, gov) -> None:
        body = b'{"not": "read"}'
        client.post(
            "/v1/audit/tree-head", content=body, headers={"content-type": "application/json", "x-request-id": "u-1"}
        )
        [entry] = entries_by_request(client, gov)["u-1"]
        assert entry["status"] == 405 and entry["request_sha256"] == hashlib.sha256(body).hexdigest()

    def test_response_digest_is_of_the_bytes_sent(self, client, gov) -> None:
        response = client.get("/.well-known/jwks.json", headers={"x-request-id": "j-1"})
        [entry] = entries_by_request(client, gov)["j-1"]
        assert entry["response_sha256"] == hashlib.sha256(response.content).hexdigest()
        assert entry["direction"] == "inbound" and entry["node_id"] == "rcc-test"


class TestStateChanges:
    def test_a_state_change_records_one_entry_in_its_own_transaction(self, client, routes, gov, app) -> None:
        response = client.post("/v1/test/change", json={"key": "k1"}, headers={"x-request-id": "s-1"})
        assert response.status_code == 200
        entries = entries_by_request(client, gov)["s-1"]
        assert len(entries) == 1 and entries[0]["action"] == "test.change"

    def test_a_failed_change_is_rolled_back_with_its_entry_and_recorded_as_failed(
        self, client, routes, gov, app
    ) -> None:
        response = client.post("/v1/test/change", json={"key": "k2", "fail": "1"}, headers={"x-request-id": "s-2"})
        assert response.status_code == 409
        [entry] = entries_by_request(client, gov)["s-2"]
        assert entry["status"] == 409
        from sqlmodel import Session

        with Session(app.state.node.engine) as session:
            assert session.exec(select(NodeMeta).where(NodeMeta.key == "k2")).first() is None


class TestFailClosed:
    @pytest.fixture
    def broken(self, app, monkeypatch):
        def refuse(inserter, rows):
            raise RuntimeError("disk full")

        monkeypatch.setattr(audit_log(app.state.node).writer, "_insert", refuse)
        return app

    def test_no_data_is_served_when_the_entry_cannot_be_stored(self, client, gov, broken) -> None:
        response = client.get("/.well-known/jwks.json", headers={"x-request-id": "f-1"})
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "f-1"
        assert response.json()["code"] == "audit-unavailable"
        assert "keys" not in response.text

    def test_a_stream_is_refused_before_its_first_byte(self, client, gov, app, monkeypatch) -> None:
        from tests.registry.core.audit.conftest import fill

        fill(audit_log(app.state.node), 3000)  # more than one export chunk: a real stream
        sequence_pending(app.state.node)

        def refuse(inserter, rows):
            raise RuntimeError("disk full")

        monkeypatch.setattr(audit_log(app.state.node).writer, "_insert", refuse)
        response = client.get("/v1/audit/export", headers=gov)
        assert response.status_code == 503
        assert response.json()["code"] == "audit-unavailable"

    def test_health_probes_still_answer(self, client, broken) -> None:
        assert client.get("/healthz").status_code == 200


class TestGarbage:
    def test_a_recorded_request_leaves_no_reference_cycles(self, audit) -> None:
        # Whatever a request allocates must go by reference counting: cycles left to the garbage collector
        # cost a busy node measurable time in full collections of a large heap.
        async def inner(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})

        middleware = AuditMiddleware(inner, log=audit, max_body_bytes=1024)
        sent: list[Message] = []

        async def request() -> None:
            scope: Scope = {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "headers": []}

            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                sent.append(message)

            await middleware(scope, receive, send)

        async def run() -> list[int]:
            await request()  # warm up: the writer's connection and thread-free path exist
            found: list[int] = []
            for _ in range(3):
                with garbage_into(found):
                    for _ in range(5):
                        await request()
            return found

        # A cycle made by every request shows in every window. Garbage another thread makes meanwhile (a thread
        # of an earlier test finishing) lands in one window at most: in one run of the full suite, 3,828 objects.
        assert min(asyncio.run(run())) == 0
        assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 16
