"""Storage and wire models of the statistics register.

Two kinds of thing are stored, and they never meet on the wire:

* ``StatisticsEpisode`` — record-level, pseudonymised episodes (one row per SSDA903 episode). No route serves
  them and no model here exposes them: only :mod:`registry.statistics.service` reads them, to build a release.
  The columns mirror :class:`registry.statistics.ssda903.Episode` in field order, so rows load straight into it.
* ``StatisticsRelease`` / ``StatisticsReleaseTable`` — a built, disclosure-controlled, signed release: one row
  per release (year, version, LAs present and missing, threshold) and one per catalogue table, holding the
  signed document (the tidy rows) and its detached JWS (typ ``rcc-statistics+jws``).

Each table's document is signed on its own so a peer can be sent, and can verify, one table without the rest.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import Column, SQLModel
from sqlmodel import Field as SQLField

from registry.core.db import UTCDateTime

Row = dict[str, str | int]


class StatisticsEpisode(SQLModel, table=True):
    """One pseudonymised episode (never served, never logged). Replaced per LA and year as a whole."""

    __tablename__ = "statistics_episode"
    __table_args__ = (sa.Index("ix_statistics_episode_la_year", "la", "year"),)

    id: int | None = SQLField(default=None, primary_key=True)
    la: str = SQLField(max_length=9)
    year: int
    pseudonym: str = SQLField(max_length=32)
    sex: str = SQLField(max_length=1)
    birth_month: date
    ethnic: str = SQLField(max_length=4)
    uasc: bool
    decom: date
    rne: str = SQLField(max_length=1)
    ls: str = SQLField(max_length=2)
    cin: str = SQLField(max_length=2)
    place: str = SQLField(max_length=4)
    place_provider: str | None = SQLField(default=None, max_length=3)
    dec: date | None = None
    rec: str | None = SQLField(default=None, max_length=3)
    reason_place_change: str | None = SQLField(default=None, max_length=6)
    home_district: str | None = SQLField(default=None, max_length=4)
    placement_district: str | None = SQLField(default=None, max_length=4)
    urn: str | None = SQLField(default=None, max_length=10)
    placement_group: str = SQLField(max_length=16)
    age_at_31_march: int
    outside_la: bool | None = None
    at_distance: bool | None = None


# The episode columns in :class:`registry.statistics.ssda903.Episode` field order ("child" is stored as pseudonym).
EPISODE_COLUMNS = (
    "la", "year", "pseudonym", "sex", "birth_month", "ethnic", "uasc", "decom", "rne", "ls", "cin", "place",
    "place_provider", "dec", "rec", "reason_place_change", "home_district", "placement_district", "urn",
    "placement_group", "age_at_31_march", "outside_la", "at_distance",
)  # fmt: skip


class StatisticsRelease(SQLModel, table=True):
    """One built release: a year's tables for the node's LAs, dated and versioned."""

    __tablename__ = "statistics_release"

    version: int | None = SQLField(default=None, primary_key=True)
    year: int = SQLField(index=True)
    area_code: str = SQLField(max_length=9)
    built_at: datetime = SQLField(sa_column=Column(UTCDateTime(timezone=True), nullable=False))
    threshold: int
    las: str = SQLField(max_length=4000)  # space-separated ONS codes with data
    missing: str = SQLField(max_length=4000)  # space-separated ONS codes of the area without data


class StatisticsReleaseTable(SQLModel, table=True):
    """One signed table of a release: the document (JSON text) and its detached JWS."""

    __tablename__ = "statistics_release_table"

    version: int = SQLField(foreign_key="statistics_release.version", primary_key=True)
    name: str = SQLField(max_length=64, primary_key=True)
    document: str = SQLField(sa_column=Column(sa.Text, nullable=False))
    signature: str = SQLField(max_length=1024)


class ImportResult(BaseModel):
    """What an import did: the LA-year it replaced and how many episodes it now holds."""

    la: str
    year: int
    episodes: int
    replaced: int


class TableEntry(BaseModel):
    """One catalogue table: name, title, what it counts and the JSON Schema of its rows."""

    name: str
    title: str
    measure: str
    breakdowns: list[str]
    row_schema: dict[str, Any]


class ReleaseSummary(BaseModel):
    """A built release, without its figures."""

    version: int
    year: int
    area_code: str
    built_at: datetime
    threshold: int
    las: list[str]
    missing: list[str]
    tables: list[str]


class StatisticsCatalogue(BaseModel):
    """``GET /v1/statistics``: the fixed table catalogue and the releases built so far (newest first)."""

    tables: list[TableEntry]
    releases: list[ReleaseSummary]


class SignedTable(BaseModel):
    """A release's table as signed: the document and its detached JWS (what a peer verifies)."""

    document: dict[str, Any]
    signature: str


class PeerStatus(BaseModel):
    """How one peer's part of a national table went."""

    peer: str
    region_code: str | None = None
    outcome: str
    status: int | None = None
    verified: bool = False
    release_version: int | None = None
    detail: str | None = None


class StatisticsTable(BaseModel):
    """A table in the EES tidy-data layout, with the release it came from (or, nationally, each peer's outcome)."""

    table: str
    title: str
    scope: str = "local"
    year: int
    release_version: int | None = None
    built_at: datetime | None = None
    threshold: int | None = None
    rows: list[dict[str, str | int]]
    missing_regions: list[str] = Field(default_factory=list)
    suppressed_regions: list[str] = Field(default_factory=list)
    peers: list[PeerStatus] = Field(default_factory=list)
