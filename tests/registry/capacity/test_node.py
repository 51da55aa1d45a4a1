"""A real node: ``rcc-node init``, ``rcc-node synth capacity``, ``rcc-node serve``, then a search over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import schemas
from schemas.vocabulary import Role
from tests.support.nodes import ServedNode, init_node, invoke_cli, served
from tests.support.tokens import access_token

pytestmark = pytest.mark.integration

KENT = "E10000016"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    """One South East node with synthetic capacity, shared by the read-only tests below."""
    spec = init_node(tmp_path_factory.mktemp("capacity"), "rcc-south-east", region_code="E12000008")
    result = invoke_cli(["synth", "capacity", "--data-dir", str(spec.data_dir), "--seed", "3", "--json"])
    assert json.loads(result.stdout)["vacancies"] == 25 * 19
    with served(spec) as running:
        yield running


def client(node: ServedNode, role: Role) -> httpx.Client:
    token = access_token(node, role, subject=f"{role.value}-client")
    return httpx.Client(base_url=node.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


class TestServedNode:
    def test_a_commissioner_finds_ranked_places_near_home(self, node: ServedNode) -> None:
        body = {
            "age": 15,
            "sex": "male",
            "needs": ["emotional-behavioural-difficulties"],
            "home_la": KENT,
            "needed_by": "2099-01-01",
            "reach": "region",
            "purpose": "placement-search",
        }
        with client(node, Role.commissioner) as http:
            response = http.post("/v1/capacity/search", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert schemas.validate("capacity-search-response", answer) == []
        results = answer["results"]
        assert results and answer["peers"] == []
        assert {r["node_id"] for r in results} == {"rcc-south-east"}
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert results[0]["vacancy"]["la_code"] == KENT

    def test_identity_is_refused_before_anything_is_searched(self, node: ServedNode) -> None:
        with client(node, Role.commissioner) as http:
            response = http.post("/v1/capacity/search", json={"name": "Jane Doe", "age": 15})
        assert response.status_code == 422
        assert "/name" in [e["path"] for e in response.json()["errors"]]

    def test_the_secure_bed_board_adds_up(self, node: ServedNode) -> None:
        with client(node, Role.analyst) as http:
            board = http.get("/v1/capacity/secure-beds").json()
        assert board["england"]["homes"] == len(board["homes"]) == 2
        assert board["england"]["beds_free"] == sum(h["beds_free"] for h in board["homes"])
