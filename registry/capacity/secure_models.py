"""Storage and wire models of secure children's homes and the secure-bed board.

The same family as the vacancies (:mod:`registry.capacity.models`): ``SecureHomeBase`` (what a home reports,
as ``secure-home/1`` spells it), ``SecureHomeCreate`` (the PUT body), ``SecureHomeDocument``,
``SecureHomePublic`` (with its region and ``stale``) and the ``SecureHome`` table, one row per home holding
its latest report. A report is stale once it is more than 24 hours old: homes report availability daily.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import sqlmodel
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from sqlalchemy import Column, Index
from sqlmodel import SQLModel

from registry.capacity.models import AgeRange, FactWindow, LaCode, Line, PeerReport, Urn, live_la_problem
from registry.core.db import UTCDateTime

SECURE_HOME_STALE_AFTER = timedelta(hours=24)


# ------------------------------------------------------------------------------------------------ secure homes


class BedsBySex(BaseModel):
    """Free beds a child of each sex could take; a flexible bed counts under both."""

    model_config = ConfigDict(extra="forbid")

    female: StrictInt = Field(ge=0, le=60)
    male: StrictInt = Field(ge=0, le=60)


class SecureHomeBase(FactWindow):
    """A secure children's home's places and today's availability."""

    model_config = ConfigDict(extra="forbid")

    name: Line
    la_code: LaCode
    approved_places: StrictInt = Field(ge=1, le=60)
    welfare_beds: StrictInt = Field(ge=0, le=60, description="Places for welfare placements (s25 Children Act 1989).")
    justice_beds: StrictInt = Field(ge=0, le=60, description="Places contracted to the Youth Custody Service.")
    beds_free: StrictInt = Field(ge=0, le=60)
    beds_free_by_sex: BedsBySex
    age_range: AgeRange

    @field_validator("la_code")
    @classmethod
    def _live_la(cls, value: str) -> str:
        if (problem := live_la_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("age_range")
    @classmethod
    def _secure_ages(cls, value: AgeRange) -> AgeRange:
        if value.min_age < 10:
            raise ValueError("secure children's homes take children aged 10 to 17 (min_age >= 10)")
        return value

    @model_validator(mode="after")
    def _counts_add_up(self) -> SecureHomeBase:
        if self.welfare_beds + self.justice_beds > self.approved_places:
            raise ValueError("welfare_beds + justice_beds must not exceed approved_places")
        if self.beds_free > self.approved_places:
            raise ValueError("beds_free must not exceed approved_places")
        by_sex = self.beds_free_by_sex
        if max(by_sex.female, by_sex.male) > self.beds_free:
            raise ValueError("beds_free_by_sex counts must not exceed beds_free")
        if by_sex.female + by_sex.male < self.beds_free:
            raise ValueError("every free bed must be open to at least one sex (female + male >= beds_free)")
        return self

    def document(self) -> dict[str, Any]:
        """The JSON document as ``secure-home/1`` defines it."""
        return self.model_dump(mode="json", exclude={"stale", "region_code"})


class SecureHomeCreate(SecureHomeBase):
    """The body of ``PUT /v1/capacity/secure-homes/{urn}``: ``urn`` optional (the path names it)."""

    urn: Urn | None = None


class SecureHomeDocument(SecureHomeBase):
    """A complete secure-home document."""

    urn: Urn


class SecureHomePublic(SecureHomeDocument):
    """A secure home as this node lists it: the document, its region, and whether the report is stale."""

    region_code: str
    stale: bool = Field(description="as_of is more than 24 hours old: homes report daily.")


class SecureHomeList(BaseModel):
    """Every secure home this node holds a current report for."""

    items: list[SecureHomePublic]


class SecureHome(SQLModel, table=True):
    """A stored secure children's home report (the latest one: each PUT replaces it)."""

    __tablename__ = "capacity_secure_home"
    __table_args__ = (
        Index("ix_capacity_secure_home_valid_until", "valid_until"),
        Index("ix_capacity_secure_home_la_code", "la_code"),
    )

    urn: str = sqlmodel.Field(primary_key=True, max_length=8)
    name: str = sqlmodel.Field(max_length=300)
    la_code: str = sqlmodel.Field(max_length=9)
    approved_places: int
    welfare_beds: int
    justice_beds: int
    beds_free: int
    beds_free_female: int
    beds_free_male: int
    min_age: int
    max_age: int
    as_of: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))
    valid_until: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))


# ------------------------------------------------------------------------------------------------ bed board


class BedCounts(BaseModel):
    """Totals over a set of secure homes."""

    homes: int = 0
    approved_places: int = 0
    welfare_beds: int = 0
    justice_beds: int = 0
    beds_free: int = 0
    beds_free_female: int = 0
    beds_free_male: int = 0
    stale_homes: int = 0
    oldest_as_of: datetime | None = None


class RegionBeds(BedCounts):
    """Totals for one region."""

    region_code: str
    region_name: str


class AgeBeds(BaseModel):
    """Free beds a child of this age could take, by sex (a home counts where its age range includes the age)."""

    age: int
    female: int
    male: int


class BoardHome(SecureHomePublic):
    """A home on the board, with the node that reported it."""

    node_id: str


class SecureBedBoard(BaseModel):
    """The secure-bed board: every home this node can see, totals by region and for England, staleness."""

    scope: Literal["region", "national"]
    node_id: str
    generated_at: datetime
    stale_after_hours: int
    homes: list[BoardHome]
    regions: list[RegionBeds]
    england: BedCounts
    by_age: list[AgeBeds]
    peers: list[PeerReport]
    missing_regions: list[str] = Field(
        default_factory=list,
        description="scope=national: English regions whose homes are not on the board (no node asked answered).",
    )
