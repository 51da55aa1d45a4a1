"""Example publication documents for the register's tests: one valid factory per kind, owned by a given node.

Synthetic organisations and figures; real ONS codes. Fractional amounts are chosen so Python's JSON and
RFC 8785 print them identically, which lets the independent verifier in ``tests.support.jose`` check them.
"""

from __future__ import annotations

import copy
from typing import Any

Document = dict[str, Any]

OWNER = "rcc-test"
SE_REGION, NW_REGION = "E12000008", "E12000002"
KENT, WEST_SUSSEX, BRIGHTON, SURREY = "E10000016", "E10000032", "E06000043", "E10000030"
MANCHESTER, CAMDEN = "E08000003", "E09000007"


def fee_cap(owner: str = OWNER, **changes: Any) -> Document:
    document: Document = {
        "title": "South East fee caps 2025-26 (synthetic)",
        "owner": owner,
        "covers": {"region_code": SE_REGION},
        "effective_from": "2025-04-01",
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
        },
        "synthetic": True,
    }
    document.update(changes)
    return document


def framework(owner: str = OWNER, **changes: Any) -> Document:
    document: Document = {
        "title": "South East residential placements dynamic purchasing system (synthetic)",
        "owner": owner,
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
            }
        ],
        "effective_from": "2025-04-01",
        "effective_to": "2029-03-31",
        "reopening_dates": ["2025-10-01"],
        "call_off": {"regions": [SE_REGION], "las": [BRIGHTON]},
        "synthetic": True,
    }
    document.update(changes)
    return document


def placement_protocol(owner: str = OWNER, **changes: Any) -> Document:
    document: Document = {
        "title": "South East protocol for placements into another authority's area (synthetic)",
        "owner": owner,
        "parties": {"nodes": [owner], "las": [KENT, WEST_SUSSEX, BRIGHTON]},
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
        ],
        "distance_placements": {
            "approval_by": "Director of Children's Services",
            "consult_host_authority": True,
            "regulations": ["Care Planning, Placement and Case Review (England) Regulations 2010, reg 11"],
        },
        "dispute_resolution": {"steps": ["Heads of service", "Directors of children's services"]},
        "effective_from": "2025-04-01",
        "synthetic": True,
    }
    document.update(changes)
    return document


VALID = {"fee-cap": fee_cap, "framework": framework, "placement-protocol": placement_protocol}


def edited(document: Document, pointer: str, value: Any) -> Document:
    """A copy with the member at an RFC 6901 pointer set (``DELETE`` removes it)."""
    result = copy.deepcopy(document)
    *parents, last = pointer.split("/")[1:]
    target: Any = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[int(last) if isinstance(target, list) else last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return result


DELETE = object()
