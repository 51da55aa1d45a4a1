"""Agreements between real nodes: South East, Greater Manchester and the national node run as ``rcc-node serve``
processes and exchange proposals, signatures and lifecycle events over the signed federation API.

Every permit and refusal here is a real federated request (``GET /federation/v1/audit/tree-head``, dataset
``audit.tree-heads``) signed with the calling node's own key. One federation serves the whole module; each test
uses agreements of its own, and the test that stops a node runs last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from tests.agreements.conftest import document, grant
from tests.support import jose
from tests.support.agreements import GM, LDN, NAT, SE, AgreementNodes, agreement_nodes, sign_document
from tests.support.nodes import invoke_cli, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TREE_HEAD = "/federation/v1/audit/tree-head"
INBOX = "/federation/v1/agreements/inbox"
WITNESS = "audit-witnessing"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgreementNodes]:
    with agreement_nodes(tmp_path_factory.mktemp("agreements-federated")) as nodes:
        yield nodes


def witnessing(agreement_id: str, parties: list[str], **dates: str) -> dict[str, Any]:
    """Every party lets every other witness its audit tree heads."""
    grants = [grant(p, [q for q in parties if q != p], ["audit.tree-heads"], [WITNESS]) for p in parties]
    return agreement(agreement_id, parties, grants, **dates)


def agreement(agreement_id: str, parties: list[str], grants: list[dict[str, Any]], **dates: str) -> dict[str, Any]:
    window = {"valid_from": "2026-01-01", "valid_until": "2030-12-31", "review_by": "2029-12-31", **dates}
    return document(
        agreement_id,
        parties,
        grants,
        valid_from=window["valid_from"],
        valid_until=window["valid_until"],
        review_by=window["review_by"],
    )


def make_active(fed: AgreementNodes, doc: dict[str, Any], proposer: str = SE) -> dict[str, Any]:
    """Draft and propose on ``proposer``, countersign on every other party; return the last signer's answer."""
    assert fed.api(proposer, "POST", "/v1/agreements", doc, expect=201)["state"] == "draft"
    proposed = fed.api(proposer, "POST", f"/v1/agreements/{doc['id']}/propose")
    others = [p["node_id"] for p in doc["parties"] if p["node_id"] != proposer]
    assert delivered(proposed) == dict.fromkeys(others, "delivered")
    answer: dict[str, Any] = proposed
    for party in others:
        answer = fed.api(party, "POST", f"/v1/agreements/{doc['id']}/sign")
    return answer


def delivered(agreement: dict[str, Any]) -> dict[str, str]:
    return {d["node_id"]: d["state"] for d in agreement["deliveries"]}


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "policy-denied"
    return str(body["reason"])


def audit_entries(fed: AgreementNodes, node_id: str, **filters: str) -> list[dict[str, Any]]:
    params = {**filters, "limit": "1000"}
    response = httpx.get(fed.url(node_id, "/v1/audit/entries"), params=params, headers=fed.governance[node_id])
    assert response.status_code == 200, response.text
    return [item["entry"] for item in response.json()["items"]]


class TestLifecycle:
    def test_draft_propose_countersign_active_on_both_and_the_data_flows(self, fed: AgreementNodes) -> None:
        doc = witnessing("se-gm-witnessing", [SE, GM])
        assert fed.api(SE, "POST", "/v1/agreements", doc, expect=201)["state"] == "draft"
        assert fed.state(GM, "se-gm-witnessing") is None  # a draft stays on the node that wrote it
        assert refusal(fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-witnessing")) == "not-active"

        proposed = fed.api(SE, "POST", "/v1/agreements/se-gm-witnessing/propose")
        assert (proposed["state"], delivered(proposed)) == ("proposed", {GM: "delivered"})
        assert proposed["deliveries"][0]["outcome"] == "ok"
        at_gm = fed.api(GM, "GET", "/v1/agreements/se-gm-witnessing")
        assert (at_gm["state"], [s["node_id"] for s in at_gm["signatures"]]) == ("proposed", [SE])
        assert [(e["type"], e["by"]) for e in at_gm["events"]] == [("signed", SE), ("proposed", SE)]

        countersigned = fed.api(GM, "POST", "/v1/agreements/se-gm-witnessing/sign")
        assert (countersigned["state"], delivered(countersigned)) == ("active", {SE: "delivered"})
        at_se = fed.api(SE, "GET", "/v1/agreements/se-gm-witnessing")
        assert (at_se["state"], [s["node_id"] for s in at_se["signatures"]]) == ("active", [SE, GM])
        assert at_se["sha256"] == countersigned["sha256"]

        head = fed.federated(GM, SE, TREE_HEAD)
        assert head.status_code == 200, head.text
        jose.verify_detached(head.json()["tree_head"], head.json()["signature"], fed.jwks(SE), "rcc-tree-head+jws")
        assert head.json()["tree_head"]["node_id"] == SE
        assert fed.federated(SE, GM, TREE_HEAD, agreement="se-gm-witnessing").status_code == 200

        # Both signatures, as GM holds them, verify with each node's published key (independent verifier).
        bundle = httpx.get(fed.url(GM, "/v1/agreements/se-gm-witnessing/bundle"), headers=fed.governance[GM]).json()
        for signature in bundle["versions"][0]["signatures"]:
            jose.verify_detached(doc, signature["jws"], fed.jwks(signature["node_id"]), "rcc-agreement+jws")

        # The inbox call and the permitted data request are audited on SE with the agreement id.
        wait_for(
            lambda: audit_entries(fed, SE, agreement="se-gm-witnessing", action="federation.agreements_inbox"),
            what="the inbox entry",
        )
        permits = wait_for(
            lambda: audit_entries(fed, SE, action="federation.audit_tree_head", peer=GM, decision="permit"),
            what="the permitted tree-head entry",
        )
        assert permits[-1]["agreement"] == "se-gm-witnessing"
        assert permits[-1]["dataset"] == "audit.tree-heads"


class TestRevocation:
    def test_revocation_on_one_side_refuses_the_other_side_at_once(self, fed: AgreementNodes) -> None:
        make_active(fed, witnessing("se-gm-revocable", [SE, GM]))
        assert fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-revocable").status_code == 200
        assert fed.federated(SE, GM, TREE_HEAD, agreement="se-gm-revocable").status_code == 200

        revoked = fed.api(GM, "POST", "/v1/agreements/se-gm-revocable/revoke", {"reason": "Breach investigation"})
        assert (revoked["state"], delivered(revoked)) == ("revoked", {SE: "delivered"})
        # No waiting: the revocation was acknowledged by SE before GM answered.
        assert refusal(fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-revocable")) == "revoked"
        assert refusal(fed.federated(SE, GM, TREE_HEAD, agreement="se-gm-revocable")) == "revoked"
        event = fed.api(SE, "GET", "/v1/agreements/se-gm-revocable")["events"][-1]
        assert (event["type"], event["by"], event["reason"]) == ("revoked", GM, "Breach investigation")
        jose.verify_detached(event["event"], event["jws"], fed.jwks(GM), "rcc-agreement-event+jws")


class TestDenyReasons:
    def test_each_reason_is_reached_by_a_real_federated_request(self, fed: AgreementNodes) -> None:
        # Drafts held by SE alone: the decision is SE's, and needs no other party to hold them.
        fed.api(SE, "POST", "/v1/agreements", witnessing("se-gm-unsigned", [SE, GM]), expect=201)
        past = {"valid_from": "2024-01-01", "valid_until": "2025-06-30", "review_by": "2025-01-31"}
        fed.api(SE, "POST", "/v1/agreements", witnessing("se-gm-expired", [SE, GM], **past), expect=201)
        lapsed = witnessing("se-gm-lapsed", [SE, GM], valid_from="2025-01-01", review_by="2025-12-31")
        assert make_active(fed, lapsed)["state"] == "suspended"
        make_active(fed, witnessing("se-gm-narrow", [SE, GM]))
        vacancies_only = [
            grant(SE, [GM], ["capacity.vacancies"], ["placement-search"]),
            grant(GM, [SE], ["capacity.vacancies"], ["placement-search"]),
        ]
        make_active(fed, agreement("se-gm-vacancies", [SE, GM], vacancies_only))

        cases = {
            "no-agreement": fed.federated(LDN, SE, TREE_HEAD),
            "not-active": fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-unsigned"),
            "expired": fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-expired"),
            "suspended-review": fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-lapsed"),
            "purpose-not-granted": fed.federated(
                GM, SE, TREE_HEAD, agreement="se-gm-narrow", purpose="placement-search"
            ),
            "dataset-not-granted": fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-vacancies"),
            "not-a-party": fed.federated(NAT, SE, TREE_HEAD, agreement="se-gm-narrow"),
        }
        assert {reason: refusal(response) for reason, response in cases.items()} == {r: r for r in cases}
        # ("revoked" is reached in TestRevocation.) Each refusal is audited on SE with its agreement and reason.
        entries = wait_for(
            lambda: audit_entries(fed, SE, agreement="se-gm-expired", decision="deny"), what="the denial entry"
        )
        assert (entries[-1]["reason"], entries[-1]["peer"], entries[-1]["status"]) == ("expired", GM, 403)


class TestThreePartyMou:
    def test_one_party_withdraws_and_the_other_two_keep_sharing(self, fed: AgreementNodes) -> None:
        fed.api(SE, "POST", "/v1/agreements", witnessing("regional-mou", [SE, GM, NAT]), expect=201)
        # Proposed from the command line, on the running node's own database and keys.
        se_dir = str(fed.specs[SE].data_dir)
        proposing = ["agreements", "propose", "regional-mou", "--json", "--data-dir", se_dir]
        proposed = json.loads(invoke_cli(proposing).stdout)
        assert (proposed["state"], delivered(proposed)) == ("proposed", {GM: "delivered", NAT: "delivered"})
        fed.api(GM, "POST", "/v1/agreements/regional-mou/sign")
        last = fed.api(NAT, "POST", "/v1/agreements/regional-mou/sign")
        assert delivered(last) == {SE: "delivered", GM: "delivered"}
        assert {n: fed.state(n, "regional-mou") for n in (SE, GM, NAT)} == dict.fromkeys((SE, GM, NAT), "active")
        pairs = [(a, b) for a in (SE, GM, NAT) for b in (SE, GM, NAT) if a != b]
        for caller, target in pairs:
            assert fed.federated(caller, target, TREE_HEAD, agreement="regional-mou").status_code == 200

        withdrawn = fed.api(NAT, "POST", "/v1/agreements/regional-mou/withdraw", {"reason": "Not needed nationally"})
        assert delivered(withdrawn) == {SE: "delivered", GM: "delivered"}
        for node_id in (SE, GM, NAT):
            held = fed.api(node_id, "GET", "/v1/agreements/regional-mou")
            assert (held["state"], held["withdrawn"]) == ("active", [NAT])
        for caller, target in pairs:
            response = fed.federated(caller, target, TREE_HEAD, agreement="regional-mou")
            if NAT in (caller, target):
                assert refusal(response) == "not-a-party"
            else:
                assert response.status_code == 200, response.text


class TestInbox:
    def test_the_same_message_twice_changes_nothing(self, fed: AgreementNodes) -> None:
        make_active(fed, witnessing("se-gm-resent", [SE, GM]))
        message = _message(fed, GM, "se-gm-resent")
        again = fed.federated(SE, GM, INBOX, method="POST", body=message, agreement="se-gm-resent")
        assert again.status_code == 200, again.text
        assert again.json() == {
            "agreement": "se-gm-resent",
            "version": 1,
            "document_stored": False,
            "signatures_stored": 0,
            "events_stored": 0,
        }

    def test_a_caller_that_is_not_a_party_is_refused_and_audited(self, fed: AgreementNodes) -> None:
        make_active(fed, witnessing("se-gm-private", [SE, GM]))
        response = fed.federated(LDN, GM, INBOX, method="POST", body=_message(fed, GM, "se-gm-private"))
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "not-a-party"
        entries = wait_for(
            lambda: audit_entries(fed, GM, agreement="se-gm-private", peer=LDN, decision="deny"),
            what="the refused inbox entry",
        )
        assert entries[-1]["reason"] == "not-a-party"

    def test_a_changed_document_and_a_non_party_signature_are_refused(self, fed: AgreementNodes) -> None:
        doc = witnessing("se-gm-tampered", [SE, GM])
        signature = {"node_id": SE, "jws": sign_document(doc, fed.key(SE))}
        changed = doc | {"title": doc["title"] + "!"}  # one byte more than what SE signed
        tampered = {"agreement": doc["id"], "version": 1, "document": changed, "signatures": [signature]}
        response = fed.federated(SE, GM, INBOX, method="POST", body=tampered)
        assert (response.status_code, response.json()["reason"]) == (422, "bad-signature")
        outsider = {"node_id": LDN, "jws": sign_document(doc, fed.key(LDN))}
        foreign = {"agreement": doc["id"], "version": 1, "document": doc, "signatures": [signature, outsider]}
        response = fed.federated(SE, GM, INBOX, method="POST", body=foreign)
        assert (response.status_code, response.json()["reason"]) == (422, "not-a-party")
        assert fed.state(GM, "se-gm-tampered") is None  # nothing of a refused message is kept

    def test_a_signature_by_a_key_the_directory_lists_as_retired_is_refused(self, fed: AgreementNodes) -> None:
        doc = witnessing("gm-london", [GM, LDN])
        retired = {"node_id": LDN, "jws": sign_document(doc, fed.london.retired[0])}
        message = {"agreement": doc["id"], "version": 1, "document": doc, "signatures": [retired]}
        response = fed.federated(LDN, GM, INBOX, method="POST", body=message)
        assert (response.status_code, response.json()["reason"]) == (422, "retired-key")
        active = {"node_id": LDN, "jws": sign_document(doc, fed.london.active)}
        response = fed.federated(LDN, GM, INBOX, method="POST", body=message | {"signatures": [active]})
        assert response.status_code == 200, response.text
        assert fed.state(GM, "gm-london") == "proposed"


class TestWitnessing:
    """Nodes keep each other's signed tree heads; a head that does not extend the one kept is caught."""

    def test_a_witness_keeps_each_heads_and_catches_a_rewritten_log(self, fed: AgreementNodes) -> None:
        make_active(fed, witnessing("se-gm-witness-round", [SE, GM]))
        first = witness_round(fed, GM)[SE]
        assert (first["verdict"], first["previous_size"]) == ("first", None), first

        grown = wait_for(lambda: se_head_size(fed) > first["tree_size"] and se_head_size(fed), what="SE's log to grow")
        second = witness_round(fed, GM)[SE]
        assert second["verdict"] == "consistent", second
        assert second["previous_size"] == first["tree_size"] and second["tree_size"] >= grown
        state = httpx.get(fed.url(GM, "/v1/audit/witness"), headers=fed.governance[GM]).json()
        assert {h["peer"]: h["tree_size"] for h in state["latest"]}[SE] == second["tree_size"]
        assert state["inconsistencies"] == []

        # GM's kept head no longer matches SE's history (as if SE had shown GM another log before): the next
        # head cannot be proved to extend it, and GM keeps it as evidence.
        engine = create_engine(database_url(fed, GM))
        with Session(engine) as session:
            session.execute(
                text(
                    "UPDATE federation_witnessed_head SET root_hash = :forged WHERE peer = :peer AND tree_size = :size"
                ),
                {"forged": "ab" * 32, "peer": SE, "size": second["tree_size"]},
            )
            session.commit()
        engine.dispose()
        wait_for(lambda: se_head_size(fed) > second["tree_size"], what="SE's log to grow again")
        third = witness_round(fed, GM)[SE]
        assert third["verdict"] == "inconsistent", third
        assert "consistency proof" in third["detail"]
        state = httpx.get(fed.url(GM, "/v1/audit/witness"), headers=fed.governance[GM]).json()
        assert [(h["peer"], h["tree_size"]) for h in state["inconsistencies"]] == [(SE, third["tree_size"])]

    def test_a_round_asks_no_peer_without_an_agreement_and_needs_the_governance_role(self, fed: AgreementNodes) -> None:
        assert witness_round(fed, NAT) == {}  # the national node witnesses nobody here
        refused = httpx.post(fed.url(GM, "/v1/audit/witness"), headers=fed.admin[GM])
        assert refused.status_code == 403, refused.text
        assert "governance" in refused.json()["detail"]


def witness_round(fed: AgreementNodes, node_id: str) -> dict[str, dict[str, Any]]:
    response = httpx.post(fed.url(node_id, "/v1/audit/witness"), headers=fed.governance[node_id], timeout=30)
    assert response.status_code == 200, response.text
    return {report["peer"]: report for report in response.json()["reports"]}


def se_head_size(fed: AgreementNodes) -> int:
    fed.api(SE, "GET", "/v1/agreements")  # every request is an audit entry: the log grows
    head = fed.federated(GM, SE, TREE_HEAD, agreement="se-gm-witness-round")
    assert head.status_code == 200, head.text
    return int(head.json()["tree_head"]["tree_size"])


def database_url(fed: AgreementNodes, node_id: str) -> str:
    spec = fed.specs[node_id]
    return spec.database_url or f"sqlite:///{spec.data_dir / 'node.db'}"


class TestDelivery:
    """Stops and restarts a node: keep it last in the module."""

    def test_a_party_that_was_down_gets_the_revocation_when_it_is_back(self, fed: AgreementNodes) -> None:
        make_active(fed, witnessing("se-gm-outage", [SE, GM]))
        fed.nodes[GM].stop()
        revoked = fed.api(SE, "POST", "/v1/agreements/se-gm-outage/revoke", {"reason": "Ended"})
        assert revoked["state"] == "revoked"
        (pending,) = revoked["deliveries"]
        assert (pending["node_id"], pending["state"], pending["outcome"]) == (GM, "pending", "unreachable")
        assert pending["next_attempt_at"] is not None
        fed.restart(GM)
        wait_for(lambda: fed.state(GM, "se-gm-outage") == "revoked", timeout=60, what="GM to receive the revocation")
        after = fed.api(SE, "GET", "/v1/agreements/se-gm-outage")
        assert delivered(after) == {GM: "delivered"}
        assert refusal(fed.federated(SE, GM, TREE_HEAD, agreement="se-gm-outage")) == "revoked"


def _message(fed: AgreementNodes, holder: str, agreement_id: str) -> dict[str, Any]:
    """What ``holder`` knows of the agreement, as one inbox message (taken from its bundle)."""
    bundle = httpx.get(fed.url(holder, f"/v1/agreements/{agreement_id}/bundle"), headers=fed.governance[holder]).json()
    version = bundle["versions"][0]
    return {
        "agreement": agreement_id,
        "version": version["document"]["version"],
        "document": version["document"],
        "signatures": version["signatures"],
        "events": version["events"],
    }
