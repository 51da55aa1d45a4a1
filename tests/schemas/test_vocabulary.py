"""The closed vocabularies: the Python enums and vocabulary.schema.json can never drift apart."""

from __future__ import annotations

import re

import pytest

from schemas import load
from schemas.vocabulary import SSDA903, VOCABULARIES, Need, SettingType, setting_types_for

JSON_DEFS = load("vocabulary")["$defs"]


class TestVocabularies:
    def test_python_and_json_name_the_same_vocabularies(self):
        assert list(VOCABULARIES) == list(JSON_DEFS)

    @pytest.mark.parametrize("name", list(VOCABULARIES))
    def test_each_enum_lists_exactly_the_json_values_in_order(self, name):
        assert [member.value for member in VOCABULARIES[name]] == JSON_DEFS[name]["enum"]

    @pytest.mark.parametrize("name", list(VOCABULARIES))
    def test_values_are_lowercase_kebab_case(self, name):
        pattern = r"[a-z]+\.[a-z-]+" if name == "dataset" else r"[a-z0-9]+(-[a-z0-9]+)*"
        assert all(re.fullmatch(pattern, member.value) for member in VOCABULARIES[name])

    @pytest.mark.parametrize("name", list(VOCABULARIES))
    def test_member_names_spell_their_values(self, name):
        assert all(m.name == re.sub(r"[.-]", "_", m.value) for m in VOCABULARIES[name])


class TestSettingType:
    def test_json_carries_the_same_ssda903_codes(self):
        expected = {
            setting.value: {"place": list(codes.place), "place_provider": list(codes.place_provider)}
            for setting, codes in SSDA903.items()
        }
        assert JSON_DEFS["setting_type"]["x-ssda903"] == expected

    @pytest.mark.parametrize(
        ("setting", "place", "place_provider"),
        [
            (SettingType.childrens_home, ("K2",), ()),
            (SettingType.secure_childrens_home, ("K1",), ()),
            (SettingType.independent_fostering_agency, ("U4", "U5", "U6"), ("PR4", "PR5")),
            (SettingType.local_authority_fostering, ("U4", "U5", "U6"), ("PR1", "PR2")),
            (SettingType.supported_accommodation_category_3, ("K3", "H5"), ()),
            (SettingType.residential_special_school, ("S1",), ()),
            (SettingType.residential_family_centre, ("R3",), ()),
        ],
        ids=str,
    )
    def test_maps_to_its_ssda903_codes(self, setting, place, place_provider):
        assert (setting.ssda903.place, setting.ssda903.place_provider) == (place, place_provider)

    def test_every_setting_type_has_codes(self):
        assert set(SSDA903) == set(SettingType)

    @pytest.mark.parametrize(
        ("place", "place_provider", "expected"),
        [
            pytest.param("K2", None, {SettingType.childrens_home}, id="a children's home"),
            pytest.param(
                "K1", "PR4", {SettingType.secure_childrens_home}, id="provider ignored where it tells nothing"
            ),
            pytest.param("U6", "PR4", {SettingType.independent_fostering_agency}, id="private fostering is an IFA"),
            pytest.param("U4", "PR1", {SettingType.local_authority_fostering}, id="own-LA fostering"),
            pytest.param(
                "U5",
                None,
                {SettingType.independent_fostering_agency, SettingType.local_authority_fostering},
                id="fostering without a provider is ambiguous",
            ),
            pytest.param(
                "H5",
                None,
                {s for s in SettingType if s.supported_accommodation},
                id="supported accommodation never says its category",
            ),
            pytest.param("U1", None, set(), id="family and friends care is no market setting"),
            pytest.param("Z1", None, set(), id="other placements map to nothing"),
        ],
    )
    def test_is_found_from_an_episode(self, place, place_provider, expected):
        assert set(setting_types_for(place, place_provider)) == expected

    def test_knows_which_types_are_supported_accommodation(self):
        assert [s.value[-1] for s in SettingType if s.supported_accommodation] == ["1", "2", "3", "4"]


class TestNeed:
    def test_ofsted_registration_categories_are_the_seven_in_the_regulations(self):
        assert {n.value for n in Need if n.ofsted_registration_category} == {
            "emotional-behavioural-difficulties",
            "mental-disorders",
            "learning-disability",
            "physical-disability",
            "sensory-impairment",
            "alcohol",
            "drugs",
        }
