"""The capacity register's services: vacancies and secure homes stored, listed, searched.

Session first, the rest keyword-only; they ``flush()``, the request commits. Facts arrive as validated
models, which enforce every rule of the JSON Schemas ``vacancy/1`` and ``secure-home/1`` and the domain's
(live LA codes, counts that add up); tests hold the models to the schemas. Running the JSON Schema validator
here as well cost ~1.5 ms a document, ten times the rest of a batch, so it is not repeated. What only the
service can judge is judged here: the id in the URL, the clock (a fact already expired, or confirmed in the
future, is refused) and the order of reports (an older one never replaces a newer one). Expired facts stay
in the table until replaced or deleted but are filtered out of every read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from registry.capacity.errors import (
    BatchRejected,
    CapacityFactInvalid,
    ConcurrentChange,
    OutOfOrderUpdate,
    VacancyNotFound,
)
from registry.capacity.models import (
    IDENTIFIER_PATTERN,
    URN_PATTERN,
    VACANCY_STALE_AFTER,
    AgeRange,
    PeerReport,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Vacancy,
    VacancyBatch,
    VacancyBatchResult,
    VacancyCreate,
    VacancyDocument,
    VacancyPage,
    VacancyPublic,
    fee_to_pence,
    is_stale,
    la_number,
    needs_mask,
    region_of_la,
    sexes_mask,
)
from registry.capacity.search import document_of, merge, search_local
from registry.capacity.secure_models import (
    SECURE_HOME_STALE_AFTER,
    BedsBySex,
    SecureHome,
    SecureHomeCreate,
    SecureHomeDocument,
    SecureHomeList,
    SecureHomePublic,
)
from schemas.vocabulary import SettingType

# A report may be stamped a little ahead of this node's clock (providers' clocks drift), not more.
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_PAGE, MAX_PAGE = 100, 1000
_IDENTIFIER, _URN = re.compile(IDENTIFIER_PATTERN), re.compile(URN_PATTERN)

# A synchronous fan-out (tests and tools); the node's route uses the federation's asynchronous one instead
# (``registry.capacity.api.PeerSearch``) so that the peers are asked while the local register is searched.
PeerSearch = Callable[[SearchRequest], tuple[list[SearchResult], list[PeerReport]]]

FeeCheck = Callable[[VacancyDocument], bool | None]
"""Is this vacancy's fee within the cap in force where it is? None when no cap held covers it."""

Problem = dict[str, str]


def _clock_problems(as_of: datetime, valid_until: datetime, *, now: datetime, prefix: str = "") -> list[Problem]:
    """The rules only the clock can judge, as ``{path, message}`` with ``prefix`` on the paths."""
    found = []
    if valid_until <= now:
        found.append({"path": f"{prefix}/valid_until", "message": "has already passed: nothing expired is stored"})
    if as_of > now + CLOCK_SKEW:
        found.append({"path": f"{prefix}/as_of", "message": "is in the future"})
    return found


def _key_problems(path_key: str, body_key: str | None, member: str, pattern: re.Pattern[str]) -> list[Problem]:
    if not pattern.fullmatch(path_key):
        return [{"path": f"/{member}", "message": f"the {member} in the URL is not a valid {member}"}]
    if body_key is not None and body_key != path_key:
        return [{"path": f"/{member}", "message": f"must match the {member} in the URL"}]
    return []


# ------------------------------------------------------------------------------------------------ vacancies


def _vacancy_columns(document: VacancyDocument, *, now: datetime) -> dict[str, Any]:
    return {
        "urn": document.urn,
        "provider_name": document.provider_name,
        "setting_name": document.setting_name,
        "setting_type": document.setting_type.value,
        "la_code": document.la_code,
        "la_number": la_number(document.la_code),
        "postcode_district": document.postcode_district,
        "min_age": document.age_range.min_age,
        "max_age": document.age_range.max_age,
        "sexes_mask": sexes_mask(document.sexes),
        "needs_mask": needs_mask(document.needs_supported),
        "needs_count": len(document.needs_supported),
        "beds_free": document.beds_free,
        "weekly_fee_pence": fee_to_pence(document.weekly_fee),
        "framework_id": None if document.framework is None else document.framework.id,
        "framework_version": None if document.framework is None else document.framework.version,
        "framework_sha256": None if document.framework is None else document.framework.sha256,
        "available_from": document.available_from,
        "as_of": document.as_of,
        "as_of_epoch": document.as_of.timestamp(),
        "valid_until": document.valid_until,
        "updated_at": now,
        "document": document.model_dump_json(),
    }


def _store_vacancy(session: Session, row: Vacancy | None, document: VacancyDocument, *, now: datetime) -> Vacancy:
    columns = _vacancy_columns(document, now=now)
    if row is None:
        row = Vacancy(id=document.id, **columns)
        session.add(row)
    else:
        row.sqlmodel_update(columns)
    return row


def vacancy_public(row: Vacancy, *, now: datetime) -> VacancyPublic:
    """The listed view of a stored vacancy."""
    document = document_of(row)
    return VacancyPublic.model_construct(**dict(document), stale=is_stale(document.as_of, now, VACANCY_STALE_AFTER))


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # two requests inserted the same key between our read and our write
        raise ConcurrentChange() from exc


def get_vacancy(session: Session, vacancy_id: str) -> Vacancy | None:
    """The stored vacancy (expired or not), if any."""
    return session.get(Vacancy, vacancy_id)


def get_vacancy_or_raise(session: Session, vacancy_id: str, *, now: datetime) -> VacancyPublic:
    """The current vacancy; :class:`VacancyNotFound` if there is none or it has expired."""
    row = get_vacancy(session, vacancy_id)
    if row is None or row.valid_until <= now:
        raise VacancyNotFound(vacancy_id)
    return vacancy_public(row, now=now)


def put_vacancy(session: Session, vacancy_id: str, data: VacancyCreate, *, now: datetime) -> tuple[VacancyPublic, bool]:
    """Create or replace vacancy ``vacancy_id``; returns it and whether it was new.

    A report older (``as_of``) than the stored one is refused (:class:`OutOfOrderUpdate`), so a delayed
    retry cannot bring back beds that have since been filled.
    """
    document = VacancyDocument.model_construct(**{**dict(data), "id": vacancy_id})
    problems = _key_problems(vacancy_id, data.id, "id", _IDENTIFIER) + _clock_problems(
        document.as_of, document.valid_until, now=now
    )
    if problems:
        raise CapacityFactInvalid("the vacancy cannot be stored", errors=problems)
    row = get_vacancy(session, vacancy_id)
    if row is not None and document.as_of < row.as_of:
        raise OutOfOrderUpdate(vacancy_id, row.as_of)
    created = row is None
    row = _store_vacancy(session, row, document, now=now)
    _flush(session)
    return vacancy_public(row, now=now), created


def put_vacancies(session: Session, batch: VacancyBatch, *, now: datetime) -> VacancyBatchResult:
    """Create or replace every vacancy in ``batch``, or none: any bad item refuses the lot (:class:`BatchRejected`),
    naming each bad item by its index and JSON path."""
    problems: list[Problem] = []
    failed: list[int] = []
    first_index: dict[str, int] = {}
    existing = {
        row.id: row
        for row in session.exec(select(Vacancy).where(col(Vacancy.id).in_({v.id for v in batch.vacancies}))).all()
    }
    for index, document in enumerate(batch.vacancies):
        prefix = f"/vacancies/{index}"
        found = _clock_problems(document.as_of, document.valid_until, now=now, prefix=prefix)
        if document.id in first_index:
            found.append({"path": f"{prefix}/id", "message": f"repeats the id of item {first_index[document.id]}"})
        first_index.setdefault(document.id, index)
        stored = existing.get(document.id)
        if stored is not None and document.as_of < stored.as_of:
            found.append({"path": f"{prefix}/as_of", "message": "is older than the stored report's as_of"})
        if found:
            problems += found
            failed.append(index)
    if problems:
        raise BatchRejected(problems, failed)
    new_rows = [
        {"id": document.id, **_vacancy_columns(document, now=now)}
        for document in batch.vacancies
        if document.id not in existing
    ]
    for document in batch.vacancies:
        if document.id in existing:
            existing[document.id].sqlmodel_update(_vacancy_columns(document, now=now))
    try:
        if new_rows:  # one multi-row INSERT: building an ORM object per row cost more than the rest of the batch
            session.connection().execute(insert(Vacancy), new_rows)
        session.flush()
    except IntegrityError as exc:
        raise ConcurrentChange() from exc
    return VacancyBatchResult(
        created=[row["id"] for row in new_rows], updated=[d.id for d in batch.vacancies if d.id in existing]
    )


def delete_vacancy(session: Session, vacancy_id: str) -> None:
    """Withdraw a vacancy (expired or not); :class:`VacancyNotFound` if there is none."""
    result = session.exec(delete(Vacancy).where(col(Vacancy.id) == vacancy_id))
    if result.rowcount == 0:
        raise VacancyNotFound(vacancy_id)


def list_vacancies(
    session: Session,
    *,
    now: datetime,
    la_code: str | None = None,
    setting_type: SettingType | None = None,
    urn: str | None = None,
    after: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> VacancyPage:
    """Current (unexpired) vacancies by id, a page at a time (keyset: pass the last id as ``after``)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Vacancy).where(col(Vacancy.valid_until) > now)
    if la_code is not None:
        query = query.where(col(Vacancy.la_code) == la_code)
    if setting_type is not None:
        query = query.where(col(Vacancy.setting_type) == setting_type.value)
    if urn is not None:
        query = query.where(col(Vacancy.urn) == urn)
    if after is not None:
        query = query.where(col(Vacancy.id) > after)
    rows = session.exec(query.order_by(col(Vacancy.id)).limit(limit + 1)).all()
    items = [vacancy_public(row, now=now) for row in rows[:limit]]
    return VacancyPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


# ------------------------------------------------------------------------------------------------ secure homes


def secure_home_document(row: SecureHome) -> SecureHomeDocument:
    """The document of a stored secure home (built without re-validation: only valid documents are stored)."""
    return SecureHomeDocument.model_construct(
        urn=row.urn,
        name=row.name,
        la_code=row.la_code,
        approved_places=row.approved_places,
        welfare_beds=row.welfare_beds,
        justice_beds=row.justice_beds,
        beds_free=row.beds_free,
        beds_free_by_sex=BedsBySex.model_construct(female=row.beds_free_female, male=row.beds_free_male),
        age_range=AgeRange.model_construct(min_age=row.min_age, max_age=row.max_age),
        as_of=row.as_of,
        valid_until=row.valid_until,
    )


def secure_home_public(row: SecureHome, *, now: datetime) -> SecureHomePublic:
    """The listed view of a stored secure home."""
    return SecureHomePublic.model_construct(
        **dict(secure_home_document(row)),
        region_code=region_of_la(row.la_code) or "",
        stale=is_stale(row.as_of, now, SECURE_HOME_STALE_AFTER),
    )


def put_secure_home(
    session: Session, urn: str, data: SecureHomeCreate, *, now: datetime
) -> tuple[SecureHomePublic, bool]:
    """Create or replace the report of secure home ``urn``; returns it and whether the home was new."""
    document = SecureHomeDocument.model_construct(**{**dict(data), "urn": urn})
    problems = _key_problems(urn, data.urn, "urn", _URN) + _clock_problems(
        document.as_of, document.valid_until, now=now
    )
    if problems:
        raise CapacityFactInvalid("the secure home report cannot be stored", errors=problems)
    row = session.get(SecureHome, urn)
    if row is not None and document.as_of < row.as_of:
        raise OutOfOrderUpdate(urn, row.as_of)
    created = row is None
    columns: dict[str, Any] = {
        "name": document.name,
        "la_code": document.la_code,
        "approved_places": document.approved_places,
        "welfare_beds": document.welfare_beds,
        "justice_beds": document.justice_beds,
        "beds_free": document.beds_free,
        "beds_free_female": document.beds_free_by_sex.female,
        "beds_free_male": document.beds_free_by_sex.male,
        "min_age": document.age_range.min_age,
        "max_age": document.age_range.max_age,
        "as_of": document.as_of,
        "valid_until": document.valid_until,
        "updated_at": now,
    }
    if row is None:
        row = SecureHome(urn=urn, **columns)
        session.add(row)
    else:
        row.sqlmodel_update(columns)
    _flush(session)
    return secure_home_public(row, now=now), created


def list_secure_homes(session: Session, *, now: datetime) -> SecureHomeList:
    """Every secure home with a current (unexpired) report, by URN."""
    rows = session.exec(select(SecureHome).where(col(SecureHome.valid_until) > now).order_by(col(SecureHome.urn))).all()
    return SecureHomeList(items=[secure_home_public(row, now=now) for row in rows])


# ------------------------------------------------------------------------------------------------ search


def search(
    session: Session,
    request: SearchRequest,
    *,
    now: datetime,
    node_id: str,
    region_code: str | None,
    peer_search: PeerSearch | None = None,
) -> SearchResponse:
    """Answer a commissioner's search: this node's register, and (phase 2) its peers', merged and ranked.

    Nothing about the request is stored here: the criteria live only as long as the request.
    """
    local = search_local(session, request, now=now, node_id=node_id, region_code=region_code)
    remote: Sequence[SearchResult] = ()
    peers: list[PeerReport] = []
    if peer_search is not None:
        remote, peers = peer_search(request)
    results = merge(local, remote, request, now=now) if remote else local
    return SearchResponse(results=results, peers=peers, generated_at=now)


def search_register(
    session: Session,
    request: SearchRequest,
    *,
    now: datetime,
    node_id: str,
    region_code: str | None,
    fee_caps: Callable[[Session, datetime], FeeCheck] | None = None,
) -> tuple[list[SearchResult], FeeCheck | None]:
    """This node's part of a search, and (with ``fee_caps``) the fee check for every result, local or not.

    One database visit for both, so the route makes a single hop to the thread pool while peers are asked.
    """
    local = search_local(session, request, now=now, node_id=node_id, region_code=region_code)
    return local, None if fee_caps is None else fee_caps(session, now)


def combine(
    local: Sequence[SearchResult],
    remote: Sequence[SearchResult],
    peers: Sequence[PeerReport],
    request: SearchRequest,
    *,
    now: datetime,
    fee_check: FeeCheck | None = None,
) -> SearchResponse:
    """The answer: every result marked against the fee caps held here, filtered, merged and ranked.

    Caps are judged by the *asking* node for every result (a peer's own marks are replaced), so one cap table
    judges the whole list. ``within_fee_cap_only`` drops the results known to be over a cap; a result no cap
    held here covers (``fee_within_cap`` null) is kept, since nothing says it exceeds one.
    """
    if not remote and fee_check is not None and all(fee_check(r.vacancy) is None for r in local):
        fee_check = None  # no cap covers any of them: the register's own ranking stands as it is
    if remote or fee_check is not None:
        # Marked, filtered, ranked and cut to the best in one pass: only the results kept are copied.
        ranked = merge(local, remote, request, now=now, fee_check=fee_check, drop_over_cap=request.within_fee_cap_only)
    else:
        ranked = [r for r in local if not (request.within_fee_cap_only and r.fee_within_cap is False)]
    return SearchResponse(results=ranked, peers=list(peers), generated_at=now)
