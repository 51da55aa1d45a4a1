from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from registry.core.errors import Conflict


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    beds: int = Field(ge=0)


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.post("/probe/items")
    def create_item(item: Item) -> Item:
        return item

    @router.get("/probe/conflict")
    def conflict() -> None:
        raise Conflict("already there", resource="item-1")

    @router.get("/probe/crash")
    def crash() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    return router


@pytest.fixture
def probe(app: FastAPI) -> Iterator[TestClient]:
    app.include_router(_probe_router())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:rcc-registry:problem:{code}"
    assert body["title"] and body["detail"]
    assert response.headers["x-request-id"]
    return body


class TestProblemResponses:
    def test_schema_violation_is_422_naming_each_path(self, probe: TestClient) -> None:
        body = assert_problem(
            probe.post("/probe/items", json={"name": "", "beds": -1, "dob": "2010-01-01"}),
            422,
            "validation-failed",
        )
        assert {e["path"] for e in body["errors"]} == {"/name", "/beds", "/dob"}

    def test_unparseable_json_is_400(self, probe: TestClient) -> None:
        response = probe.post("/probe/items", content=b'{"name": ', headers={"content-type": "application/json"})
        assert_problem(response, 400, "malformed-json")

    def test_wrong_content_type_is_415(self, probe: TestClient) -> None:
        response = probe.post("/probe/items", content=b"name=x", headers={"content-type": "text/plain"})
        assert_problem(response, 415, "unsupported-media-type")

    def test_body_over_the_limit_is_413_even_when_streamed(self, probe: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"x" * 32 * 1024

        response = probe.post("/probe/items", content=chunks(), headers={"content-type": "application/json"})
        assert_problem(response, 413, "payload-too-large")

    def test_service_errors_carry_their_evidence(self, probe: TestClient) -> None:
        body = assert_problem(probe.get("/probe/conflict"), 409, "conflict")
        assert body["resource"] == "item-1"

    def test_unexpected_failure_is_500_without_internals(self, probe: TestClient) -> None:
        response = probe.get("/probe/crash")
        body = assert_problem(response, 500, "internal-error")
        assert "passwd" not in response.text and "RuntimeError" not in response.text
        assert "Traceback" not in body["detail"]

    def test_unknown_route_and_wrong_method(self, probe: TestClient) -> None:
        assert_problem(probe.get("/nowhere"), 404, "not-found")
        assert_problem(probe.delete("/healthz"), 405, "method-not-allowed")


class TestRequestId:
    def test_a_sane_request_id_is_echoed(self, probe: TestClient) -> None:
        assert probe.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"

    @pytest.mark.parametrize("offered", ["", "has space", "x" * 300, "<script>"])
    def test_an_insane_request_id_is_replaced(self, probe: TestClient, offered: str) -> None:
        returned = probe.get("/healthz", headers={"x-request-id": offered}).headers["x-request-id"]
        assert returned != offered and len(returned) >= 16
