"""Publications across regions, on real nodes: South East and Greater Manchester publish, the national node gathers.

One federation for the module (``tests.support.agreements``: SE, GM and the national node serving, with a signed
directory that also lists London, whose keys the test holds and which runs no node). SE, GM and the national node
sign one memorandum through their own APIs that shares every publications dataset between them; London is party
to nothing. Tests that stop a node or alter a stored row put it back before they end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from registry.core.db import make_engine
from registry.core.settings import load_settings
from tests.agreements.conftest import document, grant
from tests.registry.publications.documents import MANCHESTER, NW_REGION, fee_cap, placement_protocol
from tests.support.agreements import GM, LDN, NAT, SE, AgreementNodes, agreement_nodes
from tests.support.nodes import wait_for
from tests.support.tokens import bearer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

DATASETS = ["publications.fee-caps", "publications.frameworks", "publications.placement-protocols"]
PURPOSES = ["market-transparency", "placement-search"]
MOU = "publications-mou"


def _mou() -> dict[str, Any]:
    doc = document(
        MOU,
        [SE, GM, NAT],
        [grant(SE, [GM, NAT], DATASETS, PURPOSES), grant(GM, [SE, NAT], DATASETS, PURPOSES)],
        valid_from="2026-01-01",
        valid_until="2036-12-31",
        review_by="2035-12-31",  # the nodes run on the real clock
    )
    doc["data_items"] = [
        {"dataset": d, "description": "Published documents.", "personal_data": False, "special_category": False}
        for d in DATASETS
    ]
    return doc


def _publish(fed: AgreementNodes, node_id: str, kind: str, doc: dict[str, Any], publication_id: str) -> None:
    headers = bearer(fed.specs[node_id], "publisher", subject="publisher")
    response = httpx.post(
        fed.url(node_id, "/v1/publications"),
        json={"kind": kind, "document": doc, "id": publication_id},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgreementNodes]:
    with agreement_nodes(tmp_path_factory.mktemp("publications-fed")) as nodes:
        _publish(nodes, SE, "fee-cap", fee_cap(SE), "se-fee-caps")
        _publish(nodes, SE, "placement-protocol", placement_protocol(SE), "se-protocol")
        gm_caps = fee_cap(
            GM,
            title="Greater Manchester fee caps (synthetic)",
            covers={"region_code": NW_REGION},
            caps=[{"setting_type": "childrens-home", "need_level": "standard", "max_weekly_fee": 6100}],
        )
        _publish(nodes, GM, "fee-cap", gm_caps, "gm-fee-caps")
        gm_protocol = placement_protocol(GM, title="Greater Manchester protocol (synthetic)")
        gm_protocol["parties"] = {"nodes": [GM], "las": [MANCHESTER]}
        gm_protocol["notification_duties"][1]["timing"]["working_days"] = 10
        _publish(nodes, GM, "placement-protocol", gm_protocol, "gm-protocol")
        # The memorandum, through the nodes' own APIs: SE drafts and proposes, the other parties countersign.
        nodes.api(SE, "POST", "/v1/agreements", _mou(), expect=201)
        nodes.api(SE, "POST", f"/v1/agreements/{MOU}/propose")
        for party in (GM, NAT):
            wait_for(lambda p=party: nodes.state(p, MOU) == "proposed", what=f"{party} to receive the proposal")
            nodes.api(party, "POST", f"/v1/agreements/{MOU}/sign")
        for party in (SE, GM, NAT):
            wait_for(lambda p=party: nodes.state(p, MOU) == "active", what=f"the agreement active on {party}")
        yield nodes


def _national(fed: AgreementNodes, node_id: str, **params: str) -> dict[str, Any]:
    response = httpx.get(
        fed.url(node_id, "/v1/publications"),
        params={"scope": "national", **params},
        headers=fed.admin[node_id],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _outcomes(body: dict[str, Any], kind: str) -> dict[str, tuple[str, str | None]]:
    return {p["node_id"]: (p["outcome"], p["reason"]) for p in body["peers"] if p["kind"] == kind}


def _database(fed: AgreementNodes, node_id: str) -> str:
    return load_settings(data_dir=fed.specs[node_id].data_dir).effective_database_url


class TestServingPeers:
    def test_a_federated_read_without_an_agreement_is_refused(self, fed: AgreementNodes) -> None:
        response = fed.federated(LDN, SE, "/federation/v1/publications?kind=fee-cap", purpose="market-transparency")
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["reason"] == "no-agreement"

    def test_a_party_reads_the_signed_documents_of_the_kind_granted(self, fed: AgreementNodes) -> None:
        response = fed.federated(
            GM, SE, "/federation/v1/publications?kind=fee-cap", purpose="market-transparency", agreement=MOU
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [(i["node_id"], i["id"], i["kind"]) for i in items] == [(SE, "se-fee-caps", "fee-cap")]
        assert items[0]["signature"].count(".") == 2

    def test_a_purpose_outside_publications_is_refused(self, fed: AgreementNodes) -> None:
        response = fed.federated(GM, SE, "/federation/v1/publications/se-fee-caps", purpose="national-statistics")
        assert response.status_code == 403
        assert response.json()["reason"] == "purpose-not-granted"

    def test_one_publication_is_served_and_an_unknown_one_is_not_found(self, fed: AgreementNodes) -> None:
        found = fed.federated(GM, SE, "/federation/v1/publications/se-protocol", purpose="placement-search")
        assert (found.status_code, found.json()["kind"]) == (200, "placement-protocol")
        missing = fed.federated(GM, SE, "/federation/v1/publications/nope", purpose="placement-search")
        assert missing.status_code == 404
        hidden = fed.federated(LDN, SE, "/federation/v1/publications/nope", purpose="placement-search")
        assert hidden.status_code == 403


class TestNationalGathering:
    def test_the_national_node_gathers_every_region_and_says_who_answered(self, fed: AgreementNodes) -> None:
        body = _national(fed, NAT)
        for kind in ("fee-cap", "placement-protocol", "framework"):
            outcomes = _outcomes(body, kind)
            assert outcomes[SE][0] == outcomes[GM][0] == "ok"
            assert outcomes[LDN] == ("refused", "no-agreement")  # no agreement: not even asked
        held = {(i["node_id"], i["id"]) for i in body["items"]}
        assert held == {(SE, "se-fee-caps"), (SE, "se-protocol"), (GM, "gm-fee-caps"), (GM, "gm-protocol")}
        assert all(i["verification"]["ok"] for i in body["items"])

    def test_comparisons_and_fee_cap_checks_cover_every_region_held(self, fed: AgreementNodes) -> None:
        _national(fed, NAT)
        compared = httpx.get(
            fed.url(NAT, "/v1/compare/fee-caps"),
            params={"setting_type": "childrens-home", "need_level": "standard"},
            headers=fed.admin[NAT],
        ).json()
        fees = {row["node_id"]: row["max_weekly_fee"] for row in compared["rows"]}
        assert fees == {SE: 5500, GM: 6100}
        assert compared["median"] == 5800
        protocols = httpx.get(fed.url(NAT, "/v1/compare/placement-protocols"), headers=fed.admin[NAT]).json()
        assert {c["publication"]["node_id"] for c in protocols["protocols"]} == {SE, GM}
        assert any(row["differs"] for row in protocols["duties"])
        check = httpx.post(
            fed.url(NAT, "/v1/fee-caps/check"),
            json={"setting_type": "childrens-home", "need_level": "standard", "weekly_fee": 6100.01, "la": MANCHESTER},
            headers=fed.admin[NAT],
        ).json()
        assert (check["outcome"], check["cap"]["publication"]["node_id"]) == ("exceeds", GM)

    def test_a_region_gathers_its_neighbour_too(self, fed: AgreementNodes) -> None:
        body = _national(fed, SE, kind="fee-cap")
        assert _outcomes(body, "fee-cap")[GM] == ("ok", None)
        assert {i["node_id"] for i in body["items"]} == {SE, GM}

    def test_a_tampered_peer_document_is_refused_and_never_stored(self, fed: AgreementNodes) -> None:
        _national(fed, NAT, kind="fee-cap")  # NAT holds GM's genuine caps
        engine = make_engine(_database(fed, GM))
        select = text("SELECT document FROM publication_version WHERE node_id = :n AND publication_id = 'gm-fee-caps'")
        update = text(
            "UPDATE publication_version SET document = :d WHERE node_id = :n AND publication_id = 'gm-fee-caps'"
        )
        genuine: str | None = None
        try:
            with engine.begin() as db:
                genuine = db.execute(select, {"n": GM}).scalar_one()
                db.execute(update, {"d": genuine.replace("6100", "9100"), "n": GM})
            body = _national(fed, NAT, kind="fee-cap")
            gm = next(p for p in body["peers"] if p["node_id"] == GM)
            assert gm["outcome"] == "bad-signature"
            assert [(r["id"], r["reason"]) for r in gm["rejected"]] == [("gm-fee-caps", "bad-signature")]
            assert _outcomes(body, "fee-cap")[SE][0] == "ok"
            held = next(i for i in body["items"] if i["node_id"] == GM)
            assert held["verification"]["ok"]
            assert json.dumps(held["document"]).count("9100") == 0
        finally:
            if genuine is not None:
                with engine.begin() as db:
                    db.execute(update, {"d": genuine, "n": GM})
            engine.dispose()

    def test_a_peer_that_is_down_is_reported_unreachable_and_the_others_still_answer(self, fed: AgreementNodes) -> None:
        fed.nodes[GM].stop()
        try:
            body = _national(fed, NAT, kind="fee-cap")
            outcomes = _outcomes(body, "fee-cap")
            assert outcomes[GM][0] == "unreachable"
            assert outcomes[SE] == ("ok", None)
            # What was gathered before stays held and verified.
            assert {i["node_id"] for i in body["items"]} == {SE, GM}
        finally:
            fed.restart(GM)
