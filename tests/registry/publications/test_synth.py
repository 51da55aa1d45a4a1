"""Synthetic publications: deterministic, valid, labelled synthetic, figures in line with the cost facts."""

from __future__ import annotations

from datetime import date

import pytest

import schemas
from registry.core.domain import english_regions
from registry.core.signing import canonical, sha256_hex
from registry.publications.kinds import Kind, semantic_problems
from registry.publications.synth import default_owner, financial_year, synth_publications

ON = date(2025, 11, 3)
GREATER_MANCHESTER = [f"E0800000{n}" for n in range(1, 10)] + ["E08000010"]


class TestSynth:
    def test_same_inputs_same_documents(self) -> None:
        first = synth_publications("E12000008", owner="rcc-south-east", on=ON, seed=7)
        again = synth_publications("E12000008", owner="rcc-south-east", on=ON, seed=7)
        other = synth_publications("E12000008", owner="rcc-south-east", on=ON, seed=8)
        assert first == again
        assert first[0].document != other[0].document

    @pytest.mark.parametrize("region", sorted(english_regions()))
    def test_every_region_gets_three_valid_labelled_documents(self, region: str) -> None:
        owner = default_owner(region)
        made = synth_publications(region, owner=owner, on=ON)
        assert [item.kind for item in made] == [Kind.fee_cap, Kind.placement_protocol, Kind.framework]
        for item in made:
            assert schemas.validate(item.kind.schema_name, item.document) == []
            assert semantic_problems(item.kind, item.document, node_id=owner) == []
            assert item.document["synthetic"] is True
            assert "(synthetic)" in item.document["title"]
            assert item.id.startswith(owner)
        fee_cap, protocol, _framework = (item.document for item in made)
        assert protocol["fee_cap"] == {"id": made[0].id, "version": 1, "sha256": sha256_hex(canonical(fee_cap))}
        assert (fee_cap["effective_from"], fee_cap["effective_to"]) == ("2025-04-01", "2026-03-31")

    def test_figures_follow_the_cost_facts(self) -> None:
        def cap(region: str, setting: str, need: str = "standard") -> int:
            document = synth_publications(region, owner="rcc-x", on=ON)[0].document
            return int(
                next(
                    c["max_weekly_fee"]
                    for c in document["caps"]
                    if (c["setting_type"], c["need_level"]) == (setting, need)
                )
            )

        for region in english_regions():
            assert 4500 <= cap(region, "childrens-home") <= 7000
            assert 800 <= cap(region, "independent-fostering-agency") <= 1500
            assert 400 <= cap(region, "local-authority-fostering") <= 800
            assert 1200 <= cap(region, "supported-accommodation-category-1") <= 3500
            assert cap(region, "childrens-home", "standard") < cap(region, "childrens-home", "specialist")
        assert cap("E12000007", "childrens-home") > cap("E12000001", "childrens-home")

    def test_protocol_timings_stay_within_the_regulations(self) -> None:
        for region in english_regions():
            protocol = synth_publications(region, owner="rcc-x", on=ON)[1].document
            host = protocol["notification_duties"][0]
            assert host["notify"] == "host-authority" and host["emergency_timing"]["working_days"] <= 5

    def test_an_rcc_smaller_than_its_region(self) -> None:
        made = synth_publications("E12000002", owner="rcc-greater-manchester", on=ON, la_codes=GREATER_MANCHESTER)
        fee_cap, protocol, framework = (item.document for item in made)
        assert fee_cap["covers"] == {"region_code": "E12000002", "la_codes": sorted(GREATER_MANCHESTER)}
        assert protocol["parties"]["las"] == sorted(GREATER_MANCHESTER)
        assert framework["call_off"] == {"las": sorted(GREATER_MANCHESTER)}

    @pytest.mark.parametrize(
        ("region", "las"), [("E12000099", None), ("E13000001", None), ("E12000008", ["E08000003"])]
    )
    def test_bad_region_or_la_is_refused(self, region: str, las: list[str] | None) -> None:
        with pytest.raises(ValueError, match="not"):
            synth_publications(region, owner="rcc-x", on=ON, la_codes=las)

    def test_financial_year(self) -> None:
        assert financial_year(date(2026, 3, 31)) == (date(2025, 4, 1), date(2026, 3, 31))
        assert financial_year(date(2026, 4, 1)) == (date(2026, 4, 1), date(2027, 3, 31))
