"""The fixed tables synthetic capacity is drawn from: where settings are, what they are called, what they
cost and which needs they take. Plausible, not real: see :mod:`registry.capacity.synth`."""

from __future__ import annotations

from schemas.vocabulary import Need, SettingType

# Postcode areas by region, and closer for the LAs of the first RCCs (South East, Greater Manchester, London).
AREAS_BY_REGION = {
    "E12000001": "NE SR DH DL TS",
    "E12000002": "M BL OL SK WN WA L CH CW PR BB FY LA CA",
    "E12000003": "LS BD HX HD WF S DN HU YO HG",
    "E12000004": "NG DE LE LN NN PE",
    "E12000005": "B CV WV WS DY ST TF WR HR SY",
    "E12000006": "CB CM CO IP NR SS LU SG AL",
    "E12000007": "E N NW SE SW W",
    "E12000008": "ME CT TN BN RH GU SL RG OX HP MK PO SO",
    "E12000009": "BS BA GL SN BH DT TA EX TQ PL TR",
}
AREAS_BY_LA = {
    "E06000036": "RG",
    "E06000043": "BN",
    "E06000060": "HP SL",
    "E10000011": "BN TN",
    "E10000014": "SO GU PO RG",
    "E06000046": "PO",
    "E10000016": "ME CT TN DA",
    "E06000035": "ME",
    "E06000042": "MK",
    "E10000025": "OX",
    "E06000044": "PO",
    "E06000038": "RG",
    "E06000039": "SL",
    "E06000045": "SO",
    "E10000030": "GU KT RH",
    "E06000037": "RG",
    "E10000032": "RH BN PO",
    "E06000040": "SL",
    "E06000041": "RG",
    "E08000001": "BL",
    "E08000002": "BL",
    "E08000003": "M",
    "E08000004": "OL",
    "E08000005": "OL",
    "E08000006": "M",
    "E08000007": "SK",
    "E08000008": "SK OL",
    "E08000009": "M",
    "E08000010": "WN",
    "E09000001": "EC",
    "E09000002": "IG RM",
    "E09000003": "N NW EN",
    "E09000004": "DA",
    "E09000005": "NW HA",
    "E09000006": "BR",
    "E09000007": "NW WC",
    "E09000008": "CR",
    "E09000009": "W UB",
    "E09000010": "EN N",
    "E09000011": "SE",
    "E09000012": "E N",
    "E09000013": "W SW",
    "E09000014": "N",
    "E09000015": "HA",
    "E09000016": "RM",
    "E09000017": "UB HA",
    "E09000018": "TW",
    "E09000019": "N EC",
    "E09000020": "W SW",
    "E09000021": "KT",
    "E09000022": "SE SW",
    "E09000023": "SE",
    "E09000024": "SW SM",
    "E09000025": "E",
    "E09000026": "IG",
    "E09000027": "TW SW",
    "E09000028": "SE",
    "E09000029": "SM",
    "E09000030": "E",
    "E09000031": "E",
    "E09000032": "SW",
    "E09000033": "W SW WC",
}

TREES = [
    "Alder",
    "Ash",
    "Aspen",
    "Beech",
    "Birch",
    "Bramble",
    "Cedar",
    "Elm",
    "Hawthorn",
    "Hazel",
    "Heather",
    "Holly",
    "Juniper",
    "Larch",
    "Linden",
    "Maple",
    "Oak",
    "Poplar",
    "Rowan",
    "Willow",
    "Yew",
    "Chestnut",
    "Sycamore",
    "Laurel",
]
PLACES = [
    "field",
    "wood",
    "brook",
    "gate",
    "lea",
    "mead",
    "ridge",
    "side",
    "vale",
    "view",
    "croft",
    "dene",
    "holme",
    "hurst",
    "ford",
    "bank",
]
BUILDINGS = ["House", "Lodge", "Cottage", "Place", "Court", "Barn", "Villa"]
COMPANIES = (
    "Care Ltd",
    "Children's Services Ltd",
    "Residential Care",
    "Young People's Homes",
    "Care Partnership",
)

# (setting type, weight) — the market's mix.
MIX: tuple[tuple[SettingType, float], ...] = (
    (SettingType.childrens_home, 40),
    (SettingType.independent_fostering_agency, 25),
    (SettingType.local_authority_fostering, 12),
    (SettingType.supported_accommodation_category_1, 3),
    (SettingType.supported_accommodation_category_2, 4),
    (SettingType.supported_accommodation_category_3, 3),
    (SettingType.supported_accommodation_category_4, 2),
    (SettingType.residential_special_school, 7),
    (SettingType.residential_family_centre, 4),
)
FEES: dict[SettingType, tuple[int, int]] = {
    SettingType.childrens_home: (4500, 9000),
    SettingType.independent_fostering_agency: (800, 1500),
    SettingType.local_authority_fostering: (400, 800),
    SettingType.supported_accommodation_category_1: (2500, 3500),
    SettingType.supported_accommodation_category_2: (1500, 2600),
    SettingType.supported_accommodation_category_3: (1200, 2200),
    SettingType.supported_accommodation_category_4: (1200, 1800),
    SettingType.residential_special_school: (3000, 7000),
    SettingType.residential_family_centre: (3000, 6000),
}

N = Need
# Chance that a setting of each kind supports each need.
_RESIDENTIAL_NEEDS = {
    N.emotional_behavioural_difficulties: 0.9,
    N.mental_disorders: 0.35,
    N.learning_disability: 0.25,
    N.physical_disability: 0.05,
    N.sensory_impairment: 0.05,
    N.alcohol: 0.15,
    N.drugs: 0.2,
    N.cse_risk: 0.35,
    N.cce_risk: 0.35,
    N.missing_episodes: 0.45,
    N.self_harm: 0.35,
    N.offending: 0.25,
    N.uasc: 0.1,
    N.deprivation_of_liberty: 0.08,
}
_FOSTERING_NEEDS = {
    N.emotional_behavioural_difficulties: 0.55,
    N.mental_disorders: 0.12,
    N.learning_disability: 0.18,
    N.physical_disability: 0.08,
    N.sensory_impairment: 0.06,
    N.alcohol: 0.02,
    N.drugs: 0.02,
    N.cse_risk: 0.12,
    N.cce_risk: 0.1,
    N.missing_episodes: 0.15,
    N.self_harm: 0.1,
    N.offending: 0.06,
    N.uasc: 0.22,
    N.parent_and_child: 0.08,
}
_SUPPORTED_NEEDS = {
    N.emotional_behavioural_difficulties: 0.4,
    N.mental_disorders: 0.15,
    N.learning_disability: 0.1,
    N.alcohol: 0.15,
    N.drugs: 0.2,
    N.cse_risk: 0.3,
    N.cce_risk: 0.35,
    N.missing_episodes: 0.35,
    N.self_harm: 0.2,
    N.offending: 0.3,
    N.uasc: 0.5,
    N.parent_and_child: 0.05,
}
_SCHOOL_NEEDS = {
    N.emotional_behavioural_difficulties: 0.6,
    N.mental_disorders: 0.3,
    N.learning_disability: 0.8,
    N.physical_disability: 0.35,
    N.sensory_impairment: 0.35,
    N.self_harm: 0.1,
    N.deprivation_of_liberty: 0.05,
}
_FAMILY_CENTRE_NEEDS = {
    N.parent_and_child: 1.0,
    N.emotional_behavioural_difficulties: 0.2,
    N.mental_disorders: 0.15,
    N.learning_disability: 0.2,
    N.uasc: 0.1,
}


def need_chances(setting: SettingType) -> dict[Need, float]:
    """How likely a setting of this type is to support each need."""
    if setting is SettingType.childrens_home:
        return _RESIDENTIAL_NEEDS
    if setting in (SettingType.independent_fostering_agency, SettingType.local_authority_fostering):
        return _FOSTERING_NEEDS
    if setting.supported_accommodation:
        return _SUPPORTED_NEEDS
    if setting is SettingType.residential_special_school:
        return _SCHOOL_NEEDS
    return _FAMILY_CENTRE_NEEDS
