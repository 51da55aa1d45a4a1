"""The audit API in-process: signed heads, proofs checked by an independent verifier, queries, exports, 422s."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from typing import ClassVar

import pytest

from registry.core.audit.recording import audit_log, sequence_pending
from registry.core.db import utcnow
from schemas.loader import validate
from schemas.vocabulary import Role
from tests.registry.core.audit import rfc9162
from tests.registry.core.audit.conftest import fill
from tests.support import jose
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres


@pytest.fixture
def gov(app) -> dict[str, str]:
    return bearer(app, Role.governance, subject="dpo-app")


def all_entries(client, headers, **filters) -> list[dict]:
    """Every entry matching ``filters``, following cursors page by page."""
    items: list[dict] = []
    params = {**filters, "limit": 7}
    while True:
        page = client.get("/v1/audit/entries", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        params["cursor"] = body["next_cursor"]


def entries_for(client, headers, request_id: str) -> list[dict]:
    sequence_pending(client.app.state.node)
    return [i["entry"] for i in all_entries(client, headers) if i["entry"]["request_id"] == request_id]


class TestTreeHead:
    def test_signed_head_verifies_against_the_served_jwks_and_schema(self, client, gov) -> None:
        client.get("/healthz")
        sequence_pending(client.app.state.node)
        body = client.get("/v1/audit/tree-head", headers=gov).json()
        jwks = client.get("/.well-known/jwks.json").json()
        header = jose.verify_detached(body["tree_head"], body["signature"], jwks, "rcc-tree-head+jws")
        assert header["alg"] == "EdDSA"
        assert validate("tree-head", body["tree_head"]) == []
        assert body["tree_head"]["node_id"] == "rcc-test" and body["tree_head"]["tree_size"] >= 1

    def test_refusals_are_audited(self, client, app, gov) -> None:
        anonymous = client.get("/v1/audit/tree-head", headers={"x-request-id": "no-token"})
        analyst = client.get("/v1/audit/tree-head", headers={**bearer(app, Role.analyst), "x-request-id": "wrong-role"})
        assert (anonymous.status_code, analyst.status_code) == (401, 403)
        [refused] = entries_for(client, gov, "no-token")
        assert (refused["status"], refused["decision"], refused["action"]) == (401, "deny", "audit.tree_head")
        assert refused["reason"] == "unauthenticated:token-missing"
        [forbidden] = entries_for(client, gov, "wrong-role")
        assert (forbidden["status"], forbidden["reason"], forbidden["actor_id"]) == (403, "missing-role", "test-client")
        assert forbidden["roles"] == ["analyst"]


class TestProofs:
    def test_proofs_for_many_sizes_verify_independently(self, client, gov) -> None:
        fill(audit_log(client.app.state.node), 40)
        sequence_pending(client.app.state.node)
        items = all_entries(client, gov)
        leaves = [rfc9162.leaf(item["entry"]) for item in items]
        assert [bytes.fromhex(item["leaf_hash"]) for item in items] == leaves
        for size in [*range(1, 18), 31, 32, 33, 40]:
            root = rfc9162.root(leaves[:size])
            for index in sorted({0, size // 2, size - 1}):
                proof = client.get(
                    "/v1/audit/proof/inclusion", params={"index": index, "tree_size": size}, headers=gov
                ).json()
                assert proof["leaf_hash"] == leaves[index].hex()
                path = [bytes.fromhex(h) for h in proof["audit_path"]]
                assert rfc9162.verify_inclusion(index, size, leaves[index], path, root), (index, size)
            for first in sorted({1, size // 2 or 1, size - 1 or 1, size}):
                body = client.get(
                    "/v1/audit/proof/consistency", params={"first": first, "second": size}, headers=gov
                ).json()
                hashes = [bytes.fromhex(h) for h in body["proof"]]
                assert rfc9162.verify_consistency(first, size, rfc9162.root(leaves[:first]), root, hashes)

    def test_entry_comes_with_a_proof_against_the_signed_head(self, client, gov) -> None:
        client.get("/healthz")
        fill(audit_log(client.app.state.node), 5)
        sequence_pending(client.app.state.node)
        body = client.get("/v1/audit/entries/3", headers=gov).json()
        head = body["signed_tree_head"]
        jose.verify_detached(
            head["tree_head"], head["signature"], client.get("/.well-known/jwks.json").json(), "rcc-tree-head+jws"
        )
        leaf = rfc9162.leaf(body["entry"])
        assert leaf.hex() == body["leaf_hash"]
        path = [bytes.fromhex(h) for h in body["audit_path"]]
        size, root = head["tree_head"]["tree_size"], bytes.fromhex(head["tree_head"]["root_hash"])
        assert rfc9162.verify_inclusion(3, size, leaf, path, root)

    BAD_PARAMETERS: ClassVar[list[tuple[str, dict, str]]] = [
        ("/v1/audit/proof/inclusion", {"index": -1}, "query:index"),
        ("/v1/audit/proof/inclusion", {"index": 999}, "query:index"),
        ("/v1/audit/proof/inclusion", {"index": 0, "tree_size": 999}, "query:tree_size"),
        ("/v1/audit/proof/inclusion", {"index": 0, "tree_size": 0}, "query:tree_size"),
        ("/v1/audit/proof/inclusion", {"index": "x"}, "query:index"),
        ("/v1/audit/proof/inclusion", {}, "query:index"),
        ("/v1/audit/proof/consistency", {"first": 0}, "query:first"),
        ("/v1/audit/proof/consistency", {"first": 3, "second": 2}, "query:first"),
        ("/v1/audit/proof/consistency", {"first": 1, "second": 10**30}, "query:second"),
        ("/v1/audit/entries", {"cursor": "bm90LWEtY3Vyc29y"}, "query:cursor"),
        ("/v1/audit/entries", {"limit": 0}, "query:limit"),
        ("/v1/audit/entries", {"limit": 5000}, "query:limit"),
        ("/v1/audit/entries", {"decision": "maybe"}, "query:decision"),
        ("/v1/audit/entries", {"since": "2026-01-01T00:00:00"}, "query:since"),
        ("/v1/audit/entries", {"until": "yesterday"}, "query:until"),
        ("/v1/audit/entries", {"colour": "red"}, "query:colour"),
        ("/v1/audit/entries/999", {}, "path:index"),
        ("/v1/audit/entries/-1", {}, "path:index"),
        ("/v1/audit/entries/abc", {}, "path:index"),
        ("/v1/audit/export", {"format": "xml"}, "query:format"),
    ]

    def test_bad_parameters_are_422_problems(self, client, gov) -> None:
        fill(audit_log(client.app.state.node), 3)
        sequence_pending(client.app.state.node)
        for path, params, where in self.BAD_PARAMETERS:
            response = client.get(path, params=params, headers=gov)
            assert response.status_code == 422, (path, params, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert where in [error["path"] for error in response.json()["errors"]], (path, params)


class TestQueries:
    def test_filters_select_exactly_the_matching_entries(self, client, gov) -> None:
        entries = fill(audit_log(client.app.state.node), 30)
        sequence_pending(client.app.state.node)
        documents = [e.document for e in entries]
        cases = {
            "actor": "client-b",
            "peer": "rcc-ldn",
            "agreement": "agr-2",
            "dataset": "capacity.vacancies",
            "purpose": "placement-search",
            "decision": "deny",
            "action": "test.action1",
        }
        for name, value in cases.items():
            field = "actor_id" if name == "actor" else name
            got = [i["entry"] for i in all_entries(client, gov, **{name: value})]
            assert got == [d for d in documents if d[field] == value], name
        middle = entries[10].time
        since = [i["entry"] for i in all_entries(client, gov, since=middle.isoformat(), action="test.action0")]
        assert since == [d for d in documents[10:] if d["action"] == "test.action0"]
        until = [i["entry"] for i in all_entries(client, gov, until=middle.isoformat(), decision="permit")]
        assert until == [d for d in documents[:10] if d["decision"] == "permit"]
        combined = all_entries(client, gov, actor="client-a", decision="deny", peer="rcc-gm")
        assert [i["entry"] for i in combined] == [
            d for d in documents if (d["actor_id"], d["decision"], d["peer"]) == ("client-a", "deny", "rcc-gm")
        ]

    def test_pages_cover_the_log_once_in_order(self, client, gov) -> None:
        fill(audit_log(client.app.state.node), 23)
        sequence_pending(client.app.state.node)
        items = all_entries(client, gov)
        assert [i["index"] for i in items] == list(range(len(items)))
        assert len(items) >= 23


class TestExport:
    def test_jsonl_and_csv_exports_match_the_log_and_are_audited_as_a_stream(self, client, gov) -> None:
        fill(audit_log(client.app.state.node), 12)
        sequence_pending(client.app.state.node)
        listed = all_entries(client, gov, dataset="capacity.vacancies")
        jsonl = client.get(
            "/v1/audit/export",
            params={"format": "jsonl", "dataset": "capacity.vacancies"},
            headers={**gov, "x-request-id": "export-1"},
        )
        assert jsonl.status_code == 200 and jsonl.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in jsonl.text.splitlines()]
        assert lines == listed
        assert all(rfc9162.leaf(line["entry"]).hex() == line["leaf_hash"] for line in lines)

        exported = client.get("/v1/audit/export", params={"format": "csv", "decision": "deny"}, headers=gov)
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        denied = all_entries(client, gov, decision="deny")
        assert [int(r["index"]) for r in rows] == [i["index"] for i in denied]
        assert rows[0]["decision"] == "deny" and rows[0]["leaf_hash"] == denied[0]["leaf_hash"]

        start, end = entries_for(client, gov, "export-1")
        assert (start["stream"], start["status"], start["response_sha256"]) == ("start", 200, None)
        assert end["stream"] == "end"
        assert end["response_sha256"] == hashlib.sha256(jsonl.content).hexdigest()
        assert end["result_count"] == len(lines)


class TestQueryStringsStayOutOfTheLog:
    def test_only_a_digest_of_the_query_is_kept(self, client, gov) -> None:
        client.get("/v1/audit/entries", params={"actor": "needle-child-name"}, headers={**gov, "x-request-id": "q-1"})
        [entry] = entries_for(client, gov, "q-1")
        assert "needle" not in json.dumps(entry)
        assert entry["query_sha256"] == hashlib.sha256(b"actor=needle-child-name").hexdigest()


def test_since_accepts_offsets(client, gov) -> None:
    fill(audit_log(client.app.state.node), 2)
    sequence_pending(client.app.state.node)
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert client.get("/v1/audit/entries", params={"since": future}, headers=gov).json()["items"] == []
