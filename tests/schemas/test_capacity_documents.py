"""Capacity documents: vacancies, secure homes, and the search that must never carry a child's identity."""

from __future__ import annotations

import pytest

from schemas import validate
from tests.schemas.examples import DELETE, edited, search_request, search_response, secure_home, vacancy


class TestVacancy:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a children's home place"),
            pytest.param(
                {"/setting_type": "supported-accommodation-category-2", "/age_range": {"min_age": 16, "max_age": 17}},
                id="supported accommodation for 16 and 17 year olds",
            ),
            pytest.param({"/framework": DELETE, "/needs_supported": []}, id="no framework and no particular needs"),
            pytest.param({"/beds_free": 0}, id="a place just filled"),
            pytest.param({"/urn": "1234567"}, id="a seven-digit URN"),
            pytest.param({"/postcode_district": "SW1A"}, id="a London district"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("vacancy", edited(vacancy(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/postcode_district": "ME14 1XX"}, ["/postcode_district"], id="a full postcode"),
            pytest.param({"/postcode_district": "me14"}, ["/postcode_district"], id="a lowercase district"),
            pytest.param({"/urn": "SC12345"}, ["/urn"], id="a short URN"),
            pytest.param({"/urn": "12345678"}, ["/urn"], id="an eight-digit URN"),
            pytest.param({"/la_code": "E12000008"}, ["/la_code"], id="a region as LA"),
            pytest.param({"/la_code": "E10000016\n"}, ["/la_code"], id="an LA code with a trailing newline"),
            pytest.param({"/la_code": "E1000001\uff16"}, ["/la_code"], id="an LA code with a fullwidth digit"),
            pytest.param({"/weekly_fee": -1}, ["/weekly_fee"], id="a negative fee"),
            pytest.param({"/weekly_fee": 5800.575}, ["/weekly_fee"], id="a fee in fractions of a penny"),
            pytest.param({"/weekly_fee": 318400}, ["/weekly_fee"], id="an annual cost entered as weekly"),
            pytest.param({"/weekly_fee": "5800"}, ["/weekly_fee"], id="a fee as text"),
            pytest.param({"/age_range/max_age": 18}, ["/age_range/max_age"], id="an adult"),
            pytest.param(
                {"/setting_type": "supported-accommodation-category-1", "/age_range/min_age": 15},
                ["/age_range/min_age"],
                id="supported accommodation for a 15 year old",
            ),
            pytest.param({"/setting_type": "hostel"}, ["/setting_type"], id="an unknown setting type"),
            pytest.param({"/sexes": []}, ["/sexes"], id="no sexes accepted"),
            pytest.param({"/sexes/0": "unknown"}, ["/sexes/0"], id="an unknown sex"),
            pytest.param({"/needs_supported/-": "autism"}, ["/needs_supported/3"], id="an unknown need"),
            pytest.param({"/beds_free": 1.5}, ["/beds_free"], id="half a bed"),
            pytest.param({"/address": "1 High Street"}, ["/address"], id="an address"),
            pytest.param({"/child_name": "Jane"}, ["/child_name"], id="a child's name"),
            pytest.param({"/valid_until": DELETE}, ["/valid_until"], id="no expiry"),
            pytest.param({"/framework/url": "https://x.example"}, ["/framework/url"], id="an unknown framework member"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("vacancy", edited(vacancy(), changes))] == paths


class TestSecureHome:
    def test_accepts_the_example(self):
        assert validate("secure-home", secure_home()) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/age_range/min_age": 9}, ["/age_range/min_age"], id="a child under 10"),
            pytest.param({"/beds_free_by_sex/male": DELETE}, ["/beds_free_by_sex/male"], id="beds for one sex only"),
            pytest.param({"/beds_free_by_sex/other": 1}, ["/beds_free_by_sex/other"], id="an unknown sex"),
            pytest.param({"/approved_places": 0}, ["/approved_places"], id="a home with no places"),
            pytest.param({"/beds_free": -1}, ["/beds_free"], id="negative free beds"),
            pytest.param({"/welfare_beds": DELETE}, ["/welfare_beds"], id="no welfare count"),
            pytest.param({"/children": ["A"]}, ["/children"], id="child data"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("secure-home", edited(secure_home(), changes))] == paths


class TestCapacitySearchRequest:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="the example"),
            pytest.param(
                {"/setting_types": DELETE, "/max_weekly_fee": DELETE, "/deadline_ms": DELETE, "/needs": []},
                id="only what is required",
            ),
            pytest.param(
                {"/purpose": "secure-placement", "/setting_types": ["secure-childrens-home"], "/reach": "national"},
                id="a national secure placement search",
            ),
            pytest.param({"/within_fee_cap_only": True}, id="within the fee cap only"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("capacity-search-request", edited(search_request(), changes)) == []

    @pytest.mark.parametrize(
        "member",
        ["name", "first_name", "date_of_birth", "dob", "upn", "child_id", "nhs_number", "ethnicity", "postcode"],
    )
    def test_refuses_identity_at_its_own_path(self, member):
        errors = validate("capacity-search-request", edited(search_request(), {f"/{member}": "x"}))
        assert [(e.path, e.message) for e in errors] == [(f"/{member}", "is not allowed")]

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/age": 18}, ["/age"], id="an adult"),
            pytest.param({"/age": -1}, ["/age"], id="a negative age"),
            pytest.param({"/age": 15.5}, ["/age"], id="a fractional age"),
            pytest.param({"/sex": "U"}, ["/sex"], id="an SSDA903 sex code"),
            pytest.param({"/purpose": "national-statistics"}, ["/purpose"], id="a purpose that is not a search"),
            pytest.param({"/purpose": "curiosity"}, ["/purpose", "/purpose"], id="a purpose outside the vocabulary"),
            pytest.param({"/deadline_ms": 50}, ["/deadline_ms"], id="a deadline too short to answer"),
            pytest.param({"/deadline_ms": 10001}, ["/deadline_ms"], id="a deadline that stalls the commissioner"),
            pytest.param({"/reach": "england"}, ["/reach"], id="an unknown reach"),
            pytest.param({"/home_la": "E12000008"}, ["/home_la"], id="a region as home LA"),
            pytest.param({"/setting_types": []}, ["/setting_types"], id="an empty list of setting types"),
            pytest.param({"/needed_by": "tomorrow"}, ["/needed_by"], id="a date in words"),
            pytest.param({"/needs": DELETE}, ["/needs"], id="no needs list"),
            pytest.param({"/needs/-": "cse-risk"}, ["/needs"], id="a need given twice"),
            pytest.param({"/within_fee_cap_only": "yes"}, ["/within_fee_cap_only"], id="a filter that is no boolean"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("capacity-search-request", edited(search_request(), changes))] == paths


class TestCapacitySearchResponse:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="results from one region, one refusal, one timeout"),
            pytest.param({"/results": [], "/peers/2/region_code": None}, id="nothing found, national peer asked"),
            pytest.param({"/generated_at": DELETE}, id="no generation time"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("capacity-search-response", edited(search_response(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/peers/1/reason": DELETE}, ["/peers/1/reason"], id="a refusal without reason"),
            pytest.param({"/peers/0/outcome": "slow"}, ["/peers/0/outcome"], id="an unknown outcome"),
            pytest.param({"/peers/0/count": DELETE}, ["/peers/0/count"], id="a peer without count"),
            pytest.param({"/results/0/node_id": DELETE}, ["/results/0/node_id"], id="a result naming no node"),
            pytest.param({"/results/0/region_code": None}, ["/results/0/region_code"], id="a result in no region"),
            pytest.param({"/results/0/fee_within_cap": "yes"}, ["/results/0/fee_within_cap"], id="fee check as text"),
            pytest.param({"/results/0/freshness": "expired"}, ["/results/0/freshness"], id="an expired result"),
            pytest.param({"/results/0/distance_miles": -3}, ["/results/0/distance_miles"], id="a negative distance"),
            pytest.param(
                {"/results/1/vacancy/postcode_district": "ME14 1XX"},
                ["/results/1/vacancy/postcode_district"],
                id="a vacancy with a full postcode",
            ),
            pytest.param({"/criteria": {}}, ["/criteria"], id="the search criteria echoed back"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("capacity-search-response", edited(search_response(), changes))] == paths
