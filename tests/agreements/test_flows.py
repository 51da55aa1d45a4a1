"""``GET /v1/agreements/{id}/flows`` on an in-process node: what flowed to whom, from the node's own audit log.

The entries counted are written through the audit log's own recording functions (inbound as the middleware
builds them, outbound as the federation client records them), at fixed times in March 2026, then sequenced; the
node's own activity (registering the agreement, reading the report) happens now, months later, and shows up as
rows without a peer.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agreements import flows
from registry.core.audit.recording import audit_log, sequence_pending
from tests.agreements.conftest import GM, LDN, NAT
from tests.support.databases import node_on_fresh_database
from tests.support.flows import SEARCH, VACANCIES, inbound, march, outbound, record, rows, vacancies_mou
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres

HERE = "rcc-test"
MOU = "flows-mou"
OTHER = "flows-other"
REPORT = f"/v1/agreements/{MOU}/flows"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One node holding a draft agreement with GM, and a log with flows under it and under another agreement."""
    with node_on_fresh_database(tmp_path_factory, HERE, "flows") as application:
        with TestClient(application, raise_server_exceptions=False) as client:
            admin = bearer(application, "node-admin", subject="flows-admin")
            assert client.post("/v1/agreements", json=vacancies_mou(MOU, HERE, GM), headers=admin).status_code == 201
        from_gm = functools.partial(inbound, HERE, peer=GM, agreement=MOU)
        to_gm = functools.partial(outbound, HERE, peer=GM, agreement=MOU)
        record(
            audit_log(application.state.node),
            [
                from_gm(when=march(2), results=3),
                from_gm(when=march(9), results=4),
                from_gm(when=march(10), deny="purpose-not-granted"),
                inbound(HERE, peer=LDN, agreement=MOU, when=march(3), deny="no-agreement"),
                inbound(HERE, peer=NAT, agreement=OTHER, when=march(4), results=50),
                to_gm(when=march(5)),
                to_gm(when=march(6)),
                to_gm(when=march(7), outcome="timeout"),
                to_gm(when=march(8), outcome="refused"),
            ],
        )
        yield application


@pytest.fixture(scope="module")
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def governance(app: FastAPI) -> dict[str, str]:
    return bearer(app, "governance", subject="flows-dpo")


@pytest.fixture(scope="module")
def report(http: TestClient, governance: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """The report on ``MOU`` as a governance officer reads it (a 200 asserted), with query ``params``."""

    def read(**params: str) -> dict[str, Any]:
        response = http.get(REPORT, params=params, headers=governance)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return read


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code
    return body


class TestReport:
    def test_flows_are_grouped_by_direction_peer_decision_and_reason_with_counts(self, report) -> None:
        body = report()
        assert rows(body, where=lambda r: r["peer"] is not None) == [
            ("inbound", GM, VACANCIES, SEARCH, "deny", "purpose-not-granted", 1, None),
            ("inbound", GM, VACANCIES, SEARCH, "permit", None, 2, 7),
            ("inbound", LDN, VACANCIES, SEARCH, "deny", "no-agreement", 1, None),
            ("outbound", GM, VACANCIES, SEARCH, None, "timeout", 1, None),
            ("outbound", GM, VACANCIES, SEARCH, "deny", "refused", 1, None),
            ("outbound", GM, VACANCIES, SEARCH, "permit", None, 2, None),
        ]
        permits = next(r for r in body["rows"] if r["peer"] == GM and r["decision"] == "permit" and r["result_count"])
        assert (permits["first"], permits["last"]) == ("2026-03-02T12:00:00Z", "2026-03-09T12:00:00Z")

    def test_the_register_facts_and_the_signed_tree_head_come_with_it(self, report) -> None:
        body = report()
        assert (body["agreement"], body["version"], body["state"]) == (MOU, 1, "draft")
        assert (body["parties"], body["datasets"], body["purposes"]) == ([HERE, GM], [VACANCIES], [SEARCH])
        head = body["signed_tree_head"]
        assert head["tree_head"]["node_id"] == HERE
        assert body["tree_size"] == head["tree_head"]["tree_size"] >= 9
        assert head["signature"].count(".") == 2

    def test_rows_without_a_peer_are_this_nodes_own_users_and_totals_add_up(self, report) -> None:
        body = report()
        local = [r for r in body["rows"] if r["peer"] is None]
        assert local and {r["direction"] for r in local} == {"inbound"}  # registering the agreement, at least
        totals = body["totals"]
        assert totals["requests"] == sum(r["requests"] for r in body["rows"])
        assert totals["outbound"] == 4
        assert totals["inbound"] == totals["requests"] - 4
        assert totals["result_count"] == 7
        assert totals["peers"] == [GM, LDN]
        assert totals["undecided"] >= 1  # the timeout
        assert totals["denied"] == 3

    def test_since_and_until_bound_the_window(self, report) -> None:
        body = report(since="2026-03-03T00:00:00Z", until="2026-03-09T12:00:00+00:00")
        assert rows(body, ("direction", "peer", "decision", "requests")) == [
            ("inbound", LDN, "deny", 1),
            ("outbound", GM, None, 1),
            ("outbound", GM, "deny", 1),
            ("outbound", GM, "permit", 2),
        ]
        assert (body["since"], body["until"]) == ("2026-03-03T00:00:00Z", "2026-03-09T12:00:00Z")

    def test_another_agreements_entries_are_not_counted(self, report) -> None:
        body = report()
        assert NAT not in body["totals"]["peers"]
        assert 50 not in [r["result_count"] for r in body["rows"]]

    def test_only_entries_inside_the_tree_size_are_counted(self, app) -> None:
        log = audit_log(app.state.node)
        with log.engine.connect() as conn:
            everything = flows.aggregate(conn, agreement_id=MOU, tree_size=10**9, window=flows.FlowWindow())
            none = flows.aggregate(conn, agreement_id=MOU, tree_size=0, window=flows.FlowWindow())
        assert sum(r.requests for r in everything) >= 8
        assert none == []

    def test_the_report_is_itself_audited_under_the_agreement(self, app, http, governance) -> None:
        response = http.get(REPORT, headers={**governance, "x-request-id": "flows-read-1"})
        assert response.status_code == 200
        sequence_pending(app.state.node)
        page = http.get(
            "/v1/audit/entries", params={"action": "agreements.flows", "limit": 1000}, headers=governance
        ).json()
        entry = next(i["entry"] for i in page["items"] if i["entry"]["request_id"] == "flows-read-1")
        assert (entry["agreement"], entry["status"], entry["actor_id"]) == (MOU, 200, "flows-dpo")
        assert entry["result_count"] == len(response.json()["rows"])


class TestCsv:
    @pytest.mark.parametrize(
        ("params", "headers"), [({"format": "csv"}, {}), ({}, {"accept": "text/csv"})], ids=["format", "accept"]
    )
    def test_the_same_rows_as_csv(self, http, governance, params, headers) -> None:
        response = http.get(REPORT, params=params, headers={**governance, **headers})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        permits = [r for r in rows if r["peer"] == GM and r["decision"] == "permit" and r["direction"] == "inbound"]
        assert len(permits) == 1
        assert (permits[0]["requests"], permits[0]["result_count"]) == ("2", "7")
        assert permits[0]["first"] == "2026-03-02T12:00:00.000000Z"
        assert {r["agreement"] for r in rows} == {MOU}
        assert len({r["tree_size"] for r in rows}) == 1


class TestRefusals:
    def test_an_unknown_agreement_is_404(self, http, governance) -> None:
        assert_problem(http.get("/v1/agreements/no-such/flows", headers=governance), 404, "agreement-not-found")

    def test_governance_only(self, app, http) -> None:
        assert_problem(http.get(REPORT), 401)
        admin = bearer(app, "node-admin", subject="flows-admin")
        assert_problem(http.get(REPORT, headers=admin), 403, "missing-role")

    @pytest.mark.parametrize(
        "params",
        [
            {"since": "2026-03-01T00:00:00"},  # no offset
            {"until": "yesterday"},
            {"since": "2026-03-05T00:00:00Z", "until": "2026-03-05T00:00:00Z"},
            {"since": "2026-03-06T00:00:00Z", "until": "2026-03-05T00:00:00Z"},
            {"format": "xml"},
            {"tree_size": "3"},
        ],
        ids=["naive", "not-a-time", "empty-window", "reversed", "format", "unknown-parameter"],
    )
    def test_bad_parameters_are_422(self, http, governance, params) -> None:
        assert_problem(http.get(REPORT, params=params, headers=governance), 422)


class TestPure:
    def test_totals_count_each_decision_and_direction(self) -> None:
        row = {"dataset": VACANCIES, "purpose": SEARCH, "first": march(1), "last": march(2)}
        rows = [
            flows.FlowRow(
                direction="inbound", peer=GM, decision="permit", reason=None, requests=3, result_count=9, **row
            ),
            flows.FlowRow(
                direction="outbound", peer=LDN, decision=None, reason="timeout", requests=2, result_count=None, **row
            ),
            flows.FlowRow(
                direction="inbound", peer=None, decision="deny", reason="x", requests=1, result_count=None, **row
            ),
        ]
        totals = flows.totals_of(rows)
        assert (totals.requests, totals.inbound, totals.outbound) == (6, 4, 2)
        assert (totals.permitted, totals.denied, totals.undecided, totals.result_count) == (3, 1, 2, 9)
        assert totals.peers == [GM, LDN]
