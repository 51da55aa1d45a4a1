from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

import schemas
from registry.capacity import service
from registry.capacity.errors import BatchRejected, CapacityFactInvalid, OutOfOrderUpdate, VacancyNotFound
from registry.capacity.models import (
    Vacancy,
    VacancyBatch,
    VacancyCreate,
    VacancyDocument,
)
from registry.capacity.secure_models import (
    SecureHome,
    SecureHomeCreate,
)
from schemas.vocabulary import SettingType
from tests.registry.capacity.factories import MEDWAY, iso, secure_home, vacancy

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def put(session: Session, document: dict[str, Any], *, now: datetime = NOW) -> tuple[Any, ...]:
    result = service.put_vacancy(session, document["id"], VacancyCreate.model_validate(document), now=now)
    session.commit()
    return result


def batch(*documents: dict[str, Any]) -> VacancyBatch:
    return VacancyBatch.model_validate({"vacancies": list(documents)})


class TestVacancyRegister:
    def test_a_new_vacancy_is_created_and_reads_back_as_sent(self, session: Session) -> None:
        sent = vacancy(NOW, framework={"id": "se-framework", "version": 2}, weekly_fee=1234.57)
        public, created = put(session, sent)
        assert created
        stored = service.get_vacancy_or_raise(session, "vac-1", now=NOW)
        assert stored.document() == VacancyDocument.model_validate(sent).document()
        assert stored.weekly_fee == 1234.57
        assert stored.stale is False
        assert public == stored

    def test_every_stored_vacancy_is_valid_against_the_schema(self, session: Session) -> None:
        put(session, vacancy(NOW, needs_supported=["uasc", "cse-risk", "self-harm"], sexes=["male"]))
        document = service.get_vacancy_or_raise(session, "vac-1", now=NOW).document()
        assert schemas.validate("vacancy", document) == []
        assert "framework" not in document

    def test_put_replaces_an_existing_vacancy(self, session: Session) -> None:
        put(session, vacancy(NOW))
        _, created = put(session, vacancy(NOW, beds_free=0, as_of=iso(NOW - timedelta(minutes=5))))
        assert not created
        assert service.get_vacancy_or_raise(session, "vac-1", now=NOW).beds_free == 0
        assert len(session.exec(select(Vacancy)).all()) == 1

    def test_an_older_report_does_not_overwrite_a_newer_one(self, session: Session) -> None:
        put(session, vacancy(NOW, beds_free=0, as_of=iso(NOW - timedelta(minutes=5))))
        with pytest.raises(OutOfOrderUpdate) as caught:
            put(session, vacancy(NOW, beds_free=2, as_of=iso(NOW - timedelta(hours=3))))
        session.rollback()
        assert caught.value.key == "vac-1"
        assert service.get_vacancy_or_raise(session, "vac-1", now=NOW).beds_free == 0

    def test_delete_withdraws_and_a_second_delete_is_not_found(self, session: Session) -> None:
        put(session, vacancy(NOW))
        service.delete_vacancy(session, "vac-1")
        session.commit()
        with pytest.raises(VacancyNotFound):
            service.get_vacancy_or_raise(session, "vac-1", now=NOW)
        with pytest.raises(VacancyNotFound):
            service.delete_vacancy(session, "vac-1")

    def test_an_id_in_the_body_must_match_the_path(self, session: Session) -> None:
        with pytest.raises(CapacityFactInvalid) as caught:
            service.put_vacancy(session, "vac-2", VacancyCreate.model_validate(vacancy(NOW)), now=NOW)
        assert caught.value.errors == [{"path": "/id", "message": "must match the id in the URL"}]

    def test_a_vacancy_already_expired_is_refused(self, session: Session) -> None:
        document = vacancy(NOW, as_of=iso(NOW - timedelta(days=3)), valid_until=iso(NOW - timedelta(seconds=1)))
        with pytest.raises(CapacityFactInvalid) as caught:
            put(session, document)
        assert caught.value.errors is not None
        assert [e["path"] for e in caught.value.errors] == ["/valid_until"]

    def test_a_report_from_the_future_is_refused(self, session: Session) -> None:
        with pytest.raises(CapacityFactInvalid) as caught:
            put(session, vacancy(NOW, as_of=iso(NOW + timedelta(hours=1))))
        assert caught.value.errors is not None
        assert [e["path"] for e in caught.value.errors] == ["/as_of"]


class TestExpiryAndStaleness:
    def test_expired_vacancies_are_never_returned(self, session: Session) -> None:
        put(session, vacancy(NOW, "soon", valid_until=iso(NOW + timedelta(hours=1))))
        put(session, vacancy(NOW, "later"))
        later = NOW + timedelta(hours=2)
        assert [v.id for v in service.list_vacancies(session, now=later).items] == ["later"]
        with pytest.raises(VacancyNotFound):
            service.get_vacancy_or_raise(session, "soon", now=later)

    def test_a_vacancy_confirmed_over_seven_days_ago_is_flagged_stale(self, session: Session) -> None:
        put(session, vacancy(NOW, "old", as_of=iso(NOW - timedelta(days=7, minutes=1))))
        put(session, vacancy(NOW, "new", as_of=iso(NOW - timedelta(days=6, hours=23))))
        flags = {v.id: v.stale for v in service.list_vacancies(session, now=NOW).items}
        assert flags == {"new": False, "old": True}

    def test_expired_secure_homes_are_never_listed_and_stale_ones_are_flagged(self, session: Session) -> None:
        for urn, as_of, valid_until in [
            ("SC900001", NOW - timedelta(hours=1), NOW + timedelta(days=1)),
            ("SC900002", NOW - timedelta(hours=25), NOW + timedelta(days=1)),
            ("SC900003", NOW - timedelta(days=3), NOW + timedelta(hours=1)),
        ]:
            home = secure_home(NOW, urn, as_of=iso(as_of), valid_until=iso(valid_until))
            service.put_secure_home(session, urn, SecureHomeCreate.model_validate(home), now=NOW)
        session.commit()
        later = NOW + timedelta(hours=2)
        assert [(h.urn, h.stale) for h in service.list_secure_homes(session, now=later).items] == [
            ("SC900001", False),
            ("SC900002", True),
        ]


class TestListing:
    def test_pages_follow_the_keyset_and_filters_apply(self, session: Session) -> None:
        for n in range(5):
            put(session, vacancy(NOW, f"vac-{n}", la_code=MEDWAY if n % 2 else "E10000016"))
        first = service.list_vacancies(session, now=NOW, limit=2)
        assert [v.id for v in first.items] == ["vac-0", "vac-1"]
        assert first.next_after == "vac-1"
        rest = service.list_vacancies(session, now=NOW, after=first.next_after, limit=10)
        assert [v.id for v in rest.items] == ["vac-2", "vac-3", "vac-4"]
        assert rest.next_after is None
        medway = service.list_vacancies(session, now=NOW, la_code=MEDWAY)
        assert [v.id for v in medway.items] == ["vac-1", "vac-3"]
        assert service.list_vacancies(session, now=NOW, setting_type=SettingType.residential_family_centre).items == []


class TestBatch:
    def test_a_good_batch_is_stored_whole(self, session: Session) -> None:
        put(session, vacancy(NOW, "b"))
        result = service.put_vacancies(session, batch(vacancy(NOW, "a"), vacancy(NOW, "b"), vacancy(NOW, "c")), now=NOW)
        session.commit()
        assert (result.created, result.updated) == (["a", "c"], ["b"])
        assert [v.id for v in service.list_vacancies(session, now=NOW).items] == ["a", "b", "c"]

    def test_one_bad_item_stores_nothing_and_every_bad_item_is_named(self, session: Session) -> None:
        put(session, vacancy(NOW, "kept", beds_free=1))
        documents = [
            vacancy(NOW, "kept", beds_free=3),
            vacancy(NOW, "expired", valid_until=iso(NOW - timedelta(minutes=1)), as_of=iso(NOW - timedelta(days=1))),
            vacancy(NOW, "fine"),
            vacancy(NOW, "fine"),
            vacancy(NOW, "older", as_of=iso(NOW - timedelta(days=2))),
        ]
        put(session, vacancy(NOW, "older"))
        with pytest.raises(BatchRejected) as caught:
            service.put_vacancies(session, batch(*documents), now=NOW)
        session.rollback()
        assert caught.value.failed_items == [1, 3, 4]
        assert caught.value.errors == [
            {"path": "/vacancies/1/valid_until", "message": "has already passed: nothing expired is stored"},
            {"path": "/vacancies/3/id", "message": "repeats the id of item 2"},
            {"path": "/vacancies/4/as_of", "message": "is older than the stored report's as_of"},
        ]
        assert sorted(v.id for v in service.list_vacancies(session, now=NOW).items) == ["kept", "older"]
        assert service.get_vacancy_or_raise(session, "kept", now=NOW).beds_free == 1


class TestSecureHomes:
    def test_a_home_is_created_then_replaced(self, session: Session) -> None:
        _, created = service.put_secure_home(
            session, "SC900001", SecureHomeCreate.model_validate(secure_home(NOW)), now=NOW
        )
        assert created
        update = secure_home(NOW, beds_free=0, beds_free_by_sex={"female": 0, "male": 0}, as_of=iso(NOW))
        public, created = service.put_secure_home(session, "SC900001", SecureHomeCreate.model_validate(update), now=NOW)
        session.commit()
        assert not created
        assert (public.beds_free, public.region_code, public.stale) == (0, "E12000008", False)
        assert len(session.exec(select(SecureHome)).all()) == 1
        assert schemas.validate("secure-home", public.document()) == []

    def test_a_urn_in_the_body_must_match_the_path(self, session: Session) -> None:
        with pytest.raises(CapacityFactInvalid) as caught:
            service.put_secure_home(session, "SC900002", SecureHomeCreate.model_validate(secure_home(NOW)), now=NOW)
        assert caught.value.errors == [{"path": "/urn", "message": "must match the urn in the URL"}]
