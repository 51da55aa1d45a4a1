from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas
from registry.capacity import models
from registry.capacity.models import (
    SearchRequest,
    VacancyDocument,
)
from registry.capacity.secure_models import (
    SecureHomeDocument,
)
from tests.registry.capacity.factories import iso, search_request, secure_home, vacancy

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def paths(error: ValidationError) -> list[str]:
    return ["/" + "/".join(str(part) for part in e["loc"]) for e in error.errors()]


class TestAgreementWithTheSchemas:
    @pytest.mark.parametrize(
        ("pattern", "definition"),
        [
            (models.IDENTIFIER_PATTERN, "identifier"),
            (models.URN_PATTERN, "ofsted_urn"),
            (models.LA_CODE_PATTERN, "la_code"),
            (models.POSTCODE_DISTRICT_PATTERN, "postcode_district"),
            (models.SHA256_PATTERN, "sha256_hex"),
        ],
    )
    def test_patterns_are_the_common_schema_patterns(self, pattern: str, definition: str) -> None:
        assert pattern == schemas.load("common")["$defs"][definition]["pattern"]

    def test_the_line_pattern_means_the_same_as_the_schema(self) -> None:
        schema_pattern = schemas.load("common")["$defs"]["line"]["pattern"]
        assert pattern_chars(models.LINE_PATTERN) == pattern_chars(schema_pattern)

    def test_the_factory_documents_are_valid_both_ways(self) -> None:
        assert schemas.validate("vacancy", VacancyDocument.model_validate(vacancy(NOW)).document()) == []
        assert schemas.validate("secure-home", SecureHomeDocument.model_validate(secure_home(NOW)).document()) == []
        assert schemas.validate("capacity-search-request", search_request(NOW)) == []
        assert SearchRequest.model_validate(search_request(NOW)).age == 14


def pattern_chars(pattern: str) -> list[bool]:
    compiled = re.compile(pattern)
    return [bool(compiled.match(f"a{chr(code)}b")) for code in range(0x00, 0x80)]


SHAPE, DOMAIN = True, False  # does the JSON Schema judge this rule too (a shape), or only the model (a domain fact)?


class TestVacancyRules:
    @pytest.mark.parametrize(
        ("changes", "where", "shape"),
        [
            ({"urn": "SC12345"}, "/urn", SHAPE),
            ({"urn": "12345678"}, "/urn", SHAPE),
            ({"la_code": "E12000008"}, "/la_code", SHAPE),
            ({"la_code": "E06000999"}, "/la_code", DOMAIN),
            ({"la_code": "E10000021"}, "/la_code", DOMAIN),  # Northamptonshire, abolished in 2021
            ({"postcode_district": "ME14 5AB"}, "/postcode_district", SHAPE),
            ({"age_range": {"min_age": 12, "max_age": 10}}, "/age_range", DOMAIN),
            ({"sexes": []}, "/sexes", SHAPE),
            ({"needs_supported": ["uasc", "uasc"]}, "/needs_supported", SHAPE),
            ({"needs_supported": ["arson"]}, "/needs_supported/0", SHAPE),
            ({"beds_free": "2"}, "/beds_free", SHAPE),
            ({"weekly_fee": "5000"}, "/weekly_fee", SHAPE),
            ({"weekly_fee": 5000.001}, "/weekly_fee", SHAPE),
            ({"weekly_fee": 100000.01}, "/weekly_fee", SHAPE),
            ({"as_of": "2026-03-01T09:00:00"}, "/as_of", SHAPE),
            ({"valid_until": iso(datetime(2026, 3, 1, tzinfo=UTC))}, "/", DOMAIN),
            ({"provider_name": "Line one\nline two"}, "/provider_name", SHAPE),
            ({"address": "1 High Street"}, "/address", SHAPE),
            (
                {"setting_type": "supported-accommodation-category-2", "age_range": {"min_age": 15, "max_age": 17}},
                "/",
                SHAPE,
            ),
        ],
    )
    def test_a_bad_vacancy_is_refused_at_its_path(self, changes: dict[str, Any], where: str, shape: bool) -> None:
        document = vacancy(NOW, **changes)
        with pytest.raises(ValidationError) as caught:
            VacancyDocument.model_validate(document)
        assert where in paths(caught.value)
        if shape:
            assert schemas.validate("vacancy", document) != [], "the model accepts what the schema refuses"

    def test_fees_are_kept_to_the_penny(self) -> None:
        for fee in (0.07, 1234.57, 99999.99, 5000):
            assert models.pence_to_fee(models.fee_to_pence(fee)) == fee


class TestSecureHomeRules:
    @pytest.mark.parametrize(
        "changes",
        [
            {"welfare_beds": 8},
            {"beds_free": 13},
            {"beds_free_by_sex": {"female": 4, "male": 0}},
            {"beds_free_by_sex": {"female": 1, "male": 1}},
            {"age_range": {"min_age": 9, "max_age": 17}},
        ],
        ids=["places-overbooked", "more-free-than-places", "sex-count-over-free", "free-bed-for-nobody", "under-10"],
    )
    def test_counts_that_do_not_add_up_are_refused(self, changes: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            SecureHomeDocument.model_validate(secure_home(NOW, **changes))


class TestSearchRequest:
    @pytest.mark.parametrize("member", ["name", "date_of_birth", "dob", "child_id", "upn", "nhs_number", "postcode"])
    def test_identity_like_members_are_refused(self, member: str) -> None:
        with pytest.raises(ValidationError) as caught:
            SearchRequest.model_validate(search_request(NOW, **{member: "x"}))
        assert paths(caught.value) == [f"/{member}"]

    @pytest.mark.parametrize(
        ("changes", "where"),
        [
            ({"age": 18}, "/age"),
            ({"age": "14"}, "/age"),
            ({"sex": "unknown"}, "/sex"),
            ({"purpose": "national-statistics"}, "/purpose"),
            ({"home_la": "E10000021"}, "/home_la"),
            ({"setting_types": []}, "/setting_types"),
            ({"deadline_ms": 50}, "/deadline_ms"),
        ],
    )
    def test_bad_criteria_are_refused(self, changes: dict[str, Any], where: str) -> None:
        with pytest.raises(ValidationError) as caught:
            SearchRequest.model_validate(search_request(NOW, **changes))
        assert paths(caught.value) == [where]


def decimal_pence(value: float) -> bool:
    """Whole pence as the JSON Schema means it: the number's decimal text is a multiple of 0.01."""
    return Decimal(str(value)) % Decimal("0.01") == 0


class TestPence:
    @settings(database=None, max_examples=500)
    @given(pence=st.integers(min_value=0, max_value=10_000_000))
    def test_every_amount_in_whole_pence_is_accepted_and_converts_exactly(self, pence: int) -> None:
        fee = json.loads(f"{pence // 100}.{pence % 100:02d}")  # as a request body spells it
        document = VacancyDocument.model_validate(vacancy(NOW, weekly_fee=fee))
        assert models.fee_to_pence(document.weekly_fee) == pence == int(Decimal(str(fee)) * 100)

    @settings(database=None, max_examples=500)
    @given(
        value=st.one_of(
            st.floats(min_value=0, max_value=models.MAX_WEEKLY_FEE),
            st.integers(min_value=0, max_value=100_000_000).map(lambda n: n / 1000),
            st.integers(min_value=0, max_value=10_000_000).map(lambda n: n / 100 + 1e-9),
        )
    )
    def test_a_fee_is_refused_exactly_when_its_decimal_text_is_not_whole_pence(self, value: float) -> None:
        if decimal_pence(value):
            assert VacancyDocument.model_validate(vacancy(NOW, weekly_fee=value)).weekly_fee == value
        else:
            with pytest.raises(ValidationError) as refused:
                VacancyDocument.model_validate(vacancy(NOW, weekly_fee=value))
            assert paths(refused.value) == ["/weekly_fee"]
