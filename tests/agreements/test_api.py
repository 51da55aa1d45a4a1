"""``/v1/agreements`` on an in-process node: node admins write, governance reads, errors are problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from sqlmodel import Session

from agreements import exchange, signatures
from agreements.keys import KEY_RESOLVER_EXTENSION, StaticKeys
from agreements.models import AgreementMessage
from agreements.runtime import AgreementsRuntime, enforce_request, runtime_of
from registry.core.audit.context import audit_context
from registry.core.db import SessionDep
from registry.core.keys import KeyRing
from tests.agreements.conftest import GM, START, Clock, clean_agreements, document, grant
from tests.support import jose
from tests.support.databases import node_on_fresh_database
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres

HERE = "rcc-test"

# What a data-serving federation route does (phase 2 puts the peer from the request token in ``requester``).
data_route = APIRouter()


@data_route.get("/test/vacancies")
def serve_vacancies(request: Request, session: SessionDep, requester: str, agreement: str | None = None) -> dict:
    decision = enforce_request(
        request,
        requester=requester,
        dataset="capacity.vacancies",
        purpose="placement-search",
        agreement_id=agreement,
        session=session,
    )
    audit = audit_context(request)
    return {
        "agreement": decision.agreement_id,
        "audit": [audit.decision, audit.agreement, audit.dataset, audit.purpose],
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One node (``rcc-test``) for the module; GM's keys reach it the way the federation directory will."""
    with node_on_fresh_database(tmp_path_factory, HERE, "agreements-api") as application:
        application.include_router(data_route)
        yield application


@pytest.fixture(scope="module")
def gm_ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def runtime(app: FastAPI, gm_ring: KeyRing) -> AgreementsRuntime:
    node = app.state.node
    node.extensions[KEY_RESOLVER_EXTENSION] = StaticKeys.from_ring(GM, gm_ring)
    runtime = runtime_of(node)
    runtime.clock = Clock(START)
    clean_agreements(node.engine)
    return runtime


@pytest.fixture(scope="module")
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def admin(app: FastAPI) -> dict[str, str]:
    return bearer(app, "node-admin", subject="agreements-admin")


@pytest.fixture(scope="module")
def governance(app: FastAPI) -> dict[str, str]:
    return bearer(app, "governance", subject="agreements-dpo")


def mou(agreement_id: str = "test-gm-mou") -> dict:
    return document(
        agreement_id,
        [HERE, GM],
        [
            grant(HERE, [GM], ["capacity.vacancies"], ["placement-search"]),
            grant(GM, [HERE], ["capacity.vacancies"], ["placement-search"]),
        ],
    )


def countersign_by_gm(app: FastAPI, runtime: AgreementsRuntime, gm_ring: KeyRing, doc: dict) -> None:
    """GM's signature arrives (phase 2: through the inbox; here straight into receive())."""
    jws = signatures.sign(doc, gm_ring.active, typ=signatures.DOCUMENT_TYP)
    with Session(app.state.node.engine) as session:
        exchange.receive(
            session,
            runtime=runtime,
            message=AgreementMessage(
                agreement=doc["id"], version=doc["version"], document=doc, signatures=[{"node_id": GM, "jws": jws}]
            ),
            sender_node_id=GM,
        )
        session.commit()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    return body


class TestAuthorisation:
    def test_writes_need_node_admin_and_reads_need_governance_or_admin(self, http, runtime, admin, governance) -> None:
        assert_problem(http.post("/v1/agreements", json=mou()), 401, "token-missing")
        assert_problem(http.post("/v1/agreements", json=mou(), headers=governance), 403, "missing-role")
        assert http.post("/v1/agreements", json=mou(), headers=admin).status_code == 201
        assert http.get("/v1/agreements", headers=governance).status_code == 200
        assert http.get("/v1/agreements/test-gm-mou", headers=admin).status_code == 200
        assert_problem(http.post("/v1/agreements/test-gm-mou/sign", headers=governance), 403, "missing-role")


class TestRegister:
    def test_draft_is_validated_stored_once_and_conflicts_are_409(self, http, runtime, admin) -> None:
        bad = mou()
        bad["grants"][0]["datasets"] = ["children.names"]
        del bad["retention"]
        body = assert_problem(http.post("/v1/agreements", json=bad, headers=admin), 422, "agreement-invalid")
        assert [e["path"] for e in body["errors"]] == ["/grants/0/datasets/0", "/retention"]
        first = http.post("/v1/agreements", json=mou(), headers=admin)
        assert (first.status_code, first.json()["state"]) == (201, "draft")
        assert http.post("/v1/agreements", json=mou(), headers=admin).status_code == 200
        changed = mou() | {"title": "Changed"}
        assert_problem(http.post("/v1/agreements", json=changed, headers=admin), 409, "agreement-version-conflict")
        assert_problem(http.get("/v1/agreements/nope", headers=admin), 404, "agreement-not-found")
        assert_problem(http.post("/v1/agreements", json=[1], headers=admin), 422, "validation-failed")

    def test_sign_countersign_filters_verify_and_bundle(self, app, http, runtime, gm_ring, admin, governance) -> None:
        doc = mou()
        http.post("/v1/agreements", json=doc, headers=admin)
        http.post("/v1/agreements", json=mou("other-draft"), headers=admin)
        signed = http.post("/v1/agreements/test-gm-mou/sign", json={"sha256": "0" * 64}, headers=admin)
        assert_problem(signed, 409, "agreement-state-conflict")
        signed = http.post("/v1/agreements/test-gm-mou/sign", headers=admin).json()
        assert (signed["state"], signed["missing_signatures"]) == ("proposed", [GM])
        countersign_by_gm(app, runtime, gm_ring, doc)

        full = http.get("/v1/agreements/test-gm-mou", headers=governance).json()
        assert (full["state"], [s["node_id"] for s in full["signatures"]]) == ("active", [HERE, GM])
        assert [v["state"] for v in full["versions"]] == ["active"]
        listing = http.get(
            "/v1/agreements",
            params={"state": "active", "party": GM, "dataset": "capacity.vacancies"},
            headers=governance,
        )
        assert [a["agreement"] for a in listing.json()] == ["test-gm-mou"]
        assert http.get("/v1/agreements", params={"purpose": "audit-witnessing"}, headers=governance).json() == []
        assert_problem(
            http.get("/v1/agreements", params={"dataset": "children"}, headers=governance), 422, "validation-failed"
        )

        report = http.get("/v1/agreements/test-gm-mou/verify", headers=governance).json()
        assert report["valid"]
        assert [(s["node_id"], s["valid"], s["checked_against"]) for s in report["versions"][0]["signatures"]] == [
            (HERE, True, "directory"),
            (GM, True, "directory"),
        ]
        bundle = http.get("/v1/agreements/test-gm-mou/bundle", headers=governance)
        assert "attachment" in bundle.headers["content-disposition"]
        version = bundle.json()["versions"][0]
        jwks = {HERE: app.state.node.keys.jwks(), GM: gm_ring.jwks()}
        for signature in version["signatures"]:
            jose.verify_detached(version["document"], signature["jws"], jwks[signature["node_id"]], "rcc-agreement+jws")

    def test_renew_withdraw_revoke_and_attention(self, app, http, runtime, gm_ring, admin, governance) -> None:
        doc = mou()
        http.post("/v1/agreements", json=doc, headers=admin)
        http.post("/v1/agreements/test-gm-mou/sign", headers=admin)
        countersign_by_gm(app, runtime, gm_ring, doc)
        runtime.clock = Clock(datetime(2026, 3, 10, tzinfo=UTC))
        attention = http.get("/v1/agreements", params={"attention": "true"}, headers=governance).json()
        assert [(a["agreement"], a["attention"][0]["kind"], a["attention"][0]["threshold"]) for a in attention] == [
            ("test-gm-mou", "review-due", 30)
        ]
        renewed = http.post("/v1/agreements/test-gm-mou/renew", json={"review_by": "2027-01-31"}, headers=admin)
        assert renewed.status_code == 200 and renewed.json()["review_by"] == "2026-03-31"  # GM has not renewed yet
        bad = http.post("/v1/agreements/test-gm-mou/renew", json={"review_by": "2030-01-01"}, headers=admin)
        assert [e["path"] for e in assert_problem(bad, 422, "agreement-event-invalid")["errors"]] == ["/review_by"]
        assert_problem(http.post("/v1/agreements/test-gm-mou/revoke", json={}, headers=admin), 422, "validation-failed")
        runtime.clock.move(hours=1)
        withdrawn = http.post("/v1/agreements/test-gm-mou/withdraw", json={"reason": "Leaving"}, headers=admin).json()
        assert withdrawn["withdrawn"] == [HERE]
        assert [e["type"] for e in withdrawn["events"]] == ["signed", "renewed", "withdrawn"]
        late = http.post("/v1/agreements/test-gm-mou/revoke", json={"reason": "Ended"}, headers=admin)
        assert_problem(late, 409, "agreement-state-conflict")  # a withdrawn party cannot end it for GM

    def test_revoke_is_a_signed_event_that_takes_effect_at_once(self, app, http, runtime, gm_ring, admin) -> None:
        doc = mou()
        http.post("/v1/agreements", json=doc, headers=admin)
        http.post("/v1/agreements/test-gm-mou/sign", headers=admin)
        countersign_by_gm(app, runtime, gm_ring, doc)
        revoked = http.post("/v1/agreements/test-gm-mou/revoke", json={"reason": "Ended"}, headers=admin).json()
        assert revoked["state"] == "revoked"
        event = revoked["events"][-1]
        assert (event["type"], event["by"], event["reason"]) == ("revoked", HERE, "Ended")
        jose.verify_detached(event["event"], event["jws"], app.state.node.keys.jwks(), "rcc-agreement-event+jws")


class TestEnforcement:
    def test_a_data_route_is_permitted_under_the_agreement_and_refused_with_the_reason(
        self, app, http, runtime, gm_ring, admin
    ) -> None:
        refused = http.get("/test/vacancies", params={"requester": GM})
        assert assert_problem(refused, 403, "policy-denied")["reason"] == "no-agreement"
        doc = mou()
        http.post("/v1/agreements", json=doc, headers=admin)
        http.post("/v1/agreements/test-gm-mou/sign", headers=admin)
        assert assert_problem(http.get("/test/vacancies", params={"requester": GM}), 403, "policy-denied")[
            "reason"
        ] == ("not-active")
        countersign_by_gm(app, runtime, gm_ring, doc)
        permitted = http.get("/test/vacancies", params={"requester": GM})
        assert permitted.json() == {
            "agreement": "test-gm-mou",
            "audit": ["permit", "test-gm-mou", "capacity.vacancies", "placement-search"],
        }
        other = http.get("/test/vacancies", params={"requester": GM, "agreement": "other"})
        assert assert_problem(other, 403, "policy-denied")["reason"] == "no-agreement"
        http.post("/v1/agreements/test-gm-mou/revoke", json={"reason": "Stop"}, headers=admin)
        assert assert_problem(http.get("/test/vacancies", params={"requester": GM}), 403, "policy-denied")[
            "reason"
        ] == ("revoked")
