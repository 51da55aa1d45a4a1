from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, func, select
from typer.testing import CliRunner

import schemas
from registry.capacity.models import (
    Vacancy,
)
from registry.capacity.secure_models import (
    SecureHome,
)
from registry.capacity.synth import SECURE_PLACES_TOTAL, region_las, synth_capacity, synth_secure_homes
from registry.cli.main import app as cli
from registry.core import domain
from registry.core.db import make_engine
from schemas.vocabulary import SettingType

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SE, NW = "E12000008", "E12000002"
GREATER_MANCHESTER = [f"E0800000{n}" for n in range(1, 10)] + ["E08000010"]
FEE_RANGES = {
    "childrens-home": (4500, 9000),
    "independent-fostering-agency": (800, 1500),
    "local-authority-fostering": (400, 800),
    "residential-special-school": (3000, 7000),
    "residential-family-centre": (3000, 6000),
}


class TestDeterminism:
    def test_the_same_seed_gives_the_same_data(self) -> None:
        first = synth_capacity(SE, seed=42, now=NOW).document()
        second = synth_capacity(SE, seed=42, now=NOW).document()
        assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)

    def test_another_seed_gives_other_data(self) -> None:
        first = synth_capacity(SE, seed=1, now=NOW).document()["vacancies"]
        second = synth_capacity(SE, seed=2, now=NOW).document()["vacancies"]
        assert first != second


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """A larger synthetic South East, shared by the read-only checks below."""
    return synth_capacity(SE, seed=7, now=NOW, vacancies=1500).document()


class TestValidity:
    def test_every_document_is_valid_against_its_schema(self, data: dict[str, Any]) -> None:
        assert [schemas.validate("vacancy", v) for v in data["vacancies"] if schemas.validate("vacancy", v)] == []
        assert [h for h in data["secure_homes"] if schemas.validate("secure-home", h)] == []

    def test_vacancies_are_in_the_regions_las_and_labelled_synthetic(self, data: dict[str, Any]) -> None:
        las = {la.ons_code for la in region_las(SE)}
        assert {v["la_code"] for v in data["vacancies"]} == las
        assert all(v["provider_name"].endswith("(synthetic)") for v in data["vacancies"])
        assert data["synthetic"] is True
        assert len({v["id"] for v in data["vacancies"]}) == len(data["vacancies"])

    def test_fees_are_in_the_realistic_range_for_each_setting(self, data: dict[str, Any]) -> None:
        for v in data["vacancies"]:
            low, high = FEE_RANGES.get(v["setting_type"], (1200, 3500))
            assert low <= v["weekly_fee"] <= high, v

    def test_the_market_mix_is_plausible(self, data: dict[str, Any]) -> None:
        mix = Counter(v["setting_type"] for v in data["vacancies"])
        total = len(data["vacancies"])
        assert 0.33 < mix["childrens-home"] / total < 0.47
        assert 0.18 < mix["independent-fostering-agency"] / total < 0.32
        assert set(mix) == {s.value for s in SettingType} - {"secure-childrens-home"}
        supported = [v for v in data["vacancies"] if v["setting_type"].startswith("supported-accommodation")]
        assert all(v["age_range"] == {"min_age": 16, "max_age": 17} for v in supported)
        centres = [v for v in data["vacancies"] if v["setting_type"] == "residential-family-centre"]
        assert all("parent-and-child" in v["needs_supported"] for v in centres)

    def test_some_vacancies_are_stale_and_none_are_expired(self, data: dict[str, Any]) -> None:
        ages = [NOW - datetime.fromisoformat(v["as_of"]) for v in data["vacancies"]]
        stale = sum(age.days >= 7 for age in ages)
        assert 0 < stale < len(ages) / 4
        assert all(datetime.fromisoformat(v["valid_until"]) > NOW for v in data["vacancies"])

    def test_an_rcc_can_take_just_its_las(self) -> None:
        data = synth_capacity(NW, seed=1, now=NOW, la_codes=GREATER_MANCHESTER)
        assert {v.la_code for v in data.vacancies} == set(GREATER_MANCHESTER)
        assert len(data.vacancies) == 25 * len(GREATER_MANCHESTER)


class TestSecureHomes:
    def test_the_national_set_is_about_fourteen_homes_and_230_places(self) -> None:
        homes = synth_secure_homes(seed=3, now=NOW)
        assert len(homes) == 14
        assert sum(h.approved_places for h in homes) == SECURE_PLACES_TOTAL
        assert len({h.urn for h in homes}) == 14
        assert 0.3 < sum(h.justice_beds for h in homes) / SECURE_PLACES_TOTAL < 0.6

    def test_each_region_holds_its_own_homes_and_together_they_hold_the_set_once(self) -> None:
        national = sorted(h.urn for h in synth_secure_homes(seed=3, now=NOW))
        held = []
        for region in domain.english_regions():
            homes = synth_capacity(region, seed=3, now=NOW, vacancies=0).secure_homes
            assert all(domain.local_authorities()[h.la_code].region_code == region for h in homes)
            held += [h.urn for h in homes]
        assert sorted(held) == national


class TestCommand:
    def test_out_writes_the_same_file_for_the_same_seed(self, tmp_path: Path) -> None:
        runner = CliRunner()
        args = ["synth", "capacity", "--region", SE, "--seed", "9", "--as-of", "2026-03-02T09:30:00Z"]
        for name in ("a.json", "b.json"):
            result = runner.invoke(cli, [*args, "--vacancies", "40", "--out", str(tmp_path / name)])
            assert result.exit_code == 0, result.output
        assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
        data = json.loads((tmp_path / "a.json").read_text())
        assert (len(data["vacancies"]), data["region_code"], data["seed"]) == (40, SE, 9)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--region", "E12000010"], "not an English region"),
            (["--region", SE, "--la", "E08000003"], "not a local authority of region"),
            (["--region", SE, "--as-of", "yesterday"], "not an ISO 8601"),
        ],
    )
    def test_bad_options_fail_with_one_line(self, tmp_path: Path, args: list[str], message: str) -> None:
        result = CliRunner().invoke(cli, ["synth", "capacity", *args, "--out", str(tmp_path / "x.json")])
        assert result.exit_code == 1
        assert message in result.output


@pytest.mark.postgres
class TestCommandIntoTheNode:
    def test_synth_fills_the_nodes_register(self, tmp_path: Path, db_url: str) -> None:
        runner = CliRunner()
        data_dir = tmp_path / "node"
        init = ["init", "--data-dir", str(data_dir), "--node-id", "rcc-se", "--region-code", SE]
        assert runner.invoke(cli, [*init, "--database-url", db_url]).exit_code == 0
        synth = ["synth", "capacity", "--data-dir", str(data_dir), "--seed", "4", "--vacancies", "120", "--json"]
        result = runner.invoke(cli, synth)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["vacancies"] == 120
        engine = make_engine(db_url)
        try:
            with Session(engine) as session:
                assert session.exec(select(func.count()).select_from(Vacancy)).one() == 120
                assert session.exec(select(func.count()).select_from(SecureHome)).one() == 2
        finally:
            engine.dispose()
        # Run again with the same seed: the same records are replaced, nothing is duplicated.
        assert runner.invoke(cli, synth).exit_code == 0
        engine = make_engine(db_url)
        try:
            with Session(engine) as session:
                assert session.exec(select(func.count()).select_from(Vacancy)).one() == 120
        finally:
            engine.dispose()
