from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.core.keys import KeyRing
from registry.statistics import catalogue, service
from registry.statistics.synth import write_episodes
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres

SOUTH_EAST = "E12000008"
KENT = "E10000016"
YEAR = 2024
# Anything that would name a child-level field: the 903 CHILD id, date of birth, postcodes, the pseudonym.
# A vacancy's setting (a children's home) is placed by its postcode district: a provider's location, no child's.
ALLOWED = {("/v1/capacity/", "postcode_district"), ("/federation/v1/capacity/", "postcode_district")}
RECORD_LEVEL = re.compile(r"^(child|child_id|pseudonym|upn)$|dob|birth|post_?code|home_post|pl_post", re.IGNORECASE)


@pytest.fixture
def released(app: FastAPI, keys: KeyRing, tmp_path: Path) -> FastAPI:
    path = tmp_path / "kent.csv"
    write_episodes(path, la=KENT, year=YEAR, children=300, seed=5)
    node = app.state.node
    with Session(node.engine) as session:
        service.import_episodes(session, path, la=KENT, year=YEAR, salt=b"k" * 32, area_code=SOUTH_EAST)
        service.build_release(session, node_id=node.node_id, area_code=SOUTH_EAST, key=keys.active)
        session.commit()
    return app


@pytest.fixture
def analyst(released: FastAPI) -> dict[str, str]:
    return bearer(released, "analyst", subject="analyst")


def keys_of(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from keys_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_of(item)


def schema_fields(schema: Any, components: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Every property name reachable from a response schema, through $ref, items, allOf/anyOf/oneOf."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                yield from schema_fields(components.get(name, {}), components, seen)
        for name, sub in (schema.get("properties") or {}).items():
            yield name
            yield from schema_fields(sub, components, seen)
        for key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "prefixItems"):
            sub = schema.get(key)
            if isinstance(sub, list):
                for s in sub:
                    yield from schema_fields(s, components, seen)
            elif isinstance(sub, dict):
                yield from schema_fields(sub, components, seen)


class TestReading:
    def test_an_analyst_reads_the_catalogue_and_releases(self, released: FastAPI, analyst: dict[str, str]) -> None:
        with TestClient(released) as client:
            body = client.get("/v1/statistics", headers=analyst).json()
        assert [t["name"] for t in body["tables"]] == [s.name for s in catalogue.TABLES]
        assert body["releases"][0]["version"] == 1
        assert body["releases"][0]["las"] == [KENT]

    def test_an_analyst_reads_a_table_as_json_in_the_tidy_layout(
        self, released: FastAPI, analyst: dict[str, str]
    ) -> None:
        with TestClient(released) as client:
            body = client.get("/v1/statistics/cla-placement-group", headers=analyst).json()
        assert (body["table"], body["year"], body["release_version"], body["scope"]) == (
            "cla-placement-group",
            YEAR,
            1,
            "local",
        )
        kent = [r for r in body["rows"] if r["new_la_code"] == KENT]
        assert {r["placement_group"] for r in kent} == {*catalogue.PLACEMENT_GROUP_NAMES, catalogue.TOTAL}
        assert all(r["time_period"] == YEAR and r["time_identifier"] == "Reporting year" for r in body["rows"])
        region = [r for r in body["rows"] if r["geographic_level"] == "Regional"]
        assert region and all(r["number"] == "x" for r in region)  # 18 LAs of the region sent nothing

    def test_an_analyst_reads_a_table_as_csv(self, released: FastAPI, analyst: dict[str, str]) -> None:
        with TestClient(released) as client:
            response = client.get("/v1/statistics/cla-sex?format=csv", headers=analyst)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert rows and set(rows[0]) >= {"time_period", "geographic_level", "new_la_code", "sex", "number", "percent"}

    @pytest.mark.parametrize("roles", [(), ("publisher",), ("provider",)])
    def test_other_roles_are_refused(self, released: FastAPI, roles: tuple[str, ...]) -> None:
        with TestClient(released) as client:
            for path in ("/v1/statistics", "/v1/statistics/cla-sex"):
                assert client.get(path, headers=bearer(released, *roles, subject=f"c{len(roles)}")).status_code == 403
            assert client.get("/v1/statistics").status_code == 401

    def test_bad_input_is_a_problem_not_a_crash(self, app: FastAPI) -> None:
        headers = bearer(app, "analyst", subject="analyst")
        with TestClient(app) as client:
            assert client.get("/v1/statistics/cla-sex", headers=headers).status_code == 404  # nothing built
            assert client.get("/v1/statistics/children", headers=headers).status_code == 404
            assert client.get("/v1/statistics/cla-sex?format=xml", headers=headers).status_code == 422
            assert client.get("/v1/statistics/cla-sex?year=12", headers=headers).status_code == 422

    def test_national_scope_with_no_agreement_lists_every_region_missing(self, app: FastAPI) -> None:
        headers = bearer(app, "analyst", subject="analyst")
        with TestClient(app) as client:
            body = client.get("/v1/statistics/cla-uasc?scope=national&year=2024", headers=headers).json()
        assert body["scope"] == "national" and body["peers"] == []
        assert len(body["missing_regions"]) == 9
        assert {r["number"] for r in body["rows"]} == {"x"}


class TestNoRecordLevelData:
    def test_no_route_response_schema_names_a_record_level_field(self, app: FastAPI) -> None:
        spec = app.openapi()
        components = spec.get("components", {}).get("schemas", {})
        found: dict[str, set[str]] = {}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for response in (operation.get("responses") or {}).values():
                    for media in (response.get("content") or {}).values():
                        names = set(schema_fields(media.get("schema", {}), components, set()))
                        bad = {
                            n
                            for n in names
                            if RECORD_LEVEL.search(n) and not any(path.startswith(p) and n == f for p, f in ALLOWED)
                        }
                        if bad:
                            found[f"{method.upper()} {path}"] = bad
        assert found == {}

    def test_statistics_responses_carry_no_record_level_field(self, released: FastAPI, analyst: dict[str, str]) -> None:
        with TestClient(released) as client:
            bodies = [client.get("/v1/statistics", headers=analyst).json()]
            bodies += [client.get(f"/v1/statistics/{s.name}", headers=analyst).json() for s in catalogue.TABLES]
            header = client.get("/v1/statistics/cla-age-band?format=csv", headers=analyst).text.splitlines()[0]
        row_schema_keys = {"$schema", "$id"}
        names = {k for body in bodies for k in keys_of(body)} - row_schema_keys
        assert not {n for n in names if RECORD_LEVEL.search(n)}
        assert not [c for c in header.split(",") if RECORD_LEVEL.search(c)]
