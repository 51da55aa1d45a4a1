"""Capacity across regions, on real nodes: cross-border search and the national secure-bed board.

One federation for the module: South East, London and Greater Manchester (regional) and the national node (the
directory operator) run as ``rcc-node serve`` processes; the signed directory also lists East of England, whose
keys the test holds, which runs no node and is party to nothing. Agreements, made through the nodes' own APIs:
SE↔London and SE↔GM share vacancies for placement search; every region grants the national node secure beds.

The tests run in file order: the last two change the federation (GM revokes its agreement, London is stopped).
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

import schemas
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from tests.agreements.conftest import document, grant
from tests.registry.capacity.factories import KENT, MANCHESTER, search_request, secure_home, vacancy
from tests.registry.publications.documents import fee_cap
from tests.support.databases import engine_name, fresh_database
from tests.support.federation import PeerIdentity, configure, directory, sign, spec_entry, token, write_json
from tests.support.nodes import NodeSpec, ServedNode, free_port, init_node, start_node, wait_for
from tests.support.tokens import bearer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SE, LDN, GM, NAT, EE = "rcc-south-east", "rcc-london", "rcc-greater-manchester", "rcc-national", "rcc-east"
REGIONS = {SE: "E12000008", LDN: "E12000007", GM: "E12000002", NAT: None}
BROMLEY = "E09000006"
START_TIMEOUT = 120.0
SEARCH = "/v1/capacity/search"
PEER_SEARCH = "/federation/v1/capacity/search"
RESPONSE_SIGNATURE = "rcc-response-signature"


@dataclass
class Federation:
    specs: dict[str, NodeSpec]
    nodes: dict[str, ServedNode]
    east: PeerIdentity
    headers: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def auth(self, node_id: str, role: str) -> dict[str, str]:
        key = (node_id, role)
        if key not in self.headers:
            self.headers[key] = bearer(self.specs[node_id], role, subject=f"capacity-{role}")
        return self.headers[key]

    def call(self, node_id: str, role: str, method: str, path: str, body: Any = None, **params: str) -> httpx.Response:
        url = self.specs[node_id].base_url + path
        return httpx.request(method, url, json=body, params=params, headers=self.auth(node_id, role), timeout=30)

    def ok(self, node_id: str, role: str, method: str, path: str, body: Any = None, **params: str) -> Any:
        response = self.call(node_id, role, method, path, body, **params)
        assert response.status_code in (200, 201), f"{method} {path} on {node_id}: {response.text}"
        return response.json()

    def state(self, node_id: str, agreement_id: str) -> str | None:
        response = self.call(node_id, "node-admin", "GET", f"/v1/agreements/{agreement_id}")
        return response.json()["state"] if response.status_code == 200 else None

    def search(self, **overrides: Any) -> dict[str, Any]:
        body = search_request(datetime.now(UTC), **overrides)
        answer: dict[str, Any] = self.ok(SE, "commissioner", "POST", SEARCH, body)
        assert schemas.validate("capacity-search-response", answer) == []
        return answer


def _agreement(agreement_id: str, parties: list[str], grants: list[dict[str, Any]]) -> dict[str, Any]:
    doc = document(agreement_id, parties, grants, valid_from="2026-01-01", valid_until="2036-12-31")
    doc["review_by"] = "2035-12-31"  # the nodes run on the real clock
    datasets = sorted({d for g in grants for d in g["datasets"]})
    doc["data_items"] = [
        {"dataset": d, "description": "Capacity, never child data.", "personal_data": False, "special_category": False}
        for d in datasets
    ]
    return doc


def _vacancies(doc: str = "capacity.vacancies", purpose: str = "placement-search") -> tuple[list[str], list[str]]:
    return [doc], [purpose]


def _in_state(fed: Federation, node_id: str, agreement_id: str, state: str) -> bool:
    return fed.state(node_id, agreement_id) == state


def _agree(fed: Federation, doc: dict[str, Any]) -> None:
    agreement_id: str = doc["id"]
    parties: list[str] = [p["node_id"] for p in doc["parties"]]
    fed.ok(SE, "node-admin", "POST", "/v1/agreements", doc)
    fed.ok(SE, "node-admin", "POST", f"/v1/agreements/{agreement_id}/propose")
    for party in parties[1:]:
        wait_for(partial(_in_state, fed, party, agreement_id, "proposed"), what=f"{party} to receive {agreement_id}")
        fed.ok(party, "node-admin", "POST", f"/v1/agreements/{agreement_id}/sign")
    for party in parties:
        wait_for(partial(_in_state, fed, party, agreement_id, "active"), what=f"{agreement_id} active on {party}")


def _start(tmp: Path, stack: ExitStack) -> Federation:
    urls = {
        n: stack.enter_context(fresh_database(tmp / f"{n}-db")) if engine_name() == "postgres" else None
        for n in REGIONS
    }
    # One at a time: each init runs the migrations, and several at once on a loaded 2-core machine time out.
    specs = {
        n: init_node(
            tmp, n, kind="national" if region is None else "regional", region_code=region, database_url=urls[n]
        )
        for n, region in REGIONS.items()
    }
    east = PeerIdentity(EE, base_url=f"http://127.0.0.1:{free_port()}", region_code="E12000006")
    operator = KeyRing.load(specs[NAT].data_dir / "keys")
    jwks = write_json(tmp / "operator.jwks.json", operator.jwks())
    entries = [*(spec_entry(s) for s in specs.values()), east.entry()]
    path = write_json(tmp / "directory.json", sign(directory(entries, operator=NAT), operator))
    for n, spec in specs.items():
        configure(spec, operator_jwks=jwks, directory_file=path, directory_operator=n == NAT)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        started = {n: pool.submit(start_node, s, timeout=START_TIMEOUT) for n, s in specs.items()}
    for future in started.values():
        if future.exception() is None:
            stack.callback(future.result().stop)
    return Federation(specs, {n: f.result() for n, f in started.items()}, east)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with ExitStack() as stack:
        fed = _start(tmp_path_factory.mktemp("capacity-fed"), stack)
        now = datetime.now(UTC)
        places = {
            SE: [vacancy(now, "se-kent", la_code=KENT)],
            LDN: [
                vacancy(now, "ldn-bromley", urn="SC223456", la_code=BROMLEY, postcode_district="BR1"),
                vacancy(
                    now,
                    "ldn-expiring",
                    urn="SC223457",
                    la_code=BROMLEY,
                    postcode_district="BR2",
                    setting_type="independent-fostering-agency",
                    weekly_fee=1200,
                ),
            ],
            GM: [vacancy(now, "gm-manchester", urn="SC323456", la_code=MANCHESTER, postcode_district="M1")],
        }
        for node_id, items in places.items():
            fed.ok(node_id, "provider", "POST", "/v1/capacity/vacancies:batch", {"vacancies": items})
        homes = {
            SE: [
                secure_home(now, "SC900001"),
                secure_home(now, "SC900002", beds_free=1, beds_free_by_sex={"female": 1, "male": 0}),
            ],
            LDN: [
                secure_home(now, "SC900003", la_code=BROMLEY, beds_free=0, beds_free_by_sex={"female": 0, "male": 0})
            ],
            GM: [secure_home(now, "SC900004", la_code=MANCHESTER, approved_places=8, welfare_beds=8, justice_beds=0)],
        }
        for node_id, items in homes.items():
            for home in items:
                fed.ok(node_id, "provider", "PUT", f"/v1/capacity/secure-homes/{home['urn']}", home)
        vacancies, search = _vacancies()
        _agree(
            fed,
            _agreement(
                "cap-se-ldn", [SE, LDN], [grant(SE, [LDN], vacancies, search), grant(LDN, [SE], vacancies, search)]
            ),
        )
        _agree(
            fed,
            _agreement("cap-se-gm", [SE, GM], [grant(SE, [GM], vacancies, search), grant(GM, [SE], vacancies, search)]),
        )
        secure = _vacancies("capacity.secure-beds", "secure-placement")
        _agree(fed, _agreement("cap-secure", [SE, LDN, GM, NAT], [grant(r, [NAT], *secure) for r in (SE, LDN, GM)]))
        yield fed


def _peers(answer: dict[str, Any]) -> dict[str, tuple[str, str | None, int]]:
    return {p["node_id"]: (p["outcome"], p.get("reason"), p["count"]) for p in answer["peers"]}


def _database(fed: Federation, node_id: str) -> str:
    return load_settings(data_dir=fed.specs[node_id].data_dir).effective_database_url


def _as_east(fed: Federation, body: bytes) -> httpx.Response:
    """A signed peer search from East of England (in the directory, party to no agreement) to South East."""
    url = fed.specs[SE].base_url + PEER_SEARCH
    signed, _ = token(fed.east.active, iss=EE, aud=SE, url=url, method="POST", body=body)
    headers = {"authorization": f"Bearer {signed}", "content-type": "application/json"}
    return httpx.post(url, content=body, headers=headers, timeout=30)


class TestPeerSearchRoute:
    """``POST /federation/v1/capacity/search`` is served without FastAPI's machinery: it must refuse as any
    route does, sign every answer, and still be documented."""

    def test_a_peer_without_an_agreement_is_refused_and_the_refusal_is_signed(self, fed: Federation) -> None:
        response = _as_east(fed, json.dumps(search_request(datetime.now(UTC))).encode())
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "no-agreement"
        assert response.headers[RESPONSE_SIGNATURE]

    @pytest.mark.parametrize(
        ("body", "status", "path"),
        [
            (b"{not json", 400, None),
            (b"", 422, ""),
            (json.dumps({"name": "Jane Doe"}).encode(), 422, "/name"),
            (json.dumps({"age": "old"}).encode(), 422, "/age"),
        ],
    )
    def test_a_bad_body_is_a_signed_problem_naming_the_field(
        self, fed: Federation, body: bytes, status: int, path: str | None
    ) -> None:
        response = _as_east(fed, body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers[RESPONSE_SIGNATURE]
        if path is not None:
            assert path in {e["path"] for e in response.json()["errors"]}

    def test_an_unsigned_call_is_refused_before_the_body_is_read(self, fed: Federation) -> None:
        headers = {"content-type": "application/json"}
        response = httpx.post(fed.specs[SE].base_url + PEER_SEARCH, content=b"{not json", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.json()["reason"] == "missing-token"

    def test_the_region_asked_audits_the_search_by_its_digest_and_keeps_no_criteria(self, fed: Federation) -> None:
        body = search_request(datetime.now(UTC), reach="national", needs=["sensory-impairment"], age=9)
        fed.ok(SE, "commissioner", "POST", SEARCH, body)
        filters = {"action": "federation.capacity_search", "peer": SE, "decision": "permit", "limit": "1000"}

        def audited() -> list[dict[str, Any]]:
            return [i["entry"] for i in fed.ok(LDN, "governance", "GET", "/v1/audit/entries", **filters)["items"]]

        wait_for(lambda: len(audited()) > 0, what="London to sequence the search's entry")
        entry = audited()[-1]
        assert entry["dataset"] == "capacity.vacancies" and entry["purpose"] == "placement-search"
        assert len(entry["request_sha256"]) == 64
        stored = json.dumps(entry)
        for criterion in ("sensory-impairment", KENT, "home_la", "needed_by", body["needed_by"]):
            assert criterion not in stored

    def test_the_route_is_documented_with_its_request_and_answer(self, fed: Federation) -> None:
        operation = httpx.get(fed.specs[SE].base_url + "/openapi.json", timeout=30).json()["paths"][PEER_SEARCH]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchRequest")
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/SearchResponse"
        )


class TestCrossBorderSearch:
    def test_a_national_search_ranks_places_from_three_nodes_nearest_home_first(self, fed: Federation) -> None:
        answer = fed.search(reach="national", setting_types=["childrens-home"])
        ranked = [(r["vacancy"]["id"], r["node_id"], r["region_code"]) for r in answer["results"]]
        assert ranked == [
            ("se-kent", SE, "E12000008"),
            ("ldn-bromley", LDN, "E12000007"),
            ("gm-manchester", GM, "E12000002"),
        ]
        scores = [r["score"] for r in answer["results"]]
        assert scores == sorted(scores, reverse=True)
        assert _peers(answer) == {
            LDN: ("ok", None, 1),
            GM: ("ok", None, 1),
            EE: ("refused", "no-agreement", 0),  # within reach, no agreement: listed, never called
        }

    def test_neighbours_reach_asks_only_bordering_regions(self, fed: Federation) -> None:
        answer = fed.search(reach="neighbours", setting_types=["childrens-home"])
        assert [r["vacancy"]["id"] for r in answer["results"]] == ["se-kent", "ldn-bromley"]
        assert _peers(answer) == {LDN: ("ok", None, 1), EE: ("refused", "no-agreement", 0)}

    def test_region_reach_asks_no_peer(self, fed: Federation) -> None:
        answer = fed.search(reach="region")
        assert [r["vacancy"]["id"] for r in answer["results"]] == ["se-kent"]
        assert answer["peers"] == []

    def test_identity_like_fields_are_refused(self, fed: Federation) -> None:
        body = {**search_request(datetime.now(UTC), reach="national"), "date_of_birth": "2011-05-01"}
        response = fed.call(SE, "commissioner", "POST", SEARCH, body)
        assert response.status_code == 422
        assert "/date_of_birth" in [e["path"] for e in response.json()["errors"]]

    def test_an_expired_vacancy_on_a_peer_is_never_returned(self, fed: Federation) -> None:
        fostering = {"reach": "national", "setting_types": ["independent-fostering-agency"]}
        assert [r["vacancy"]["id"] for r in fed.search(**fostering)["results"]] == ["ldn-expiring"]
        engine = make_engine(_database(fed, LDN))
        try:
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE capacity_vacancy SET valid_until = :past WHERE id = 'ldn-expiring'"),
                    {"past": datetime.now(UTC) - timedelta(minutes=1)},
                )
        finally:
            engine.dispose()
        answer = fed.search(**fostering)
        assert answer["results"] == []
        assert _peers(answer)[LDN] == ("ok", None, 0)

    def test_fees_are_marked_against_the_caps_held_and_over_cap_places_can_be_left_out(self, fed: Federation) -> None:
        caps = [{"setting_type": "childrens-home", "need_level": "standard", "max_weekly_fee": 4500}]
        fed.ok(
            SE,
            "publisher",
            "POST",
            "/v1/publications",
            {"kind": "fee-cap", "document": fee_cap(SE, caps=caps), "id": "se-capacity-fee-caps"},
        )
        answer = fed.search(reach="national", setting_types=["childrens-home"])
        marks = {r["vacancy"]["id"]: r["fee_within_cap"] for r in answer["results"]}
        # Kent is in the South East, whose cap is £4,500: £5,000 is over it; no cap held covers London or GM.
        assert marks == {"se-kent": False, "ldn-bromley": None, "gm-manchester": None}
        within = fed.search(reach="national", setting_types=["childrens-home"], within_fee_cap_only=True)
        assert [r["vacancy"]["id"] for r in within["results"]] == ["ldn-bromley", "gm-manchester"]


class TestNationalSecureBedBoard:
    def test_the_national_board_totals_equal_the_sum_of_every_regions_homes(self, fed: Federation) -> None:
        board = fed.ok(NAT, "analyst", "GET", "/v1/capacity/secure-beds", scope="national")
        homes = board["homes"]
        assert sorted(h["urn"] for h in homes) == ["SC900001", "SC900002", "SC900003", "SC900004"]
        assert {h["urn"]: h["node_id"] for h in homes}["SC900004"] == GM
        totals = {
            "homes": len(homes),
            "approved_places": sum(h["approved_places"] for h in homes),
            "beds_free": sum(h["beds_free"] for h in homes),
            "beds_free_female": sum(h["beds_free_by_sex"]["female"] for h in homes),
            "beds_free_male": sum(h["beds_free_by_sex"]["male"] for h in homes),
        }
        for member, total in totals.items():
            assert board["england"][member] == total == sum(r[member] for r in board["regions"]), member
        by_region = {r["region_code"]: r["beds_free"] for r in board["regions"] if r["homes"]}
        assert by_region == {"E12000008": 4, "E12000007": 0, "E12000002": 3}
        assert {p["node_id"]: p["outcome"] for p in board["peers"]} == {SE: "ok", LDN: "ok", GM: "ok", EE: "refused"}
        assert "E12000006" in board["missing_regions"]
        assert not {"E12000008", "E12000007", "E12000002"} & set(board["missing_regions"])


class TestChangesInTheFederation:
    def test_an_agreement_revoked_between_two_searches_is_reported_refused(self, fed: Federation) -> None:
        assert _peers(fed.search(reach="national"))[GM][0] == "ok"
        fed.ok(GM, "node-admin", "POST", "/v1/agreements/cap-se-gm/revoke", {"reason": "Test revocation"})
        answer = fed.search(reach="national")
        assert _peers(answer)[GM] == ("refused", "revoked", 0)
        assert GM not in {r["node_id"] for r in answer["results"]}

    def test_a_peer_that_is_down_is_reported_unreachable(self, fed: Federation) -> None:
        fed.nodes[LDN].stop()
        answer = fed.search(reach="neighbours")
        outcome, _, count = _peers(answer)[LDN]
        assert (outcome, count) == ("unreachable", 0)
        assert [r["node_id"] for r in answer["results"]] == [SE]
