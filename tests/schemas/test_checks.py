"""Value checks: ECMA-262 patterns, decimal multipleOf, finite numbers and the asserted formats."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import validate
from schemas.checks import FORMAT_CHECKER, ecma_regex
from tests.schemas.examples import edited, fee_cap, search_request, search_response, vacancy


class TestEcmaRegex:
    @pytest.mark.parametrize(
        ("pattern", "text", "matches"),
        [
            pytest.param("^E12[0-9]{6}$", "E12000008", True, id="an anchored code matches"),
            pytest.param("^E12[0-9]{6}$", "E12000008\n", False, id="dollar does not match before a final newline"),
            pytest.param(r"^E12\d{6}$", "E12000008", True, id="backslash d matches ASCII digits"),
            pytest.param(
                r"^E12\d{6}$", "E12\uff10\uff10\uff10\uff10\uff10\uff18", False, id="backslash d ignores other digits"
            ),
            pytest.param(r"^\w+$", "caf\u00e9", False, id="backslash w is ASCII"),
            pytest.param("^[$]+$", "$$", True, id="dollar in a class stays literal"),
            pytest.param(r"^a\$$", "a$", True, id="an escaped dollar stays literal"),
            pytest.param("^P(?!$)", "P", False, id="dollar in a lookahead is end of input"),
            pytest.param("^[^\\u0000-\\u001f]+$", "one line", True, id="unicode escapes are understood"),
            pytest.param("^[^\\u0000-\\u001f]+$", "two\nlines", False, id="a control character is caught"),
        ],
    )
    def test_matches_as_ecma_262_does(self, pattern, text, matches):
        assert bool(ecma_regex(pattern).search(text)) is matches


class TestMultipleOf:
    @settings(database=None, max_examples=300)
    @given(pence=st.integers(min_value=0, max_value=10_000_000))
    def test_accepts_every_whole_penny_amount(self, pence):
        # Parsed from JSON text, as a request body would be.
        fee = json.loads(f"{pence // 100}.{pence % 100:02d}")
        assert validate("vacancy", edited(vacancy(), {"/weekly_fee": fee})) == []

    @pytest.mark.parametrize(
        "fee",
        [
            pytest.param(0.07, id="seven pence"),
            pytest.param(1234.57, id="pounds and pence"),
            pytest.param(5800, id="an integer"),
            pytest.param(1e-2, id="exponent notation"),
        ],
    )
    def test_accepts_amounts_in_pence(self, fee):
        assert validate("vacancy", edited(vacancy(), {"/weekly_fee": fee})) == []

    @pytest.mark.parametrize(
        "fee",
        [
            pytest.param(0.001, id="a tenth of a penny"),
            pytest.param(10.005, id="half a penny"),
            pytest.param(5800.571, id="pounds and a fraction of a penny"),
        ],
    )
    def test_refuses_fractions_of_a_penny(self, fee):
        assert [e.message for e in validate("vacancy", edited(vacancy(), {"/weekly_fee": fee}))] == [
            "must be a multiple of 0.01"
        ]


class TestChecksThroughReferences:
    """A schema that ``$ref``s another (a search response holds vacancies) checks it with the same rules."""

    def test_a_penny_amount_inside_a_referenced_schema_is_a_multiple_of_a_penny(self):
        response = edited(search_response(), {"/results/0/vacancy/weekly_fee": 1234.57})
        assert validate("capacity-search-response", response) == []

    def test_a_fraction_of_a_penny_inside_it_is_still_refused(self):
        response = edited(search_response(), {"/results/0/vacancy/weekly_fee": 10.005})
        assert [(e.path, e.message) for e in validate("capacity-search-response", response)] == [
            ("/results/0/vacancy/weekly_fee", "must be a multiple of 0.01")
        ]

    def test_its_patterns_are_ecma_262_patterns(self):
        # Python's "$" matches before a final newline; ECMA-262's does not.
        response = edited(search_response(), {"/results/0/vacancy/la_code": "E10000016\n"})
        assert [e.path for e in validate("capacity-search-response", response)] == ["/results/0/vacancy/la_code"]


class TestNumbers:
    @pytest.mark.parametrize(
        "text",
        [pytest.param("NaN", id="NaN"), pytest.param("Infinity", id="infinity"), pytest.param("-Infinity", id="minus")],
    )
    def test_refuses_what_json_loads_accepts_but_json_is_not(self, text):
        # Python's json accepts these; they pass min/max (NaN compares false) and cannot be canonicalised.
        request = edited(search_request(), {"/max_weekly_fee": json.loads(text), "/age": json.loads(text)})
        errors = validate("capacity-search-request", request)
        assert [(e.path, e.message) for e in errors] == [
            ("/age", "must be an integer"),
            ("/max_weekly_fee", "must be a number"),
        ]

    @pytest.mark.parametrize(
        ("age", "valid"),
        [
            pytest.param(15, True, id="an integer"),
            pytest.param(15.0, True, id="an integral float (JSON Schema counts it)"),
            pytest.param(15.5, False, id="a fraction"),
            pytest.param(True, False, id="a boolean"),
            pytest.param("15", False, id="a string"),
        ],
    )
    def test_knows_an_integer(self, age, valid):
        assert (validate("capacity-search-request", edited(search_request(), {"/age": age})) == []) is valid


class TestFormats:
    @pytest.mark.parametrize(
        ("format_name", "value", "valid"),
        [
            ("date", "2024-02-29", True),
            ("date", "2025-02-29", False),
            ("date", "2025-1-01", False),
            ("date", "20250101", False),
            ("date", "2025-W01-1", False),
            ("date-time", "2025-05-01T09:00:00Z", True),
            ("date-time", "2025-05-01T09:00:00.123456789+01:00", True),
            ("date-time", "2016-12-31T23:59:60Z", True),
            ("date-time", "2025-05-01T09:00:00", False),
            ("date-time", "2025-05-01 09:00:00Z", False),
            ("date-time", "2025-13-01T00:00:00Z", False),
            ("date-time", "2025-05-01T24:00:00Z", False),
            ("date-time", "2025-05-01T09:00:00+24:00", False),
            ("uri", "https://rcc-se.example.org/rcc", True),
            ("uri", "urn:rcc-registry:problem:not-found", True),
            ("uri", "http://", False),
            ("uri", "https://exa mple.org", False),
            ("uri", "rcc-se.example.org", False),
            ("uri", "https://ex\u00e4mple.org", False),
            ("uri-reference", "/federation/v1/ping", True),
            ("uri-reference", "about:blank", True),
            ("uri-reference", "a b", False),
            ("email", "dpo@kent.gov.uk", True),
            ("email", "dpo@localhost", False),
            ("email", "two@at@kent.gov.uk", False),
            ("email", "d po@kent.gov.uk", False),
            ("duration", "P6Y", True),
            ("duration", "P18M", True),
            ("duration", "P2W", True),
            ("duration", "PT36H", True),
            ("duration", "P1Y2M3DT4H5M6S", True),
            ("duration", "P", False),
            ("duration", "PT", False),
            ("duration", "P1YT", False),
            ("duration", "P1Y2W", False),
            ("duration", "P1.5Y", False),
            ("duration", "6Y", False),
        ],
        ids=lambda value: str(value),
    )
    def test_asserts_the_format(self, format_name, value, valid):
        assert FORMAT_CHECKER.conforms(value, format_name) is valid

    @pytest.mark.parametrize("format_name", ["date", "date-time", "uri", "uri-reference", "email", "duration"])
    def test_leaves_other_types_to_the_type_keyword(self, format_name):
        assert FORMAT_CHECKER.conforms(42, format_name)

    def test_checks_dates_through_a_real_document(self):
        errors = validate("fee-cap", edited(fee_cap(), {"/effective_from": "2025-02-30"}))
        assert [(e.path, e.message) for e in errors] == [("/effective_from", "must be a date, YYYY-MM-DD")]
