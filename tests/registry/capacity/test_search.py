from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text, update
from sqlmodel import Session, SQLModel, col

import schemas
from registry.capacity import search, service
from registry.capacity.models import (
    LA_CODE_PATTERN,
    NEED_BITS,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Vacancy,
    VacancyBatch,
    VacancyCreate,
    VacancyDocument,
    la_number,
    needs_mask,
)
from registry.capacity.synth import region_las, synth_vacancies
from registry.core import domain
from schemas.vocabulary import Need
from tests.registry.capacity.factories import BRIGHTON, KENT, MANCHESTER, iso, search_request, vacancy

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
EBD, CSE, CCE = Need.emotional_behavioural_difficulties, Need.cse_risk, Need.cce_risk


def request(**overrides: Any) -> SearchRequest:
    return SearchRequest.model_validate(search_request(NOW, **overrides))


def store(session: Session, *documents: dict[str, Any]) -> None:
    service.put_vacancies(session, VacancyBatch.model_validate({"vacancies": list(documents)}), now=NOW)
    session.commit()


def found(session: Session, wanted: SearchRequest) -> list[str]:
    results = search.search_local(session, wanted, now=NOW, node_id="rcc-test", region_code="E12000008")
    return [r.vacancy.id for r in results]


class TestScore:
    @pytest.mark.parametrize(
        ("wanted", "supported", "expected"),
        [
            ([], [], 1.0),
            ([EBD], [EBD], 1.0),
            ([EBD], [EBD, CSE], 0.5),
            ([EBD, CSE], [EBD, CSE, CCE, Need.offending], 0.5),
            ([], [EBD], 0.0),
        ],
    )
    def test_fit_is_the_jaccard_index_of_needs(self, wanted: list[Any], supported: list[Any], expected: float) -> None:
        assert search.fit(needs_mask(wanted), needs_mask(supported)) == expected

    def test_every_component_pulls_the_score_the_right_way(self) -> None:
        base: dict[str, Any] = {
            "fit": 1.0,
            "miles": 10.0,
            "age_seconds": 3600.0,
            "fee_pence": 500_000,
            "reference_pence": 1_000_000,
        }
        reference = search.score(**base)
        assert search.score(**{**base, "fit": 0.5}) < reference
        assert search.score(**{**base, "miles": 40.0}) < reference
        assert search.score(**{**base, "miles": None}) < reference
        assert search.score(**{**base, "age_seconds": 5 * 86400.0}) < reference
        assert search.score(**{**base, "fee_pence": 700_000}) < reference
        assert search.score(**base, fee_within_cap=False) < reference
        assert search.score(**base, fee_within_cap=True) == reference
        assert 0 <= reference <= 1

    def test_the_score_stays_between_0_and_1_at_the_extremes(self) -> None:
        best = search.score(fit=1.0, miles=0.0, age_seconds=-60.0, fee_pence=0, reference_pence=100)
        worst = search.score(fit=0.0, miles=None, age_seconds=30 * 86400.0, fee_pence=10**9, reference_pence=100)
        assert (best, worst) == (1.0, 0.0)

    def test_every_la_code_has_its_own_number(self) -> None:
        codes = [code for code in domain.local_authorities() if re.fullmatch(LA_CODE_PATTERN, code)]
        assert len(codes) > 150
        assert len({la_number(code) for code in codes}) == len(codes)
        assert all(f"E{la_number(code):08d}" == code for code in codes)

    def test_every_need_has_its_own_bit(self) -> None:
        assert set(NEED_BITS) == set(Need)
        assert sorted(NEED_BITS.values()) == list(range(len(Need)))

    def test_a_place_with_no_known_centre_ranks_after_every_place_with_one(self) -> None:
        def result(vacancy_id: str, la_code: str, needs: list[str]) -> SearchResult:
            document = VacancyDocument.model_validate(vacancy(NOW, vacancy_id, needs_supported=needs))
            document = document.model_copy(update={"la_code": la_code})  # an LA code with no centre on file
            return SearchResult(
                node_id="rcc-peer",
                region_code="E12000008",
                vacancy=document,
                distance_miles=None,
                fee_within_cap=None,
                freshness="fresh",
                score=0,
            )

        ranked = search.rank(
            [result("unknown", "E06000999", [EBD.value]), result("far", MANCHESTER, [EBD.value, CSE.value])],
            request(),
            now=NOW,
        )
        assert [r.vacancy.id for r in ranked] == ["far", "unknown"]
        assert ranked[1].distance_miles is None
        assert ranked[1].score > ranked[0].score  # a better fit, yet after: its distance is unknown


@pytest.mark.postgres
class TestSearchLocal:
    def test_nearer_and_better_fitting_places_come_first(self, session: Session) -> None:
        store(
            session,
            vacancy(NOW, "far-broad", la_code=MANCHESTER, needs_supported=[EBD, CSE]),
            vacancy(NOW, "mid-fit", la_code=BRIGHTON, postcode_district="BN1"),
            vacancy(NOW, "near-broad", needs_supported=[EBD, CSE]),
            vacancy(NOW, "near-fit"),
        )
        results = search.search_local(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008")
        assert [r.vacancy.id for r in results] == ["near-fit", "near-broad", "mid-fit", "far-broad"]
        assert [r.distance_miles == 0 for r in results] == [True, True, False, False]
        assert results[2].distance_miles is not None and results[3].distance_miles is not None
        assert results[2].distance_miles < results[3].distance_miles
        assert all(r.node_id == "rcc-test" and r.region_code == "E12000008" for r in results)
        assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)

    def test_a_place_that_does_not_match_is_never_returned(self, session: Session) -> None:
        misses: dict[str, dict[str, Any]] = {
            "expired": {"valid_until": iso(NOW + timedelta(hours=1))},  # expires after it is stored
            "no-bed": {"beds_free": 0},
            "too-young": {"age_range": {"min_age": 15, "max_age": 17}},
            "too-old": {"age_range": {"min_age": 5, "max_age": 13}},
            "girls-only": {"sexes": ["female"]},
            "need-unsupported": {"needs_supported": [Need.learning_disability.value]},
            "other-setting": {"setting_type": "residential-special-school"},
            "available-too-late": {"available_from": (NOW + timedelta(days=8)).date().isoformat()},
            "over-the-fee": {"weekly_fee": 6000.01},
        }
        store(session, vacancy(NOW, "match"), *(vacancy(NOW, name, **miss) for name, miss in misses.items()))
        wanted = request(setting_types=["childrens-home"], max_weekly_fee=6000)
        later = NOW + timedelta(hours=2)
        results = search.search_local(session, wanted, now=later, node_id="rcc-test", region_code="E12000008")
        assert [r.vacancy.id for r in results] == ["match"]

    def test_results_are_valid_search_response_documents(self, session: Session) -> None:
        store(
            session,
            vacancy(NOW, "a", framework={"id": "se-framework"}),
            vacancy(NOW, "b", as_of=iso(NOW - timedelta(days=8))),
        )
        response = service.search(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008")
        document = response.document()
        assert schemas.validate("capacity-search-response", document) == []
        assert document["peers"] == []
        assert {r["vacancy"]["id"]: r["freshness"] for r in document["results"]} == {"a": "fresh", "b": "stale"}

    def test_a_vacancy_moved_to_another_la_is_measured_from_there(self, session: Session) -> None:
        store(session, vacancy(NOW, "moved"), vacancy(NOW, "batch-moved"))
        assert [
            r.distance_miles for r in search.search_local(session, request(), now=NOW, node_id="n", region_code=None)
        ] == [0.0, 0.0]
        later = NOW + timedelta(minutes=1)
        service.put_vacancy(
            session, "moved", VacancyCreate.model_validate(vacancy(later, "moved", la_code=MANCHESTER)), now=later
        )
        service.put_vacancies(
            session,
            VacancyBatch.model_validate({"vacancies": [vacancy(later, "batch-moved", la_code=BRIGHTON)]}),
            now=later,
        )
        session.commit()
        results = search.search_local(session, request(), now=later, node_id="n", region_code=None)
        miles = {r.vacancy.id: r.distance_miles for r in results}
        assert miles == {"moved": search.distance(KENT, MANCHESTER), "batch-moved": search.distance(KENT, BRIGHTON)}
        assert {r.vacancy.id: r.region_code for r in results} == {"moved": "E12000002", "batch-moved": "E12000008"}

    def test_at_most_the_limit_comes_back_and_they_are_the_best(self, session: Session) -> None:
        store(session, *(vacancy(NOW, f"v{n:02d}", weekly_fee=4000 + 100 * n) for n in range(12)))
        results = search.search_local(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008", limit=5)
        assert [r.vacancy.id for r in results] == ["v00", "v01", "v02", "v03", "v04"]

    def test_a_search_leaves_nothing_behind(self, session: Session) -> None:
        store(session, vacancy(NOW))
        service.search(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008")
        assert not session.new and not session.dirty and not session.deleted
        assert not [name for name in SQLModel.metadata.tables if "search" in name]


@pytest.mark.postgres
class TestSearchLocalJson:
    """A region's answer to a peer is written straight from the rows: it must say exactly what the models say."""

    def _both(self, session: Session, wanted: SearchRequest, now: datetime, region_code: str | None) -> tuple[Any, Any]:
        results = search.search_local(session, wanted, now=now, node_id="rcc-test", region_code=region_code)
        content, count = search.search_local_json(session, wanted, now=now, node_id="rcc-test", region_code=region_code)
        assert count == len(results)
        expected = SearchResponse(results=results, peers=[], generated_at=now).model_dump_json()
        return json.loads(content), json.loads(expected)

    def test_it_is_the_response_the_models_would_write_for_any_search(self, session: Session) -> None:
        service.put_vacancies(
            session, VacancyBatch(vacancies=synth_vacancies("E12000008", seed=5, now=NOW, count=400)), now=NOW
        )
        session.commit()
        rng = random.Random(8)  # noqa: S311 - a repeatable spread of requests, not security
        las = [la.ons_code for la in region_las("E12000008")] + [MANCHESTER]
        answered = 0
        for index in range(20):
            wanted = request(
                age=rng.randint(0, 17),
                sex=rng.choice(["female", "male"]),
                needs=rng.sample([EBD, CSE, CCE, Need.uasc, Need.self_harm], rng.choice([0, 1, 2])),
                home_la=rng.choice(las),
                **({"max_weekly_fee": rng.choice([3000, 6000])} if rng.random() < 0.4 else {}),
            )
            later = NOW + timedelta(days=rng.randint(0, 9), microseconds=rng.choice([0, 1, 250_000]))
            got, expected = self._both(session, wanted, later, "E12000008" if index % 2 else None)
            assert got == expected
            answered += bool(got["results"])
        assert answered >= 10, "searches that find nothing prove little"

    def test_every_optional_member_and_awkward_string_is_written_as_the_models_write_it(self, session: Session) -> None:
        store(
            session,
            vacancy(NOW, "plain"),
            vacancy(NOW, "pinned", framework={"id": "se-framework", "version": 3, "sha256": "ab" * 32}),
            vacancy(
                NOW, "named", framework={"id": "se-framework"}, provider_name='Quote " and \\ back, caf\u00e9 \u2603'
            ),
            vacancy(NOW, "odd-pence", weekly_fee=1234.57, as_of="2026-03-02T08:00:00.000001Z", sexes=["female"]),
            vacancy(NOW, "old", as_of=iso(NOW - timedelta(days=8)), needs_supported=[]),
        )
        got, expected = self._both(session, request(needs=[], sex="female"), NOW, "E12000008")
        assert got == expected
        assert {r["vacancy"]["id"] for r in got["results"]} == {"plain", "pinned", "named", "odd-pence", "old"}
        assert schemas.validate("capacity-search-response", got) == []

    def test_a_search_that_finds_nothing_is_an_empty_answer(self, session: Session) -> None:
        got, expected = self._both(session, request(), NOW, "E12000008")
        assert got == expected == {"results": [], "peers": [], "generated_at": iso(NOW)}


def matches(document: VacancyDocument, wanted: SearchRequest, now: datetime) -> bool:
    """The search filter, written out independently of the SQL."""
    return (
        document.valid_until > now
        and document.beds_free > 0
        and document.age_range.min_age <= wanted.age <= document.age_range.max_age
        and wanted.sex in document.sexes
        and set(wanted.needs) <= set(document.needs_supported)
        and (not wanted.setting_types or document.setting_type in wanted.setting_types)
        and document.available_from <= wanted.needed_by
        and (wanted.max_weekly_fee is None or document.weekly_fee <= wanted.max_weekly_fee)
    )


@pytest.mark.postgres
class TestSqlRankingAgreesWithPython:
    def test_the_database_picks_and_orders_exactly_what_python_would(self, session: Session) -> None:
        documents = synth_vacancies("E12000008", seed=11, now=NOW, count=600)
        service.put_vacancies(session, VacancyBatch(vacancies=documents), now=NOW)
        session.commit()
        rng = random.Random(3)  # noqa: S311 - a repeatable spread of requests, not security
        las = [la.ons_code for la in region_las("E12000008")] + [MANCHESTER]
        needs = [EBD, CSE, CCE, Need.uasc, Need.missing_episodes, Need.learning_disability]
        later = NOW + timedelta(days=3)  # some stale, and ages spread over the freshness scale
        for _ in range(25):
            wanted = request(
                age=rng.randint(0, 17),
                sex=rng.choice(["female", "male"]),
                needs=rng.sample(needs, rng.choice([0, 1, 1, 2])),
                home_la=rng.choice(las),
                needed_by=(NOW + timedelta(days=rng.randint(0, 30))).date().isoformat(),
                **({"max_weekly_fee": rng.choice([1000, 5000, 8000])} if rng.random() < 0.4 else {}),
                **({"setting_types": ["childrens-home", "independent-fostering-agency"]} if rng.random() < 0.3 else {}),
            )
            expected = search.rank(
                (
                    SearchResult(
                        node_id="rcc-test",
                        region_code="E12000008",
                        vacancy=d,
                        distance_miles=None,
                        fee_within_cap=None,
                        freshness="fresh",
                        score=0,
                    )
                    for d in documents
                    if matches(d, wanted, later)
                ),
                wanted,
                now=later,
            )[:10]
            got = search.search_local(session, wanted, now=later, node_id="rcc-test", region_code="E12000008", limit=10)
            assert [(r.vacancy.id, r.score) for r in got] == [(r.vacancy.id, r.score) for r in expected]
            assert [r.vacancy for r in got] == [r.vacancy for r in expected]

    def test_the_candidates_are_read_from_the_covering_index_alone(self, engine: Engine, session: Session) -> None:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            # PostgreSQL weighs the index against a table scan by its statistics and the visibility map: give
            # it a register of some size, vacuumed and analysed as autovacuum leaves it.
            documents = synth_vacancies("E12000008", seed=5, now=NOW, count=3000)
            for start in range(0, len(documents), 1000):
                service.put_vacancies(session, VacancyBatch(vacancies=documents[start : start + 1000]), now=NOW)
            session.commit()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE capacity_vacancy"))
        else:
            store(session, vacancy(NOW))
        statements: list[tuple[str, Any]] = []

        def remember(_c: Any, _cursor: Any, statement: str, parameters: Any, _x: Any, _many: bool) -> None:
            statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", remember)
        try:
            wanted = request(setting_types=["childrens-home"], max_weekly_fee=6000)
            assert found(session, wanted)  # the statement ran, and found places
        finally:
            event.remove(engine, "before_cursor_execute", remember)
        statement, parameters = statements[-1]
        connection = session.connection()  # the search's transaction, with whatever it set for its planning
        if postgres:
            plan = json.dumps(connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar())
            assert '"Node Type": "Index Only Scan"' in plan and '"Index Name": "ix_capacity_vacancy_search"' in plan
            assert '"Node Type": "Seq Scan"' not in plan
        else:
            plan_rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            candidates = [row[3] for row in plan_rows if "capacity_vacancy" in row[3] and "(id=?)" not in row[3]]
            assert candidates == [candidates[0]] and "COVERING INDEX ix_capacity_vacancy_search" in candidates[0]

    def test_the_database_also_ranks_a_place_of_unknown_distance_last(self, session: Session) -> None:
        store(session, vacancy(NOW, "far", la_code=MANCHESTER, needs_supported=[EBD, CSE]), vacancy(NOW, "unknown"))
        # No live LA lacks a centre, so the service never stores one: move the row past it, as an old record might.
        session.connection().execute(
            update(Vacancy).where(col(Vacancy.id) == "unknown").values(la_code="E06000999", la_number=6000999)
        )
        session.commit()
        results = search.search_local(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008", limit=1)
        assert [r.vacancy.id for r in results] == ["far"]
        results = search.search_local(session, request(), now=NOW, node_id="rcc-test", region_code="E12000008")
        assert [(r.vacancy.id, r.distance_miles is None) for r in results] == [("far", False), ("unknown", True)]


@pytest.mark.postgres
class TestMerge:
    def test_peer_results_are_ranked_with_local_ones_on_one_scale(self, session: Session) -> None:
        store(session, vacancy(NOW, "local-far", la_code=BRIGHTON, postcode_district="BN1"))
        remote = SearchResult(
            node_id="rcc-peer",
            region_code="E12000008",
            vacancy=VacancyDocument.model_validate(vacancy(NOW, "peer-near")),
            distance_miles=999,  # whatever the peer said, the merging node measures again
            fee_within_cap=None,
            freshness="fresh",
            score=0,
        )

        def peer_search(_: SearchRequest) -> tuple[Any, ...]:
            return [remote], []

        response = service.search(
            session, request(), now=NOW, node_id="rcc-test", region_code="E12000008", peer_search=peer_search
        )
        assert [(r.node_id, r.vacancy.id, r.distance_miles) for r in response.results] == [
            ("rcc-peer", "peer-near", 0.0),
            ("rcc-test", "local-far", response.results[1].distance_miles),
        ]
        assert response.results[0].vacancy.la_code == KENT
