"""National statistics: the England table from regional releases.

``TestCombine`` checks the combination itself on nine in-process regional releases (fast, pure).
``TestOverRealNodes`` starts ``rcc-node federation up`` (four real nodes with their signed agreements, one per
module), imports synthetic episodes into the three regional nodes' databases, builds and signs a release on each,
and asks the national node for ``?scope=national``: every region's table arrives, is verified against the
directory key, and is combined.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from federation.statistics import combine
from registry.core.db import make_engine
from registry.core.domain import english_regions, las_in_region
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from registry.statistics import catalogue, service
from registry.statistics.catalogue import ENGLAND, TOTAL
from registry.statistics.ssda903 import read_episodes
from registry.statistics.synth import write_episodes
from tests.support.federation import bearer, token

YEAR = 2024
SALT = b"n" * 32
SE, GM, LDN, NAT = "rcc-south-east", "rcc-greater-manchester", "rcc-london", "rcc-national"


def regional_release(region: str, tmp: Path, *, children: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """One region's published tables from one of its LAs (the regional total is over the LAs given)."""
    la = las_in_region(region)[0].ons_code
    path = tmp / f"{region}.csv"
    write_episodes(path, la=la, year=YEAR, children=children, seed=seed)
    episodes = list(read_episodes(path, la=la, year=YEAR, salt=SALT))
    return catalogue.publish(episodes, year=YEAR, las=[la], total=region)


@pytest.fixture(scope="module")
def nine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    tmp = tmp_path_factory.mktemp("regions")
    return {
        region: regional_release(region, tmp, children=400 + 50 * n, seed=n)
        for n, region in enumerate(sorted(english_regions()))
    }


def key(row: dict[str, Any], spec: catalogue.TableSpec) -> tuple[str, ...]:
    return tuple(str(row[b.name]) for b in spec.breakdowns)


class TestCombine:
    @pytest.mark.parametrize("name", [s.name for s in catalogue.TABLES])
    def test_england_is_the_sum_of_the_regions_where_nothing_is_suppressed(self, nine, name: str) -> None:
        spec = catalogue.table(name)
        rows, missing, _ = combine(spec, YEAR, {r: tables[name] for r, tables in nine.items()})
        assert missing == []
        regional: dict[tuple[str, ...], list[str]] = {}
        for region, tables in nine.items():
            for row in tables[name]:
                if row["area_code"] == region:
                    regional.setdefault(key(row, spec), []).append(str(row["number"]))
        england = {key(r, spec): r for r in rows if r["area_code"] == ENGLAND}
        assert set(england) == set(regional)
        summed = 0
        for coords, figures in regional.items():
            if all(f.isdigit() for f in figures):
                assert england[coords]["number"] == str(sum(int(f) for f in figures))
                summed += 1
            else:
                assert england[coords]["number"] == "c"  # never a total over a hidden figure
        assert england[(TOTAL,) * len(spec.breakdowns)]["number"].isdigit()
        assert summed > 0

    def test_regional_rows_are_kept_as_published(self, nine) -> None:
        spec = catalogue.table("cla-age-band")
        rows, _, _ = combine(spec, YEAR, {r: t[spec.name] for r, t in nine.items()})
        for region, tables in nine.items():
            published = [r for r in tables[spec.name] if r["area_code"] == region]
            assert [r for r in rows if r["area_code"] == region] == published

    def test_a_missing_region_makes_england_unavailable_and_is_named(self, nine) -> None:
        spec = catalogue.table("cla-sex")
        regions = sorted(nine)
        rows, missing, _ = combine(spec, YEAR, {r: nine[r][spec.name] for r in regions[1:]})
        assert missing == [regions[0]]
        assert {r["number"] for r in rows if r["area_code"] in (ENGLAND, regions[0])} == {"x"}

    def test_a_suppressed_regional_figure_stays_suppressed_and_is_named(self, nine) -> None:
        spec = catalogue.table("cla-uasc")
        region = sorted(nine)[3]
        tables = {r: [dict(row) for row in t[spec.name]] for r, t in nine.items()}
        target = next(row for row in tables[region] if row["area_code"] == region and row["uasc"] == "UASC")
        target["number"] = target["percent"] = "c"
        rows, _, suppressed = combine(spec, YEAR, tables)
        assert suppressed == [region]
        assert next(r for r in rows if r["area_code"] == region and r["uasc"] == "UASC")["number"] == "c"
        england = next(r for r in rows if r["area_code"] == ENGLAND and r["uasc"] == "UASC")
        assert (england["number"], england["percent"]) == ("c", "c")

    def test_a_region_with_a_foreign_cube_counts_as_missing(self, nine) -> None:
        spec = catalogue.table("cla-sex")
        region = sorted(nine)[0]
        odd = [dict(r, sex="other") for r in nine[region][spec.name]]
        _, missing, _ = combine(spec, YEAR, {**{r: t[spec.name] for r, t in nine.items()}, region: odd})
        assert missing == [region]


# ---------------------------------------------------------------------------------------------- real nodes


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.integration.test_federation_up import cleanup, launch

    running = launch(tmp_path_factory.mktemp("statsfed") / "federation", "--base-port", "0")
    try:
        yield running
    finally:
        cleanup(running)


def import_and_build(data_dir: Path, tmp: Path, seed: int) -> tuple[int, list[dict[str, Any]]]:
    """An operator's ``import episodes`` for every LA of the node's region, then ``stats build``: the release's
    version, and the regional rows of ``cla-placement-group`` as the node itself serves them.

    ``federation up`` already built each region a release of its own synthetic episodes for the latest year;
    this one, for ``YEAR``, is a later version beside it."""
    settings = load_settings(data_dir=data_dir)
    assert settings.region_code is not None
    engine = make_engine(settings.effective_database_url)
    rng = random.Random(seed)  # noqa: S311 - synthetic file sizes, not a secret
    try:
        with Session(engine) as session:
            for la in service.area_las(settings.region_code):
                path = tmp / f"{la}.csv"
                write_episodes(path, la=la, year=YEAR, children=rng.randint(60, 160), seed=rng.randint(0, 9999))
                service.import_episodes(session, path, la=la, year=YEAR, salt=SALT, area_code=settings.region_code)
            release = service.build_release(
                session,
                node_id=settings.node_id,
                area_code=settings.region_code,
                key=KeyRing.load(settings.effective_key_dir).active,
                year=YEAR,
            )
            session.commit()
            version = release.version
            rows = service.local_table(session, "cla-placement-group", year=YEAR).rows
    finally:
        engine.dispose()
    assert version is not None
    return version, [r for r in rows if r["geographic_level"] == "Regional"]


def bearer_of(http: httpx.Client, node: dict[str, Any], role: str) -> dict[str, str]:
    credentials = node["clients"][role]
    response = http.post(
        f"{node['base_url']}/oauth/token",
        auth=(credentials["client_id"], credentials["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.integration
class TestOverRealNodes:
    def test_the_national_node_combines_every_regions_verified_release(
        self, fed: Any, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        regional = {node_id: fed.node(node_id) for node_id in (SE, GM, LDN)}
        built = {
            node_id: import_and_build(Path(node["data_dir"]), tmp_path_factory.mktemp(node_id), seed=n)
            for n, (node_id, node) in enumerate(regional.items())
        }
        own = {regional[node_id]["region_code"]: rows for node_id, (_, rows) in built.items()}
        national = fed.node(NAT)
        with httpx.Client(timeout=60.0, trust_env=False) as http:
            headers = bearer_of(http, national, "analyst")
            response = http.get(
                f"{national['base_url']}/v1/statistics/cla-placement-group",
                params={"scope": "national", "year": YEAR},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            peers = {p["peer"]: p for p in body["peers"]}
            assert set(peers) == set(regional)
            assert all(p["verified"] and p["outcome"] == "ok" for p in peers.values())
            assert {peer: p["release_version"] for peer, p in peers.items()} == {n: v for n, (v, _) in built.items()}
            expected_missing = sorted(set(english_regions()) - {n["region_code"] for n in regional.values()})
            assert body["missing_regions"] == expected_missing
            for region, mine in own.items():  # each region's rows arrive exactly as that node publishes them
                theirs = [r for r in body["rows"] if r["region_code"] == region]
                assert [r for r in theirs if r["geographic_level"] == "Regional"] == mine
                assert any(r["number"].isdigit() for r in mine)
            england = [r for r in body["rows"] if r["geographic_level"] == "National"]
            assert england and {r["number"] for r in england} == {"x"}  # six regions sent nothing
            csv_text = http.get(
                f"{national['base_url']}/v1/statistics/cla-placement-group",
                params={"scope": "national", "year": YEAR, "format": "csv"},
                headers=headers,
            ).text
            assert csv_text.startswith("time_period,time_identifier,geographic_level")


# ---------------------------------------------------------------------------------------------- the inbound route

STATS_URL = "http://testserver/federation/v1/statistics/cla-sex"


class TestInboundRoute:
    @pytest.mark.parametrize(
        ("purpose", "code"),
        [("placement-search", "statistics-purpose-not-served"), ("national-statistics", "policy-denied")],
    )
    def test_a_peer_without_a_fitting_agreement_is_refused_with_the_reason(
        self, fed_client: Any, peer: Any, purpose: str, code: str
    ) -> None:
        value, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=STATS_URL, purpose=purpose)
        response = fed_client.get("/federation/v1/statistics/cla-sex", headers=bearer(value))
        assert response.status_code == 403, response.text
        assert response.json()["code"] == code

    def test_an_unknown_table_is_not_found(self, fed_client: Any, peer: Any) -> None:
        url = "http://testserver/federation/v1/statistics/children"
        value, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=url, purpose="national-statistics")
        assert fed_client.get("/federation/v1/statistics/children", headers=bearer(value)).status_code == 404
