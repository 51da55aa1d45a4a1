"""Valid example documents, one factory per schema, each returning a fresh dict that tests may change freely.

The organisations, homes and figures are synthetic; codes (ONS, SSDA903) are real so the examples read
like the documents the product will hold. :data:`VALID` maps every document schema to its factory, and
:func:`edited` makes the one-change variants that invalid-example tables are built from.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Document = dict[str, Any]

SE, GM, LONDON, NATIONAL = "rcc-south-east", "rcc-greater-manchester", "rcc-london", "rcc-national"
SE_REGION, NW_REGION, LONDON_REGION = "E12000008", "E12000002", "E12000007"
KENT, WEST_SUSSEX, BRIGHTON, MANCHESTER = "E10000016", "E10000032", "E06000043", "E08000003"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk(seed: int = 1, *, status: str | None = "active") -> Document:
    """A real Ed25519 public JWK, derived from ``seed`` so examples are stable; ``kid`` is its RFC 7638 thumbprint."""
    public = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key()
    x = _b64url(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    thumbprint_input = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    key: Document = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": _b64url(hashlib.sha256(thumbprint_input.encode()).digest()),
        "use": "sig",
        "alg": "EdDSA",
    }
    if status is not None:
        key["status"] = status
    return key


def jwks() -> Document:
    return {"keys": [jwk(1), jwk(2, status="retired")]}


def descriptor() -> Document:
    return {
        "node_id": SE,
        "name": "South East Regional Care Cooperative",
        "kind": "regional",
        "region_code": SE_REGION,
        "base_url": "https://rcc-se.example.org",
        "jwks": jwks(),
        "datasets": ["capacity.vacancies", "capacity.secure-beds", "publications.fee-caps"],
        "software_version": "0.1.0",
        "issued_at": "2025-05-01T09:00:00Z",
    }


def directory() -> Document:
    return {
        "serial": 42,
        "issued_at": "2025-05-01T00:00:00Z",
        "expires_at": "2025-05-08T00:00:00Z",
        "operator": NATIONAL,
        "nodes": [
            {
                "node_id": SE,
                "name": "South East Regional Care Cooperative",
                "kind": "regional",
                "region_code": SE_REGION,
                "base_url": "https://rcc-se.example.org",
                "keys": [jwk(1), jwk(2, status="retired")],
                "neighbours": ["E12000004", "E12000005", "E12000006", "E12000007", "E12000009"],
            },
            {
                "node_id": GM,
                "name": "Greater Manchester Regional Care Cooperative",
                "kind": "regional",
                "region_code": NW_REGION,
                "base_url": "https://rcc-gm.example.org/rcc",
                "keys": [jwk(3)],
                "neighbours": ["E12000001", "E12000003", "E12000004", "E12000005"],
                "valid_from": "2025-04-01T00:00:00Z",
                "valid_until": "2026-03-31T23:59:59+01:00",
            },
            {
                "node_id": NATIONAL,
                "name": "National secure welfare coordination",
                "kind": "national",
                "region_code": None,
                "base_url": "http://127.0.0.1:8004",
                "keys": [jwk(4)],
                "neighbours": [],
            },
        ],
    }


def _party(node_id: str, organisation: str) -> Document:
    return {
        "node_id": node_id,
        "organisation": organisation,
        "signatory_role": "Director of Children's Services",
        "contacts": {
            "data_protection_officer": {"name": "Data Protection Officer", "email": f"dpo@{node_id}.example.org"},
            "operational": {"name": "Sufficiency lead", "email": f"sufficiency@{node_id}.example.org"},
        },
    }


def agreement() -> Document:
    """A two-party cross-border MoU: each region lets the other search its vacancies."""
    return {
        "id": "se-gm-placement-search",
        "version": 1,
        "title": "South East and Greater Manchester placement search memorandum",
        "kind": "memorandum-of-understanding",
        "parties": [
            _party(SE, "South East Regional Care Cooperative"),
            _party(GM, "Greater Manchester Regional Care Cooperative"),
        ],
        "grants": [
            {"provider": SE, "recipients": [GM], "datasets": ["capacity.vacancies"], "purposes": ["placement-search"]},
            {
                "provider": GM,
                "recipients": [SE],
                "datasets": ["capacity.vacancies", "statistics.looked-after"],
                "purposes": ["placement-search", "sufficiency-planning"],
                "fields": ["setting_type", "la_code", "age_range.min_age"],
                "min_cell_size": 10,
            },
        ],
        "lawful_basis": {
            "article_6": "public-task",
            "statutory_duties": ["Children Act 1989 s22G (sufficiency)", "Children Act 1989 s22C (placements)"],
        },
        "data_items": [
            {
                "dataset": "capacity.vacancies",
                "description": "Vacancies: setting type, LA, postcode district, ages, needs supported, weekly fee.",
                "personal_data": False,
                "special_category": False,
            }
        ],
        "retention": "P1Y",
        "security_measures": ["Signed and replay-proof node-to-node requests", "Audit log with signed tree heads"],
        "valid_from": "2025-04-01",
        "valid_until": "2027-03-31",
        "review_by": "2026-03-31",
        "text": "# Memorandum of understanding\n\nThe parties share placement vacancies to find children homes.\n",
    }


def agreement_event() -> Document:
    return {
        "agreement": "se-gm-placement-search",
        "version": 1,
        "document_sha256": DIGEST,
        "type": "signed",
        "by": SE,
        "at": "2025-04-02T10:15:00.250Z",
    }


def vacancy() -> Document:
    return {
        "id": "oakwood-2025-05-a",
        "urn": "SC123456",
        "provider_name": "Oakwood Care Ltd",
        "setting_name": "Oakwood House",
        "setting_type": "childrens-home",
        "la_code": KENT,
        "postcode_district": "ME14",
        "age_range": {"min_age": 11, "max_age": 17},
        "sexes": ["female", "male"],
        "needs_supported": ["emotional-behavioural-difficulties", "cse-risk", "missing-episodes"],
        "beds_free": 1,
        "weekly_fee": 5800.57,
        "framework": {"id": "se-residential-2025", "version": 1},
        "available_from": "2025-05-12",
        "as_of": "2025-05-01T08:00:00Z",
        "valid_until": "2025-05-15T08:00:00Z",
    }


def secure_home() -> Document:
    return {
        "urn": "1234567",
        "name": "Aldwick Secure Children's Home",
        "la_code": WEST_SUSSEX,
        "approved_places": 16,
        "welfare_beds": 8,
        "justice_beds": 8,
        "beds_free": 2,
        "beds_free_by_sex": {"female": 1, "male": 2},
        "age_range": {"min_age": 10, "max_age": 17},
        "as_of": "2025-05-01T07:00:00Z",
        "valid_until": "2025-05-02T07:00:00Z",
    }


def search_request() -> Document:
    return {
        "age": 15,
        "sex": "female",
        "needs": ["cse-risk", "self-harm"],
        "setting_types": ["childrens-home", "independent-fostering-agency"],
        "home_la": KENT,
        "needed_by": "2025-05-20",
        "max_weekly_fee": 6500,
        "reach": "neighbours",
        "purpose": "placement-search",
        "deadline_ms": 2000,
    }


def search_response() -> Document:
    return {
        "results": [
            {
                "node_id": SE,
                "region_code": SE_REGION,
                "vacancy": vacancy(),
                "distance_miles": 12.4,
                "fee_within_cap": True,
                "freshness": "fresh",
            },
            {
                "node_id": SE,
                "region_code": SE_REGION,
                "vacancy": vacancy(),
                "distance_miles": 40,
                "fee_within_cap": None,
                "freshness": "stale",
            },
        ],
        "peers": [
            {"node_id": SE, "region_code": SE_REGION, "outcome": "ok", "latency_ms": 3.2, "count": 2},
            {
                "node_id": LONDON,
                "region_code": LONDON_REGION,
                "outcome": "refused",
                "reason": "no-agreement",
                "latency_ms": 18,
                "count": 0,
            },
            {"node_id": GM, "region_code": NW_REGION, "outcome": "timeout", "latency_ms": 2000, "count": 0},
        ],
        "generated_at": "2025-05-01T09:00:02Z",
    }


def framework() -> Document:
    return {
        "title": "South East residential placements dynamic purchasing system 2025",
        "owner": SE,
        "procurement_route": "dynamic-purchasing-system",
        "lots": [
            {
                "number": 1,
                "title": "Children's homes: standard and enhanced needs",
                "setting_types": ["childrens-home"],
                "need_levels": ["standard", "enhanced"],
                "age_bands": [{"min_age": 8, "max_age": 17}],
                "providers": [
                    {
                        "urn": "SC123456",
                        "name": "Oakwood Care Ltd",
                        "rate_card": [
                            {"setting_type": "childrens-home", "need_level": "standard", "weekly_fee": 5200},
                            {"setting_type": "childrens-home", "need_level": "enhanced", "weekly_fee": 6100.5},
                        ],
                    }
                ],
            },
            {
                "number": 2,
                "title": "Supported accommodation for 16 and 17 year olds",
                "setting_types": ["supported-accommodation-category-1", "supported-accommodation-category-2"],
                "need_levels": ["standard"],
                "age_bands": [{"min_age": 16, "max_age": 17}],
                "providers": [],
            },
        ],
        "effective_from": "2025-04-01",
        "effective_to": "2029-03-31",
        "reopening_dates": ["2025-10-01", "2026-04-01"],
        "call_off": {"regions": [SE_REGION], "las": [BRIGHTON]},
        "synthetic": True,
    }


def placement_protocol() -> Document:
    return {
        "title": "South East protocol for placements into another authority's area",
        "owner": SE,
        "parties": {"nodes": [SE], "las": [KENT, WEST_SUSSEX, BRIGHTON]},
        "scope": {"placements": ["within-region", "across-regions"]},
        "notification_duties": [
            {
                "notify": "host-authority",
                "duty_holder": "placing-authority",
                "information": "Written notice of the placement, with the care plan summary.",
                "timing": {"when": "before-placement", "working_days": 0},
                "emergency_timing": {"when": "after-placement", "working_days": 5},
                "regulations": ["Care Planning, Placement and Case Review (England) Regulations 2010, reg 13(4)"],
            },
            {
                "notify": "host-health",
                "duty_holder": "placing-authority",
                "information": "Notice to the host integrated care board.",
                "timing": {"when": "after-placement", "working_days": 5},
                "regulations": ["Care Planning, Placement and Case Review (England) Regulations 2010, reg 13"],
            },
            {
                "notify": "host-authority",
                "duty_holder": "provider",
                "information": "Admission and discharge of every child.",
                "timing": {"when": "after-placement", "working_days": 1},
                "regulations": ["Children's Homes (England) Regulations 2015, reg 41"],
            },
        ],
        "distance_placements": {
            "approval_by": "Director of Children's Services",
            "consult_host_authority": True,
            "definition": "Not within the home local authority or an authority adjoining it.",
            "regulations": ["Care Planning, Placement and Case Review (England) Regulations 2010, reg 11"],
        },
        "dispute_resolution": {
            "steps": ["Heads of service", "Assistant directors", "Directors of children's services"],
            "working_days_per_step": 10,
        },
        "fee_cap": {"id": "se-fee-caps", "version": 3, "sha256": DIGEST},
        "effective_from": "2025-04-01",
        "synthetic": True,
    }


def fee_cap() -> Document:
    return {
        "title": "South East fee caps 2025-26 (synthetic)",
        "owner": SE,
        "covers": {"region_code": SE_REGION},
        "effective_from": "2025-04-01",
        "effective_to": "2026-03-31",
        "currency": "GBP",
        "caps": [
            {"setting_type": "childrens-home", "need_level": "standard", "max_weekly_fee": 5500},
            {"setting_type": "childrens-home", "need_level": "complex", "max_weekly_fee": 7250.75},
            {"setting_type": "independent-fostering-agency", "need_level": "standard", "max_weekly_fee": 950.07},
        ],
        "uplift": {"index": "cpi", "applies_on": "2026-04-01"},
        "exceptions": {
            "process": "A placement above the cap needs a written case to the regional panel within 2 working days.",
            "approver": "Regional commissioning panel",
            "contact": "commissioning@rcc-south-east.example.org",
        },
        "synthetic": True,
    }


def tree_head() -> Document:
    return {
        "node_id": SE,
        "tree_size": 1024,
        "root_hash": DIGEST,
        "timestamp": "2025-05-01T09:00:00.123Z",
    }


def problem() -> Document:
    return {
        "type": "urn:rcc-registry:problem:validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "the request does not match what this route accepts",
        "code": "validation-failed",
        "errors": [
            {"path": "/grants/0/datasets/1", "message": "must be one of ..."},
            {"path": "query:limit", "message": "x"},
        ],
    }


VALID: Mapping[str, Callable[[], Document]] = {
    "agreement": agreement,
    "agreement-event": agreement_event,
    "capacity-search-request": search_request,
    "capacity-search-response": search_response,
    "descriptor": descriptor,
    "directory": directory,
    "fee-cap": fee_cap,
    "framework": framework,
    "jwks": jwks,
    "placement-protocol": placement_protocol,
    "problem": problem,
    "secure-home": secure_home,
    "tree-head": tree_head,
    "vacancy": vacancy,
}
"""Every document schema → a factory for a valid example (the ``$defs`` libraries have none)."""

DELETE = object()
"""Value for :func:`edited` that removes the member instead of setting it."""


def edited(document: Document, changes: Mapping[str, object]) -> Document:
    """A deep copy of ``document`` with each RFC 6901 pointer set to its value (or removed, for DELETE).

    A pointer ending in ``-`` appends to an array.
    """
    result = copy.deepcopy(document)
    for pointer, value in changes.items():
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            if value is DELETE:
                del target[int(last)]
            elif last == "-":
                target.append(copy.deepcopy(value))
            else:
                target[int(last)] = copy.deepcopy(value)
        elif value is DELETE:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)
    return result
