"""The three kinds of publication, the schema and dataset each belongs to, and the checks a schema cannot say.

JSON Schema checks shape; some rules need more than one member or knowledge of England (is this a real LA?
is it in that region?). Those live here, reported in the same ``{path, message}`` form as schema errors, with
paths inside the document, so a publisher sees one list of everything wrong in one response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from enum import StrEnum
from typing import Any

from registry.core.domain import local_authorities
from schemas import Dataset

Problem = tuple[str, str]
"""(RFC 6901 pointer inside the document, message)."""


class Kind(StrEnum):
    """What a publication is; the value is also the name of its JSON Schema in ``schemas/``."""

    framework = "framework"
    placement_protocol = "placement-protocol"
    fee_cap = "fee-cap"

    @property
    def schema_name(self) -> str:
        """The shipped schema the document is validated against."""
        return self.value

    @property
    def dataset(self) -> Dataset:
        """The dataset an agreement must grant for a peer to read this kind (phase 2 uses it)."""
        return _DATASETS[self]


_DATASETS = {
    Kind.framework: Dataset.publications_frameworks,
    Kind.placement_protocol: Dataset.publications_placement_protocols,
    Kind.fee_cap: Dataset.publications_fee_caps,
}


def effective_dates(document: dict[str, Any]) -> tuple[date, date | None]:
    """``effective_from`` and ``effective_to`` of a schema-valid document (every kind carries both names)."""
    start = date.fromisoformat(document["effective_from"])
    end = document.get("effective_to")
    return start, date.fromisoformat(end) if end else None


def semantic_problems(kind: Kind, document: dict[str, Any], *, node_id: str) -> list[Problem]:
    """Rules beyond the schema, for a document that already passed its schema."""
    problems: list[Problem] = []
    if document["owner"] != node_id:
        problems.append(("/owner", f"must be this node's id ({node_id}): a node publishes only its own documents"))
    start, end = effective_dates(document)
    if end is not None and end < start:
        problems.append(("/effective_to", "must not be before effective_from"))
    problems.extend(_CHECKS[kind](document))
    return problems


def _unknown_las(codes: list[str], pointer: str, region_code: str | None = None) -> Iterator[Problem]:
    known = local_authorities()
    for index, code in enumerate(codes):
        la = known.get(code)
        if la is None:
            yield f"{pointer}/{index}", "is not a known English local authority"
        elif region_code is not None and la.region_code != region_code:
            yield f"{pointer}/{index}", f"is not in region {region_code}"


def _fee_cap(document: dict[str, Any]) -> Iterator[Problem]:
    covers = document["covers"]
    yield from _unknown_las(covers.get("la_codes", []), "/covers/la_codes", covers.get("region_code"))
    seen: dict[tuple[str, str], int] = {}
    for index, cap in enumerate(document["caps"]):
        key = (cap["setting_type"], cap["need_level"])
        if key in seen:
            yield f"/caps/{index}", f"repeats the cap for {key[0]} / {key[1]} already at /caps/{seen[key]}"
        else:
            seen[key] = index


def _framework(document: dict[str, Any]) -> Iterator[Problem]:
    numbers: dict[int, int] = {}
    for index, lot in enumerate(document["lots"]):
        if lot["number"] in numbers:
            yield (
                f"/lots/{index}/number",
                f"repeats lot number {lot['number']} (already at /lots/{numbers[lot['number']]})",
            )
        else:
            numbers[lot["number"]] = index
        for band_index, band in enumerate(lot["age_bands"]):
            if band["min_age"] > band["max_age"]:
                yield f"/lots/{index}/age_bands/{band_index}/max_age", "must not be below min_age"
        settings, needs = set(lot["setting_types"]), set(lot["need_levels"])
        for provider_index, provider in enumerate(lot["providers"]):
            for rate_index, rate in enumerate(provider["rate_card"]):
                pointer = f"/lots/{index}/providers/{provider_index}/rate_card/{rate_index}"
                if rate["setting_type"] not in settings:
                    yield f"{pointer}/setting_type", "must be one of the lot's setting_types"
                if rate["need_level"] not in needs:
                    yield f"{pointer}/need_level", "must be one of the lot's need_levels"
    yield from _unknown_las(document["call_off"].get("las", []), "/call_off/las")


def _placement_protocol(document: dict[str, Any]) -> Iterator[Problem]:
    yield from _unknown_las(document["parties"]["las"], "/parties/las")
    if document["owner"] not in document["parties"]["nodes"]:
        yield "/parties/nodes", "must include the owner"


_CHECKS: dict[Kind, Callable[[dict[str, Any]], Iterator[Problem]]] = {
    Kind.fee_cap: _fee_cap,
    Kind.framework: _framework,
    Kind.placement_protocol: _placement_protocol,
}
