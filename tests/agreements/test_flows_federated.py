"""The per-agreement flows report between real nodes: Greater Manchester gathers South East's fee caps under an
agreement, and each node's own report shows that one flow from its side — GM outbound to SE, SE inbound from GM —
with the same agreement, dataset, purpose and decision, and SE's count of what it served.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agreements.conftest import document, grant
from tests.registry.publications.documents import fee_cap
from tests.support.agreements import GM, LDN, SE, AgreementNodes, agreement_nodes
from tests.support.flows import rows
from tests.support.nodes import wait_for
from tests.support.tokens import bearer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

MOU = "se-gm-fee-caps"
DATASET, PURPOSE = "publications.fee-caps", "market-transparency"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgreementNodes]:
    """SE publishes one fee cap; SE and GM sign an agreement letting GM read SE's fee caps; GM gathers once."""
    with agreement_nodes(tmp_path_factory.mktemp("flows-federated")) as nodes:
        published = httpx.post(
            nodes.url(SE, "/v1/publications"),
            json={"kind": "fee-cap", "document": fee_cap(SE), "id": "se-fee-caps"},
            headers=bearer(nodes.specs[SE], "publisher", subject="publisher"),
            timeout=30,
        )
        assert published.status_code == 201, published.text
        doc = document(
            MOU,
            [SE, GM],
            [grant(SE, [GM], [DATASET], [PURPOSE])],
            valid_from="2026-01-01",
            valid_until="2036-12-31",
            review_by="2035-12-31",  # the nodes run on the real clock
        )
        doc["data_items"] = [
            {"dataset": DATASET, "description": "Fee caps.", "personal_data": False, "special_category": False}
        ]
        nodes.api(SE, "POST", "/v1/agreements", doc, expect=201)
        nodes.api(SE, "POST", f"/v1/agreements/{MOU}/propose")
        wait_for(lambda: nodes.state(GM, MOU) == "proposed", what="GM to receive the proposal")
        nodes.api(GM, "POST", f"/v1/agreements/{MOU}/sign")
        wait_for(lambda: nodes.state(SE, MOU) == "active", what="the agreement active on SE")
        gathered = httpx.get(
            nodes.url(GM, "/v1/publications"),
            params={"scope": "national", "kind": "fee-cap"},
            headers=nodes.admin[GM],
            timeout=60,
        )
        assert gathered.status_code == 200, gathered.text
        outcomes = {(p["node_id"], p["outcome"]) for p in gathered.json()["peers"]}
        assert (SE, "ok") in outcomes and (LDN, "refused") in outcomes  # London: no agreement, so not asked
        yield nodes


def flows(fed: AgreementNodes, node_id: str, **params: str) -> dict[str, Any]:
    response = httpx.get(
        fed.url(node_id, f"/v1/agreements/{MOU}/flows"), params=params, headers=fed.governance[node_id], timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data_rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of the fee caps' flow (the agreement's own exchange has no dataset)."""
    return rows(body, where=lambda r: r["dataset"] == DATASET)


def with_data_flow(fed: AgreementNodes, node_id: str) -> dict[str, Any]:
    """The node's report once the entry of the gather is sequenced (the sequencer runs a moment after a request)."""

    def attempt() -> dict[str, Any] | None:
        body = flows(fed, node_id)
        return body if data_rows(body) else None

    found: dict[str, Any] = wait_for(attempt, what=f"the data flow in {node_id}'s signed log")
    return found


class TestBothSides:
    def test_gm_reports_the_call_out_to_se(self, fed: AgreementNodes) -> None:
        body = with_data_flow(fed, GM)
        assert data_rows(body) == [("outbound", SE, DATASET, PURPOSE, "permit", None, 1, None)]
        assert (body["state"], body["parties"], body["datasets"]) == ("active", [SE, GM], [DATASET])

    def test_se_reports_the_request_in_from_gm_with_what_it_served(self, fed: AgreementNodes) -> None:
        body = with_data_flow(fed, SE)
        assert data_rows(body) == [("inbound", GM, DATASET, PURPOSE, "permit", None, 1, 1)]
        assert body["tree_size"] == body["signed_tree_head"]["tree_head"]["tree_size"]
        assert body["signed_tree_head"]["tree_head"]["node_id"] == SE

    def test_the_proposal_and_countersignature_flowed_too(self, fed: AgreementNodes) -> None:
        se, gm = flows(fed, SE), flows(fed, GM)
        assert GM in se["totals"]["peers"] and SE in gm["totals"]["peers"]
        assert any(r["direction"] == "outbound" and r["peer"] == GM and r["dataset"] is None for r in se["rows"])
        assert any(r["direction"] == "inbound" and r["peer"] == SE and r["dataset"] is None for r in gm["rows"])
