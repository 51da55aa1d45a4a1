"""Matching and ranking of vacancies against a commissioner's search.

Matching is a hard filter done by SQL on the flattened columns: not expired, at least one bed free, the
child's age inside the age range, the child's sex accepted, every need supported (``needs_mask & wanted =
wanted``), one of the setting types asked for (if any), available by ``needed_by``, and within
``max_weekly_fee`` (if given).

Ranking is :func:`score`, a pure function of a vacancy, the request and the clock, so a node merging answers
from peers (phase 2) ranks them exactly as each peer would. The score, between 0 and 1, weighs:

* fit to needs (0.40): the Jaccard index of the needs asked for and the needs supported. Every need asked for
  is supported (the filter sees to that), so this prefers a setting that supports them *and little else*:
  a specialist bed is not spent on a child who does not need it.
* distance (0.35): ``1 / (1 + miles / 25)`` from the home LA's centre to the vacancy's LA centre; a place
  25 miles away scores half of one in the home LA. Where either centre is unknown the component is 0 and
  the place is ranked after every place whose distance is known.
* freshness (0.15): 1 when just confirmed, falling linearly to 0 at 14 days (vacancies are flagged stale at 7).
* fee (0.10): ``1 - fee / max_weekly_fee`` (or / £10,000 when no maximum is given). A fee known to be over the
  cap in force (``fee_within_cap`` false) scores 0 here.

Ties go to the nearer place, then the cheaper, then node id and vacancy id, so the order is deterministic.

Where the work happens: a common search (a teenager with emotional and behavioural difficulties) matches a
third of a 20,000-vacancy register. Scoring those candidates in Python took longer than the 20 ms budget, so
the same formula is also written as a SQL expression (:func:`_score_sql`) and the database orders by it and
returns the best ``limit + 20`` rows; Python then scores those with :func:`score`, sorts them with the full
tie-breaks and keeps ``limit``. The margin absorbs last-bit float differences between the engines'
arithmetic and Python's, and exact ties the database breaks by fee rather than distance; a test holds the
SQL choice to the Python one on both engines.

What the database does per candidate is what a search costs, so: candidates are read from a covering index
(``ix_capacity_vacancy_search``, narrow entries instead of wide rows, on PostgreSQL an index-only scan);
the distance component is looked up by the LA's number, an integer, not its code (PostgreSQL compares
text through its collation, several times per candidate); and the statement is one per shape with every
value bound, so a new home LA or fee ceiling costs no expression building.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Float, Select, bindparam, case, cast, literal, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from registry.capacity.models import (
    VACANCY_STALE_AFTER,
    AgeRange,
    PublicationRef,
    SearchRequest,
    SearchResult,
    Vacancy,
    VacancyDocument,
    fee_to_pence,
    is_stale,
    la_number,
    needs_mask,
    needs_of,
    pence_to_fee,
    region_of_la,
    sexes_mask,
    sexes_of,
)
from registry.core import domain
from schemas.vocabulary import SettingType

# A commissioner reads the top of the list; past 50 the answer is "refine the criteria", not a longer list.
MAX_RESULTS = 50
WEIGHT_FIT, WEIGHT_DISTANCE, WEIGHT_FRESHNESS, WEIGHT_FEE = 0.40, 0.35, 0.15, 0.10
DISTANCE_HALF_SCORE_MILES = 25.0
FRESHNESS_ZERO_AFTER = timedelta(days=14)
FEE_REFERENCE_PENCE = 10_000 * 100
_FRESHNESS_ZERO_SECONDS = FRESHNESS_ZERO_AFTER.total_seconds()
# Rows the database returns beyond ``limit``: Python's exact (rounded) scores then pick the best ``limit``.
_MARGIN = 20

_table = Vacancy.__table__  # type: ignore[attr-defined]
M = TypeVar("M", bound=BaseModel)


@lru_cache(maxsize=65536)
def distance(home_la: str, la_code: str) -> float | None:
    """Miles between two LA centres (cached: there are only ~150 LAs), None where a centre is unknown."""
    miles = domain.distance_miles(home_la, la_code)
    return None if miles is None else round(miles, 1)


def fit(wanted: int, supported: int) -> float:
    """Jaccard index of two need bitmasks; 1.0 when neither holds any need."""
    union = (wanted | supported).bit_count()
    return 1.0 if union == 0 else (wanted & supported).bit_count() / union


def nearness(miles: float | None) -> float:
    """The distance component, weighted: 0 where the distance is unknown."""
    return 0.0 if miles is None else WEIGHT_DISTANCE * (1.0 / (1.0 + miles / DISTANCE_HALF_SCORE_MILES))


def score(
    *,
    fit: float,
    miles: float | None,
    age_seconds: float,
    fee_pence: int,
    reference_pence: int,
    fee_within_cap: bool | None = None,
) -> float:
    """The ranking score of one vacancy, 0 to 1 (see the module docstring for the weights and why)."""
    fresh = 1.0 - max(age_seconds, 0.0) / _FRESHNESS_ZERO_SECONDS
    cheap = 0.0 if fee_within_cap is False else 1.0 - fee_pence / reference_pence
    total = WEIGHT_FIT * fit + nearness(miles) + WEIGHT_FRESHNESS * max(fresh, 0.0) + WEIGHT_FEE * max(cheap, 0.0)
    return round(total, 6)


def reference_pence(request: SearchRequest) -> int:
    """What fees are measured against: the request's maximum, else £10,000 a week."""
    if request.max_weekly_fee is None:
        return FEE_REFERENCE_PENCE
    return fee_to_pence(request.max_weekly_fee) or 1


def freshness(as_of: datetime, now: datetime) -> Literal["fresh", "stale"]:
    """A vacancy's freshness flag."""
    return "stale" if is_stale(as_of, now, VACANCY_STALE_AFTER) else "fresh"


def rank(
    results: Iterable[SearchResult],
    request: SearchRequest,
    *,
    now: datetime,
    fee_check: Callable[[VacancyDocument], bool | None] | None = None,
    drop_over_cap: bool = False,
    limit: int | None = None,
) -> list[SearchResult]:
    """Score results from any node against ``request`` and sort them best first (the best ``limit`` of them).

    Distances and scores are recomputed here from the vacancy documents, so answers from several nodes are
    ranked on one scale. Each result keeps the ``fee_within_cap`` its node reported, unless ``fee_check``
    marks it afresh; ``drop_over_cap`` leaves out those marked over a cap. Only the results kept are copied.
    """
    wanted = needs_mask(request.needs)
    reference = reference_pence(request)
    keyed = []
    for result in results:
        vacancy = result.vacancy
        within = result.fee_within_cap if fee_check is None else fee_check(vacancy)
        if drop_over_cap and within is False:
            continue
        miles = distance(request.home_la, vacancy.la_code)
        value = score(
            fit=fit(wanted, needs_mask(vacancy.needs_supported)),
            miles=miles,
            age_seconds=(now - vacancy.as_of).total_seconds(),
            fee_pence=fee_to_pence(vacancy.weekly_fee),
            reference_pence=reference,
            fee_within_cap=within,
        )
        # Ties go to the nearer place, then the cheaper, then node id and vacancy id.
        key = (miles is None, -value, miles or 0.0, vacancy.weekly_fee, result.node_id, vacancy.id)
        keyed.append((key, result, miles, value, within))
    keyed.sort(key=itemgetter(0))
    return [
        built(
            SearchResult,
            {
                **result.__dict__,
                "distance_miles": miles,
                "fee_within_cap": within,
                "freshness": freshness(result.vacancy.as_of, now),
                "score": value,
            },
        )
        for _, result, miles, value, within in (keyed if limit is None else keyed[:limit])
    ]


def merge(
    local: Sequence[SearchResult],
    remote: Sequence[SearchResult],
    request: SearchRequest,
    *,
    now: datetime,
    fee_check: Callable[[VacancyDocument], bool | None] | None = None,
    drop_over_cap: bool = False,
) -> list[SearchResult]:
    """Local and peers' results in one ranking, best :data:`MAX_RESULTS` first (see :func:`rank`)."""
    return rank(
        [*local, *remote], request, now=now, fee_check=fee_check, drop_over_cap=drop_over_cap, limit=MAX_RESULTS
    )


# ------------------------------------------------------------------------------------------------ in SQL


class clamp01(FunctionElement[float]):
    """Its argument held between 0 and 1, evaluated once (SQLite's scalar min/max, PostgreSQL's LEAST/GREATEST)."""

    type = Float()
    inherit_cache = True


@compiles(clamp01, "sqlite")
def _clamp_sqlite(element: clamp01, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max(0.0, min(1.0, {compiler.process(element.clauses, **kw)}))"


@compiles(clamp01, "postgresql")
def _clamp_postgresql(element: clamp01, compiler: SQLCompiler, **kw: Any) -> str:
    return f"GREATEST(0.0, LEAST(1.0, {compiler.process(element.clauses, **kw)}))"


def _conditions(*, needs: bool, setting_types: bool, fee: bool) -> list[ColumnElement[bool]]:
    """The filter, most selective and cheapest terms first: SQLite tests them left to right on every row of
    the scan and stops at the first that fails (measured: half the scan time for a search naming needs).

    Every value is a bound parameter (see :func:`_parameters`), so one statement serves every search of its shape.
    """
    c = _table.c
    conditions: list[ColumnElement[bool]] = []
    if needs:
        wanted = bindparam("wanted", type_=c.needs_mask.type)
        conditions.append(c.needs_mask.op("&")(wanted) == wanted)
    if setting_types:
        conditions.append(c.setting_type.in_(bindparam("setting_types", expanding=True)))
    age = bindparam("age", type_=c.min_age.type)
    conditions += [
        c.min_age <= age,
        c.max_age >= age,
        c.sexes_mask.op("&")(bindparam("sex", type_=c.sexes_mask.type)) != 0,
        c.beds_free > 0,
    ]
    if fee:
        conditions.append(c.weekly_fee_pence <= bindparam("max_fee", type_=c.weekly_fee_pence.type))
    conditions += [
        c.available_from <= bindparam("needed_by", type_=c.available_from.type),
        c.valid_until > bindparam("now", type_=c.valid_until.type),
    ]
    return conditions


def _parameters(request: SearchRequest, now: datetime, near: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """The values of a search for the bound parameters of its statement; ``near`` is :func:`_nearness`."""
    values: dict[str, Any] = {
        "age": request.age,
        "sex": sexes_mask([request.sex]),
        "needed_by": request.needed_by,
        "now": now,
        "now_epoch": now.timestamp(),
        "reference": float(reference_pence(request)),
    }
    if request.needs:
        values["wanted"] = needs_mask(request.needs)
        values["asked"] = float(len(request.needs))
    if request.setting_types:
        values["setting_types"] = sorted(s.value for s in request.setting_types)
    if request.max_weekly_fee is not None:
        values["max_fee"] = fee_to_pence(request.max_weekly_fee)
    for arm, (number, weighted) in enumerate(near):
        values[f"la_{arm}"], values[f"near_{arm}"] = number, weighted
    return values


@lru_cache(maxsize=256)
def _nearness(home_la: str, la_codes: tuple[str, ...]) -> tuple[tuple[int, float], ...]:
    """``(la_number, weighted distance component)`` of each LA in ``la_codes`` whose distance from
    ``home_la`` is known: the arms of the distance lookup in :func:`_score_sql`."""
    found = ((la, distance(home_la, la)) for la in la_codes)
    return tuple((la_number(la), nearness(miles)) for la, miles in found if miles is not None)


@lru_cache(maxsize=1024)
def _statement(arms: int, *, needs: bool, setting_types: bool, fee: bool, limit: int, stored: bool) -> Select[Any]:
    """The search as one statement, built once per shape (which filters, how many LAs of known distance):
    every value, the home LA's distances included, is a bound parameter. SQLAlchemy then finds the compiled
    form by identity instead of building the expression and its cache key again, which cost more than the
    rest of a search whenever a new home LA, fee ceiling or number of needs came along.

    It returns the columns :func:`document_of` reads, or (``stored``) the stored document and what ranking
    needs, for :func:`search_local_json`."""
    c = _table.c
    total = _score_sql(arms, needs=needs)
    # Ids first, whole rows after: a sort carries every column it returns for every candidate, and the
    # wide text columns of thousands of candidates cost more than the scan that found them.
    best = (
        select(c.id)
        .where(*_conditions(needs=needs, setting_types=setting_types, fee=fee))
        .order_by(total.desc(), c.weekly_fee_pence, c.id)
        .limit(limit + _MARGIN)
    )
    return select(*(_STORED_COLUMNS if stored else _DOCUMENT_COLUMNS)).where(c.id.in_(best.scalar_subquery()))


# What :func:`document_of` reads: not the search's own columns (la_number, needs_count, as_of_epoch) nor
# updated_at, whose timestamp would be parsed for every row for nothing.
_DOCUMENT_COLUMNS = tuple(
    _table.c[name]
    for name in (
        "id",
        "urn",
        "provider_name",
        "setting_name",
        "setting_type",
        "la_code",
        "postcode_district",
        "min_age",
        "max_age",
        "sexes_mask",
        "needs_mask",
        "beds_free",
        "weekly_fee_pence",
        "framework_id",
        "framework_version",
        "framework_sha256",
        "available_from",
        "as_of",
        "valid_until",
    )
)
# What :func:`search_local_json` reads: the stored document, and what ranking and the result's own members need.
_STORED_COLUMNS = tuple(
    _table.c[name] for name in ("id", "la_code", "needs_mask", "weekly_fee_pence", "as_of", "document")
)
_FLOAT = Float()


def _float(value: float) -> ColumnElement[float]:
    return literal(value, _FLOAT)


# Added to the score of a place whose distance is unknown: below any place with one (scores are 0 to 1).
_UNKNOWN_DISTANCE_PENALTY = -2.0


def _score_sql(arms: int, *, needs: bool) -> ColumnElement[Any]:
    """:func:`score` as SQL over a matching row, term for term, less a penalty where the distance is unknown.

    Ordering by it descending puts places of unknown distance last, as :func:`rank` does. Only rows the
    filter kept are scored, so every need asked for (the parameter ``asked``) is supported and the Jaccard
    index is ``asked / needs_count``: a row supports at least one need when ``needs`` were asked for, and
    when none were the index is 1 for a row that supports none and 0 for any other. The distance component
    is looked up among ``arms`` pairs of parameters ``la_i``/``near_i`` (:func:`_nearness`) by
    ``la_number``: integers, since a text comparison per arm cost more than the rest of the score. The
    clock is ``now_epoch`` and the fee reference ``reference``.
    """
    c = _table.c
    penalty = _float(_UNKNOWN_DISTANCE_PENALTY)
    whens = {
        bindparam(f"la_{arm}", type_=c.la_number.type): bindparam(f"near_{arm}", type_=_FLOAT) for arm in range(arms)
    }
    near: ColumnElement[Any] = case(whens, value=c.la_number, else_=penalty) if arms else penalty
    if needs:
        fit_sql: ColumnElement[Any] = bindparam("asked", type_=_FLOAT) / cast(c.needs_count, _FLOAT)
    else:
        fit_sql = case((c.needs_count == 0, _float(1.0)), else_=_float(0.0))
    age = bindparam("now_epoch", type_=_FLOAT) - c.as_of_epoch
    fresh = clamp01(_float(1.0) - age / _float(_FRESHNESS_ZERO_SECONDS))
    cheap = clamp01(_float(1.0) - c.weekly_fee_pence / bindparam("reference", type_=_FLOAT))
    return WEIGHT_FIT * fit_sql + near + WEIGHT_FRESHNESS * fresh + WEIGHT_FEE * cheap


# The LAs the register holds, for their distances: a few dozen among 20,000 rows, found by one index seek
# each (a "loose index scan" on ix_capacity_vacancy_la_code) instead of reading the whole index.
_DISTINCT_LAS = text(
    """
    WITH RECURSIVE las(la_code) AS (
        SELECT MIN(la_code) FROM capacity_vacancy
        UNION ALL
        SELECT (SELECT MIN(la_code) FROM capacity_vacancy WHERE la_code > las.la_code) FROM las
        WHERE las.la_code IS NOT NULL
    )
    SELECT la_code FROM las WHERE la_code IS NOT NULL
    """
)


# PostgreSQL prices a page read through an index at 4 sequential ones (its default, for disks) and so scans
# the table rather than ix_capacity_vacancy_search, which it reads 2-3x faster: the register is a few
# megabytes, read from memory. For this transaction only; without the visibility map set (a table not yet
# vacuumed) the index still costs more and the table is scanned, as before.
_INDEX_READS_ARE_CHEAP = text("SET LOCAL random_page_cost = 1.1")


_set = object.__setattr__


def built(cls: type[M], values: dict[str, Any]) -> M:
    """A model instance holding ``values`` as they are: what ``model_construct`` ends with, without its loop
    over the fields (defaults, aliases), which cost more than the rest of a search's Python work together.

    For values already validated only, and ``values`` must name every field of ``cls``.
    """
    instance = cls.__new__(cls)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(values))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def document_of(row: Any) -> VacancyDocument:
    """The vacancy document of a stored row (an ORM object or a result row: both have the columns as attributes).

    Built without re-validation: only validated documents are ever stored.
    """
    return built(
        VacancyDocument,
        {
            "id": row.id,
            "urn": row.urn,
            "provider_name": row.provider_name,
            "setting_name": row.setting_name,
            "setting_type": SettingType(row.setting_type),
            "la_code": row.la_code,
            "postcode_district": row.postcode_district,
            "age_range": built(AgeRange, {"min_age": row.min_age, "max_age": row.max_age}),
            "sexes": sexes_of(row.sexes_mask),
            "needs_supported": needs_of(row.needs_mask),
            "beds_free": row.beds_free,
            "weekly_fee": pence_to_fee(row.weekly_fee_pence),
            "framework": None
            if row.framework_id is None
            else built(
                PublicationRef,
                {"id": row.framework_id, "version": row.framework_version, "sha256": row.framework_sha256},
            ),
            "available_from": row.available_from,
            "as_of": row.as_of,
            "valid_until": row.valid_until,
        },
    )


Hit = tuple[Any, float | None, float]
"""A matching row of the register, its distance from the home LA in miles (None if unknown) and its score."""


def _best(session: Session, request: SearchRequest, *, now: datetime, limit: int, stored: bool = False) -> list[Hit]:
    """The best ``limit`` rows of this node's register for ``request``, best first, each with its distance in
    miles and its score: what :func:`search_local` renders, and (``stored``: rows holding the stored document)
    what :func:`search_local_json` renders."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_INDEX_READS_ARE_CHEAP)
    la_codes = tuple(connection.execute(_DISTINCT_LAS).scalars().all())
    near = _nearness(request.home_la, la_codes)
    statement = _statement(
        len(near),
        needs=bool(request.needs),
        setting_types=bool(request.setting_types),
        fee=request.max_weekly_fee is not None,
        limit=limit,
        stored=stored,
    )
    rows = connection.execute(statement, _parameters(request, now, near)).all()
    wanted, reference = needs_mask(request.needs), reference_pence(request)
    scored = []
    for row in rows:
        miles = distance(request.home_la, row.la_code)
        value = score(
            fit=fit(wanted, row.needs_mask),
            miles=miles,
            age_seconds=(now - row.as_of).total_seconds(),
            fee_pence=row.weekly_fee_pence,
            reference_pence=reference,
        )
        # The key :func:`rank` gives the finished result; documents are built for the best ``limit`` alone.
        scored.append(((miles is None, -value, miles or 0.0, row.weekly_fee_pence, row.id), row, miles, value))
    scored.sort(key=lambda item: item[0])
    return [(row, miles, value) for _, row, miles, value in scored[:limit]]


def search_local(
    session: Session,
    request: SearchRequest,
    *,
    now: datetime,
    node_id: str,
    region_code: str | None,
    limit: int = MAX_RESULTS,
) -> list[SearchResult]:
    """The best ``limit`` vacancies in this node's register for ``request``, best first.

    Each result names ``node_id`` and the region: the node's own, or (for a node without one) the region of
    the vacancy's LA. The register knows no fee caps (they are publications), so ``fee_within_cap`` is null
    and ``within_fee_cap_only`` removes nothing: there is no cap known to exceed.
    """
    return [
        built(
            SearchResult,
            {
                "node_id": node_id,
                "region_code": region_code or region_of_la(row.la_code) or "",
                "vacancy": document_of(row),
                "distance_miles": miles,
                "fee_within_cap": None,
                "freshness": freshness(row.as_of, now),
                "score": value,
            },
        )
        for row, miles, value in _best(session, request, now=now, limit=limit)
    ]


def search_local_json(
    session: Session,
    request: SearchRequest,
    *,
    now: datetime,
    node_id: str,
    region_code: str | None,
    limit: int = MAX_RESULTS,
) -> tuple[bytes, int]:
    """:func:`search_local` as the JSON of a :class:`SearchResponse` without peers, and how many results it holds.

    This is a region's answer to a peer's search: every region a national search reaches writes one, and the
    searching node waits for the slowest. Each result copies in the vacancy's document as it was stored
    (``Vacancy.document``); building the documents and results from their columns and serialising them was
    half of a peer's answer. A test holds it to ``SearchResponse(...).model_dump_json()``, value for value.
    """
    hits = _best(session, request, now=now, limit=limit, stored=True)
    node = _string(node_id)
    results = ",".join(
        _result_json(row, miles, value, node, _string(region_code or region_of_la(row.la_code) or ""), now)
        for row, miles, value in hits
    )
    return f'{{"results":[{results}],"peers":[],"generated_at":"{_time_json(now)}"}}'.encode(), len(hits)


# Strings are escaped by the json module's C encoder, as pydantic would (UTF-8 kept, quotes and controls escaped).
_string: Callable[[str], str] = encode_basestring


def _time_json(moment: datetime) -> str:
    """A UTC timestamp as pydantic writes it: seconds, then microseconds only when there are any, then ``Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    head = _SECONDS % (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return f"{head}Z" if not moment.microsecond else f"{head}.{moment.microsecond:06d}Z"


_SECONDS = "%04d-%02d-%02dT%02d:%02d:%02d"


def _result_json(row: Any, miles: float | None, value: float, node: str, region: str, now: datetime) -> str:
    """One :class:`SearchResult` as JSON, members in the model's order; ``node`` and ``region`` already encoded."""
    return (
        f'{{"node_id":{node},"region_code":{region},"vacancy":{row.document},'
        f'"distance_miles":{"null" if miles is None else repr(miles)},"fee_within_cap":null,'
        f'"freshness":"{freshness(row.as_of, now)}","score":{value!r}}}'
    )
