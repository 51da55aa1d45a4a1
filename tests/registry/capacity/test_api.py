from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

import schemas
from registry.capacity.models import Vacancy
from registry.core.db import utcnow
from schemas.vocabulary import Role
from tests.registry.capacity.factories import MEDWAY, iso, search_request, secure_home, vacancy
from tests.support.tokens import bearer

VACANCIES = "/v1/capacity/vacancies"
PROBLEM = "application/problem+json"


@pytest.fixture
def provider(app: FastAPI) -> dict[str, str]:
    return bearer(app, Role.provider, subject="provider")


@pytest.fixture
def commissioner(app: FastAPI) -> dict[str, str]:
    return bearer(app, Role.commissioner, subject="commissioner")


@pytest.mark.postgres
class TestVacancyRoutes:
    def test_put_creates_then_replaces_and_get_lists_it(self, client: TestClient, provider: dict[str, Any]) -> None:
        now = utcnow()
        created = client.put(f"{VACANCIES}/vac-1", json=vacancy(now), headers=provider)
        assert created.status_code == 201, created.text
        assert created.json()["stale"] is False
        replaced = client.put(f"{VACANCIES}/vac-1", json=vacancy(now, beds_free=2), headers=provider)
        assert replaced.status_code == 200
        listed = client.get(VACANCIES, headers=provider).json()
        assert [(v["id"], v["beds_free"]) for v in listed["items"]] == [("vac-1", 2)]
        assert listed["next_after"] is None

    def test_the_id_may_be_left_out_of_the_body(self, client: TestClient, provider: dict[str, Any]) -> None:
        body = vacancy(utcnow())
        del body["id"]
        assert client.put(f"{VACANCIES}/from-path", json=body, headers=provider).json()["id"] == "from-path"

    def test_a_listed_vacancy_holds_no_address_and_validates_as_a_document(
        self, client: TestClient, provider: dict[str, Any]
    ) -> None:
        client.put(f"{VACANCIES}/vac-1", json=vacancy(utcnow()), headers=provider)
        item = client.get(f"{VACANCIES}/vac-1", headers=provider).json()
        stale = item.pop("stale")
        assert stale is False
        assert schemas.validate("vacancy", item) == []

    def test_delete_withdraws_a_vacancy(self, client: TestClient, provider: dict[str, Any]) -> None:
        client.put(f"{VACANCIES}/vac-1", json=vacancy(utcnow()), headers=provider)
        assert client.delete(f"{VACANCIES}/vac-1", headers=provider).status_code == 204
        gone = client.delete(f"{VACANCIES}/vac-1", headers=provider)
        assert (gone.status_code, gone.headers["content-type"], gone.json()["code"]) == (
            404,
            PROBLEM,
            "vacancy-not-found",
        )

    def test_a_bad_vacancy_is_a_422_naming_the_path(self, client: TestClient, provider: dict[str, Any]) -> None:
        response = client.put(
            f"{VACANCIES}/vac-1", json=vacancy(utcnow(), la_code="E10000021", street="1 High St"), headers=provider
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert {e["path"] for e in response.json()["errors"]} == {"/la_code", "/street"}

    def test_an_older_report_is_a_409(self, client: TestClient, provider: dict[str, Any]) -> None:
        now = utcnow()
        client.put(f"{VACANCIES}/vac-1", json=vacancy(now, as_of=iso(now - timedelta(minutes=1))), headers=provider)
        late = client.put(
            f"{VACANCIES}/vac-1", json=vacancy(now, as_of=iso(now - timedelta(hours=1))), headers=provider
        )
        assert (late.status_code, late.json()["code"]) == (409, "out-of-order-update")

    def test_an_expired_vacancy_is_never_listed(
        self, app: FastAPI, client: TestClient, provider: dict[str, Any]
    ) -> None:
        now = utcnow()
        for vacancy_id in ("soon", "kept"):
            client.put(f"{VACANCIES}/{vacancy_id}", json=vacancy(now, vacancy_id), headers=provider)
        # Time passes for one of them: its validity ends a second ago, as if the clock had moved on.
        with Session(app.state.node.engine) as session:
            row = session.get(Vacancy, "soon")
            assert row is not None
            row.valid_until = utcnow() - timedelta(seconds=1)
            session.add(row)
            session.commit()
        assert [v["id"] for v in client.get(VACANCIES, headers=provider).json()["items"]] == ["kept"]
        assert client.get(f"{VACANCIES}/soon", headers=provider).status_code == 404
        found = client.post("/v1/capacity/search", json=search_request(now), headers=bearer(app, Role.commissioner))
        assert [r["vacancy"]["id"] for r in found.json()["results"]] == ["kept"]

    def test_a_bad_path_id_is_a_422(self, client: TestClient, provider: dict[str, Any]) -> None:
        response = client.put(f"{VACANCIES}/-bad", json=vacancy(utcnow(), "-bad"), headers=provider)
        assert response.status_code == 422


@pytest.mark.postgres
class TestBatchRoute:
    def test_a_batch_is_stored_whole(self, client: TestClient, provider: dict[str, Any]) -> None:
        now = utcnow()
        body = {"vacancies": [vacancy(now, f"v{n}") for n in range(3)]}
        response = client.post(f"{VACANCIES}:batch", json=body, headers=provider)
        assert response.status_code == 200, response.text
        assert response.json() == {"created": ["v0", "v1", "v2"], "updated": []}

    def test_bad_items_refuse_the_whole_batch_naming_each_index_and_path(
        self, client: TestClient, provider: dict[str, Any]
    ) -> None:
        now = utcnow()
        body = {
            "vacancies": [
                vacancy(now, "good"),
                vacancy(now, "bad-la", la_code="E12000008"),
                vacancy(now, "good-2"),
                vacancy(now, "bad-fee", weekly_fee=-1, child_name="x"),
            ]
        }
        response = client.post(f"{VACANCIES}:batch", json=body, headers=provider)
        assert response.status_code == 422
        assert {e["path"] for e in response.json()["errors"]} == {
            "/vacancies/1/la_code",
            "/vacancies/3/weekly_fee",
            "/vacancies/3/child_name",
        }
        assert client.get(VACANCIES, headers=provider).json()["items"] == []

    def test_rules_the_clock_decides_are_reported_per_item_too(
        self, client: TestClient, provider: dict[str, Any]
    ) -> None:
        now = utcnow()
        past = {"as_of": iso(now - timedelta(days=3)), "valid_until": iso(now - timedelta(days=1))}
        body = {"vacancies": [vacancy(now, "good"), vacancy(now, "expired", **past)]}
        response = client.post(f"{VACANCIES}:batch", json=body, headers=provider)
        assert response.status_code == 422
        problem = response.json()
        assert (problem["code"], problem["failed_items"]) == ("batch-rejected", [1])
        assert [e["path"] for e in problem["errors"]] == ["/vacancies/1/valid_until"]
        assert client.get(VACANCIES, headers=provider).json()["items"] == []


class TestRoles:
    @pytest.mark.parametrize(
        ("method", "path", "role", "status"),
        [
            ("PUT", f"{VACANCIES}/v", Role.commissioner, 403),
            ("PUT", f"{VACANCIES}/v", Role.publisher, 201),
            ("GET", VACANCIES, Role.analyst, 403),
            ("GET", VACANCIES, Role.commissioner, 200),
            ("POST", "/v1/capacity/search", Role.provider, 403),
            ("GET", "/v1/capacity/secure-beds", Role.analyst, 200),
            ("GET", "/v1/capacity/secure-beds", Role.provider, 403),
            ("PUT", "/v1/capacity/secure-homes/SC900001", Role.analyst, 403),
        ],
    )
    def test_each_route_admits_only_its_roles(
        self, app: FastAPI, client: TestClient, method: str, path: str, role: Role, status: int
    ) -> None:
        now = utcnow()
        body = {"PUT": vacancy(now, "v"), "POST": search_request(now)}.get(method)
        response = client.request(method, path, json=body, headers=bearer(app, role, subject=role.value))
        assert response.status_code == status, response.text

    def test_no_token_is_a_401(self, client: TestClient) -> None:
        assert client.get(VACANCIES).status_code == 401


class TestSearchRoute:
    @pytest.mark.postgres
    def test_a_search_returns_ranked_results_and_no_peers_yet(
        self, client: TestClient, provider: dict[str, Any], commissioner: dict[str, Any]
    ) -> None:
        now = utcnow()
        client.put(f"{VACANCIES}/far", json=vacancy(now, "far", la_code=MEDWAY), headers=provider)
        client.put(f"{VACANCIES}/near", json=vacancy(now, "near"), headers=provider)
        response = client.post("/v1/capacity/search", json=search_request(now), headers=commissioner)
        assert response.status_code == 200, response.text
        body = response.json()
        assert schemas.validate("capacity-search-response", body) == []
        assert [r["vacancy"]["id"] for r in body["results"]] == ["near", "far"]
        assert body["peers"] == []
        assert {r["node_id"] for r in body["results"]} == {"rcc-test"}

    @pytest.mark.parametrize("member", ["name", "date_of_birth", "child_id", "upn", "nhs_number", "home_postcode"])
    def test_identity_like_fields_are_refused(
        self, client: TestClient, commissioner: dict[str, Any], member: str
    ) -> None:
        response = client.post(
            "/v1/capacity/search", json=search_request(utcnow(), **{member: "Jane Doe"}), headers=commissioner
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert [e["path"] for e in response.json()["errors"]] == [f"/{member}"]
        assert "Jane Doe" not in response.text


@pytest.mark.postgres
class TestSecureBedRoutes:
    def test_the_board_totals_are_the_sum_of_the_homes(
        self, app: FastAPI, client: TestClient, provider: dict[str, Any]
    ) -> None:
        now = utcnow()
        homes = [
            secure_home(now, "SC900001"),
            secure_home(
                now,
                "SC900002",
                la_code=MEDWAY,
                approved_places=20,
                welfare_beds=10,
                justice_beds=10,
                beds_free=1,
                beds_free_by_sex={"female": 0, "male": 1},
                age_range={"min_age": 12, "max_age": 17},
                as_of=iso(now - timedelta(hours=30)),
            ),
        ]
        for home in homes:
            assert (
                client.put(f"/v1/capacity/secure-homes/{home['urn']}", json=home, headers=provider).status_code == 201
            )
        board = client.get("/v1/capacity/secure-beds", headers=bearer(app, Role.analyst, subject="analyst")).json()
        england = board["england"]
        assert england["homes"] == 2
        for field in ("approved_places", "welfare_beds", "justice_beds", "beds_free"):
            assert england[field] == sum(h[field] for h in homes)
        assert england["beds_free_female"] == sum(h["beds_free_by_sex"]["female"] for h in homes)
        assert england["beds_free_male"] == sum(h["beds_free_by_sex"]["male"] for h in homes)
        assert england["stale_homes"] == 1
        assert [(r["region_code"], r["beds_free"]) for r in board["regions"]] == [("E12000008", 4)]
        ages = {row["age"]: (row["female"], row["male"]) for row in board["by_age"]}
        assert ages[10] == (2, 2) and ages[12] == (2, 3)
        assert board["scope"] == "region" and board["peers"] == []
        assert {h["urn"]: h["stale"] for h in board["homes"]} == {"SC900001": False, "SC900002": True}

    def test_secure_homes_are_listed_with_their_region(self, client: TestClient, provider: dict[str, Any]) -> None:
        client.put("/v1/capacity/secure-homes/SC900001", json=secure_home(utcnow()), headers=provider)
        items = client.get("/v1/capacity/secure-homes", headers=provider).json()["items"]
        assert [(h["urn"], h["region_code"], h["stale"]) for h in items] == [("SC900001", "E12000008", False)]

    def test_national_scope_without_a_federation_directory_is_unavailable(
        self, app: FastAPI, client: TestClient
    ) -> None:
        response = client.get(
            "/v1/capacity/secure-beds", params={"scope": "national"}, headers=bearer(app, Role.commissioner)
        )
        assert response.status_code == 503  # no signed directory held: no peer can be asked or verified
        assert response.headers["content-type"].startswith("application/problem+json")
