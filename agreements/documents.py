"""Agreement documents: validated against ``schemas/agreement.schema.json``, identified by their canonical digest.

An agreement version *is* its JSON document; what every party signs is ``JCS(document)``, so "the identical
canonical document" means the same SHA-256 of that JCS form (:func:`digest`). The schema checks each member;
this module adds the rules that span members (parties in grants, date order, unique parties), reporting every
failure at its JSON Pointer path the way the schema loader does, so a client gets one complete 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

import schemas
from agreements.errors import DocumentInvalid, EventInvalid
from registry.core.signing import canonical, sha256_hex

SCHEMA = "agreement"
EVENT_SCHEMA = "agreement-event"


def digest(document: Any) -> str:
    """SHA-256 (hex) of ``JCS(document)``: the identity of a document version and of an event."""
    return sha256_hex(canonical(document))


@dataclass(frozen=True)
class Grant:
    """One grant of the document: ``provider`` shares ``datasets`` with ``recipients`` for ``purposes`` only."""

    provider: str
    recipients: frozenset[str]
    datasets: frozenset[str]
    purposes: frozenset[str]
    fields: tuple[str, ...] | None
    min_cell_size: int | None


@dataclass(frozen=True)
class AgreementDocument:
    """A validated agreement version: the raw document (what is signed) and the facts the code reads from it."""

    raw: dict[str, Any]
    sha256: str
    id: str
    version: int
    title: str
    kind: str
    parties: tuple[str, ...]
    grants: tuple[Grant, ...]
    valid_from: date
    valid_until: date
    review_by: date
    supersedes: tuple[str, int, str] | None

    @cached_property
    def starts_at(self) -> datetime:
        """First instant of validity: 00:00 UTC on ``valid_from``."""
        return day_start(self.valid_from)

    @cached_property
    def ends_at(self) -> datetime:
        """First instant *after* validity: ``valid_until`` is the last whole day (UTC) the agreement holds."""
        return day_start(self.valid_until + timedelta(days=1))

    def is_party(self, node_id: str) -> bool:
        """True if ``node_id`` is one of the document's parties."""
        return node_id in self.parties

    @property
    def datasets(self) -> frozenset[str]:
        """Every dataset any grant names."""
        return frozenset(d for g in self.grants for d in g.datasets)

    @property
    def purposes(self) -> frozenset[str]:
        """Every purpose any grant names."""
        return frozenset(p for g in self.grants for p in g.purposes)


def day_start(day: date) -> datetime:
    """00:00 UTC on ``day``. Agreement dates are whole UTC days, the same on every node and engine."""
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _problems(errors: list[schemas.SchemaError]) -> list[dict[str, str]]:
    return [{"path": e.path, "message": e.message} for e in errors]


def parse(document: Any) -> AgreementDocument:
    """Validate ``document`` (parsed JSON) and return its typed view; :class:`DocumentInvalid` lists every problem."""
    if not isinstance(document, dict):
        raise DocumentInvalid([{"path": "", "message": "must be an object"}])
    problems = _problems(schemas.validate(SCHEMA, document))
    if problems:
        raise DocumentInvalid(problems)
    problems = _cross_rules(document)
    if problems:
        raise DocumentInvalid(problems)
    try:
        sha = digest(document)
    except ValueError as exc:  # a value JCS cannot represent (the schema forbids most; belt and braces)
        raise DocumentInvalid([{"path": "", "message": str(exc)}]) from None
    return from_valid(document, sha)


def from_valid(document: dict[str, Any], sha256: str) -> AgreementDocument:
    """The typed view of a document already validated (stored rows): no schema work, so loading stays cheap."""
    grants = tuple(
        Grant(
            provider=g["provider"],
            recipients=frozenset(g["recipients"]),
            datasets=frozenset(g["datasets"]),
            purposes=frozenset(g["purposes"]),
            fields=tuple(g["fields"]) if "fields" in g else None,
            min_cell_size=g.get("min_cell_size"),
        )
        for g in document["grants"]
    )
    supersedes = document.get("supersedes")
    return AgreementDocument(
        raw=document,
        sha256=sha256,
        id=document["id"],
        version=document["version"],
        title=document["title"],
        kind=document["kind"],
        parties=tuple(p["node_id"] for p in document["parties"]),
        grants=grants,
        valid_from=date.fromisoformat(document["valid_from"]),
        valid_until=date.fromisoformat(document["valid_until"]),
        review_by=date.fromisoformat(document["review_by"]),
        supersedes=(supersedes["id"], supersedes["version"], supersedes["sha256"]) if supersedes else None,
    )


def _cross_rules(document: dict[str, Any]) -> list[dict[str, str]]:
    """Rules the schema cannot say: who may appear in a grant, date order, what a new version may supersede."""
    problems: list[dict[str, str]] = []
    parties: list[str] = [p["node_id"] for p in document["parties"]]
    seen: set[str] = set()
    for index, node_id in enumerate(parties):
        if node_id in seen:
            problems.append({"path": f"/parties/{index}/node_id", "message": "names a party already listed"})
        seen.add(node_id)
    for index, grant in enumerate(document["grants"]):
        if grant["provider"] not in seen:
            problems.append({"path": f"/grants/{index}/provider", "message": "must be one of the parties"})
        for r_index, recipient in enumerate(grant["recipients"]):
            if recipient not in seen:
                problems.append(
                    {"path": f"/grants/{index}/recipients/{r_index}", "message": "must be one of the parties"}
                )
            elif recipient == grant["provider"]:
                problems.append(
                    {"path": f"/grants/{index}/recipients/{r_index}", "message": "must not be the provider itself"}
                )
    valid_from = date.fromisoformat(document["valid_from"])
    valid_until = date.fromisoformat(document["valid_until"])
    review_by = date.fromisoformat(document["review_by"])
    if valid_until < valid_from:
        problems.append({"path": "/valid_until", "message": "must not be before valid_from"})
    if not valid_from <= review_by <= valid_until:
        problems.append({"path": "/review_by", "message": "must fall between valid_from and valid_until"})
    supersedes = document.get("supersedes")
    if supersedes is not None:
        if supersedes["id"] != document["id"]:
            problems.append({"path": "/supersedes/id", "message": "must be this agreement's id"})
        if supersedes["version"] >= document["version"]:
            problems.append({"path": "/supersedes/version", "message": "must be an earlier version"})
    return problems


def parse_event(event: Any) -> dict[str, Any]:
    """Validate a lifecycle event against ``schemas/agreement-event.schema.json``; :class:`EventInvalid` if not."""
    if not isinstance(event, dict):
        raise EventInvalid([{"path": "", "message": "must be an object"}])
    problems = _problems(schemas.validate(EVENT_SCHEMA, event))
    if problems:
        raise EventInvalid(problems)
    return event


def event_time(value: str) -> datetime:
    """An event's ``at`` (RFC 3339, validated) as an aware UTC datetime."""
    text = value.upper()
    if text[17:19] == "60":  # an RFC 3339 leap second; datetime has none, and a second either way is moot here
        text = text[:17] + "59" + text[19:]
    return datetime.fromisoformat(text).astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """An aware datetime as the RFC 3339 text events carry (UTC, milliseconds, ``Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
