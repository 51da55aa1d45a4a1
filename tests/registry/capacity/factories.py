"""Valid capacity documents for tests, each a fresh dict built relative to a given clock; all synthetic."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

KENT, MEDWAY, BRIGHTON, SURREY, MANCHESTER = "E10000016", "E06000035", "E06000043", "E10000030", "E08000003"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def vacancy(now: datetime, vacancy_id: str = "vac-1", **overrides: Any) -> dict[str, Any]:
    """A children's home vacancy in Kent, confirmed an hour before ``now``, valid for two weeks."""
    document: dict[str, Any] = {
        "id": vacancy_id,
        "urn": "SC123456",
        "provider_name": "Testwood Care Ltd (synthetic)",
        "setting_name": "Testwood House",
        "setting_type": "childrens-home",
        "la_code": KENT,
        "postcode_district": "ME14",
        "age_range": {"min_age": 10, "max_age": 17},
        "sexes": ["female", "male"],
        "needs_supported": ["emotional-behavioural-difficulties"],
        "beds_free": 1,
        "weekly_fee": 5000,
        "available_from": (now - timedelta(days=1)).date().isoformat(),
        "as_of": iso(now - timedelta(hours=1)),
        "valid_until": iso(now + timedelta(days=14)),
    }
    document.update(overrides)
    return document


def secure_home(now: datetime, urn: str = "SC900001", **overrides: Any) -> dict[str, Any]:
    """A 12-place secure children's home in Kent with three beds free."""
    document: dict[str, Any] = {
        "urn": urn,
        "name": "Testmead Secure Children's Home (synthetic)",
        "la_code": KENT,
        "approved_places": 12,
        "welfare_beds": 7,
        "justice_beds": 5,
        "beds_free": 3,
        "beds_free_by_sex": {"female": 2, "male": 2},
        "age_range": {"min_age": 10, "max_age": 17},
        "as_of": iso(now - timedelta(hours=2)),
        "valid_until": iso(now + timedelta(days=2)),
    }
    document.update(overrides)
    return document


def search_request(now: datetime, **overrides: Any) -> dict[str, Any]:
    """A search for a 14-year-old boy from Kent with emotional and behavioural difficulties."""
    request: dict[str, Any] = {
        "age": 14,
        "sex": "male",
        "needs": ["emotional-behavioural-difficulties"],
        "home_la": KENT,
        "needed_by": (now + timedelta(days=7)).date().isoformat(),
        "reach": "region",
        "purpose": "placement-search",
    }
    request.update(overrides)
    return request
