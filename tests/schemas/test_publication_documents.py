"""Published documents: frameworks, local-placement protocols and fee caps, comparable across regions."""

from __future__ import annotations

import pytest

from schemas import validate
from tests.schemas.examples import BRIGHTON, DELETE, edited, fee_cap, framework, placement_protocol


class TestFramework:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a dynamic purchasing system with two lots"),
            pytest.param(
                {"/procurement_route": "framework", "/reopening_dates": DELETE, "/call_off": {"las": [BRIGHTON]}},
                id="a closed framework one LA calls off",
            ),
            pytest.param({"/synthetic": DELETE}, id="a real framework"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("framework", edited(framework(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/procurement_route": "open-tender"}, ["/procurement_route"], id="an unknown route"),
            pytest.param({"/lots": []}, ["/lots"], id="no lots"),
            pytest.param(
                {"/lots/0/setting_types/0": "care-home"}, ["/lots/0/setting_types/0"], id="an unknown setting"
            ),
            pytest.param({"/lots/0/need_levels/0": "high"}, ["/lots/0/need_levels/0"], id="an unknown need level"),
            pytest.param(
                {"/lots/0/providers/0/rate_card/1/weekly_fee": 6100.555},
                ["/lots/0/providers/0/rate_card/1/weekly_fee"],
                id="a rate in fractions of a penny",
            ),
            pytest.param(
                {"/lots/0/providers/0/rate_card": []}, ["/lots/0/providers/0/rate_card"], id="a provider without rates"
            ),
            pytest.param({"/lots/0/providers/0/urn": "SC-123456"}, ["/lots/0/providers/0/urn"], id="a malformed URN"),
            pytest.param(
                {"/lots/0/age_bands/0/max_age": 18}, ["/lots/0/age_bands/0/max_age"], id="an age band into adulthood"
            ),
            pytest.param({"/call_off": {}}, ["/call_off"], id="nobody may call off"),
            pytest.param({"/call_off/regions/0": "E10000016"}, ["/call_off/regions/0"], id="an LA given as region"),
            pytest.param({"/effective_to": DELETE}, ["/effective_to"], id="no end date"),
            pytest.param({"/reopening_dates/0": "October 2025"}, ["/reopening_dates/0"], id="a reopening in words"),
            pytest.param({"/budget": 1_000_000}, ["/budget"], id="an unknown member"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("framework", edited(framework(), changes))] == paths


class TestPlacementProtocol:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="the example"),
            pytest.param(
                {"/fee_cap": DELETE, "/scope/setting_types": ["childrens-home"], "/effective_to": "2026-03-31"},
                id="children's homes only, for one year, without a fee cap",
            ),
        ],
    )
    def test_accepts(self, changes):
        assert validate("placement-protocol", edited(placement_protocol(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param(
                {"/notification_duties/0/notify": "parents"},
                ["/notification_duties/0/notify"],
                id="an unknown recipient",
            ),
            pytest.param(
                {"/notification_duties/0/timing/working_days": -1},
                ["/notification_duties/0/timing/working_days"],
                id="negative working days",
            ),
            pytest.param(
                {"/notification_duties/0/timing/when": "during"},
                ["/notification_duties/0/timing/when"],
                id="an unknown timing",
            ),
            pytest.param(
                {"/notification_duties/1/regulations": []},
                ["/notification_duties/1/regulations"],
                id="a duty resting on no regulation",
            ),
            pytest.param({"/notification_duties": []}, ["/notification_duties"], id="no notification duties"),
            pytest.param({"/parties/las": []}, ["/parties/las"], id="no local authorities"),
            pytest.param({"/scope/placements/0": "national"}, ["/scope/placements/0"], id="an unknown scope"),
            pytest.param(
                {"/distance_placements/consult_host_authority": DELETE},
                ["/distance_placements/consult_host_authority"],
                id="silent on consulting the host",
            ),
            pytest.param({"/dispute_resolution/steps": []}, ["/dispute_resolution/steps"], id="no dispute route"),
            pytest.param({"/fee_cap/sha256": "abc"}, ["/fee_cap/sha256"], id="a fee cap digest that is no SHA-256"),
            pytest.param({"/effective_from": DELETE}, ["/effective_from"], id="no start date"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("placement-protocol", edited(placement_protocol(), changes))] == paths


class TestFeeCap:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a regional cap with a CPI uplift"),
            pytest.param({"/covers": {"la_codes": [BRIGHTON]}, "/effective_to": DELETE}, id="one LA, open-ended"),
            pytest.param(
                {"/uplift": {"index": "fixed-percentage", "applies_on": "2026-04-01", "percentage": 2.5}},
                id="a fixed uplift",
            ),
            pytest.param({"/uplift": {"index": "none"}}, id="no uplift"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("fee-cap", edited(fee_cap(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/currency": "EUR"}, ["/currency"], id="another currency"),
            pytest.param({"/covers": {}}, ["/covers"], id="covering nobody"),
            pytest.param({"/covers/region_code": "E13000001"}, ["/covers/region_code"], id="Inner London as a region"),
            pytest.param({"/caps": []}, ["/caps"], id="no caps"),
            pytest.param({"/caps/0/max_weekly_fee": 0.001}, ["/caps/0/max_weekly_fee"], id="a cap below a penny"),
            pytest.param({"/caps/0/need_level": "very-high"}, ["/caps/0/need_level"], id="an unknown need level"),
            pytest.param({"/caps/2/setting_type": DELETE}, ["/caps/2/setting_type"], id="a cap for no setting"),
            pytest.param({"/uplift/index": "fixed-percentage"}, ["/uplift/percentage"], id="a fixed uplift of nothing"),
            pytest.param({"/uplift/percentage": 2}, ["/uplift/percentage"], id="a percentage on a CPI uplift"),
            pytest.param({"/uplift/applies_on": DELETE}, ["/uplift/applies_on"], id="an uplift with no date"),
            pytest.param({"/uplift/index": "none"}, ["/uplift"], id="no uplift with a date"),
            pytest.param({"/uplift/index": "inflation"}, ["/uplift/index"], id="an unknown index"),
            pytest.param({"/exceptions/approver": DELETE}, ["/exceptions/approver"], id="exceptions nobody approves"),
            pytest.param({"/effective_from": "2025-04"}, ["/effective_from"], id="a month instead of a date"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("fee-cap", edited(fee_cap(), changes))] == paths

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            pytest.param({"/uplift/index": "none"}, "an uplift of none takes no date or percentage", id="none"),
            pytest.param({"/uplift/percentage": 2}, "only a fixed-percentage uplift takes a percentage", id="cpi"),
        ],
    )
    def test_explains_the_uplift_rule(self, changes, message):
        assert [e.message for e in validate("fee-cap", edited(fee_cap(), changes))] == [message]
