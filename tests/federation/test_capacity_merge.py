"""The searching node's side of a cross-border search, without a network: peers' answers parsed and credited,
fees marked against the caps held, and local and remote results ranked, filtered and cut in one pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from federation.capacity import fee_caps, peer_results
from federation.directory import DirectoryNode
from registry.capacity import search, service
from registry.capacity.models import SearchRequest, SearchResult, VacancyBatch, VacancyDocument
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.publications import service as publications
from registry.publications.feecaps import load_fee_caps
from registry.publications.kinds import Kind
from registry.publications.signatures import Signer
from tests.registry.capacity.factories import KENT, MANCHESTER, search_request, vacancy
from tests.registry.publications import documents

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PEER = DirectoryNode("rcc-london", "London", "regional", "E12000007", "http://127.0.0.1:9", {}, ())


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as db:
        yield db


def _answer(*documents: dict[str, Any], node_id: str = "rcc-impostor", region: str = "E12000001") -> bytes:
    """A peer's answer as the bytes it sends."""
    return _bytes(
        {
            "results": [
                {
                    "node_id": node_id,
                    "region_code": region,
                    "vacancy": d,
                    "distance_miles": 1.0,
                    "fee_within_cap": True,
                    "freshness": "fresh",
                    "score": 0.5,
                }
                for d in documents
            ],
            "peers": [],
            "generated_at": NOW.isoformat(),
        }
    )


def _bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _result(document: dict[str, Any], node_id: str = "rcc-test") -> SearchResult:
    return SearchResult(
        node_id=node_id,
        region_code="E12000008",
        vacancy=VacancyDocument.model_validate(document),
        distance_miles=None,
        fee_within_cap=None,
        freshness="fresh",
        score=0,
    )


class TestPeerResults:
    def test_results_are_credited_to_the_peer_the_directory_names(self) -> None:
        found = peer_results(_answer(vacancy(NOW, "a"), vacancy(NOW, "b", urn="SC100002")), PEER, now=NOW)
        assert found is not None
        assert [(r.node_id, r.region_code, r.vacancy.id) for r in found] == [
            ("rcc-london", "E12000007", "a"),
            ("rcc-london", "E12000007", "b"),
        ]
        sent = json.loads(_answer(vacancy(NOW, "a")))["results"][0]
        assert found[0] == SearchResult.model_validate({**sent, "node_id": "rcc-london", "region_code": "E12000007"})

    def test_expired_places_are_dropped(self) -> None:
        found = peer_results(_answer(vacancy(NOW, "a")), PEER, now=NOW + timedelta(days=60))
        assert found == []

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"{not json",
            _bytes(None),
            _bytes([]),
            _bytes({"results": "nope"}),
            _bytes({"results": ["nope"]}),
            _answer({**vacancy(NOW, "a"), "child_name": "identity-like"}),
            _answer({**vacancy(NOW, "a"), "weekly_fee": -1}),
        ],
    )
    def test_anything_but_a_valid_answer_is_not_an_answer(self, body: bytes) -> None:
        assert peer_results(body, PEER, now=NOW) is None


class TestRankingInOnePass:
    def test_only_the_best_are_kept_and_each_is_marked_and_scored(self) -> None:
        request = SearchRequest.model_validate(search_request(NOW))
        results = [_result(vacancy(NOW, f"v{i}", weekly_fee=4000 + i)) for i in range(60)]
        ranked = search.rank(results, request, now=NOW, fee_check=lambda v: v.weekly_fee <= 4010, limit=50)
        assert len(ranked) == 50
        assert [r.vacancy.id for r in ranked[:11]] == [f"v{i}" for i in range(11)]  # within the cap, cheapest first
        assert all(r.fee_within_cap is (r.vacancy.weekly_fee <= 4010) for r in ranked)
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        assert results[0].fee_within_cap is None and results[0].score == 0  # the inputs are not changed

    def test_over_cap_places_can_be_left_out(self) -> None:
        request = SearchRequest.model_validate(search_request(NOW, within_fee_cap_only=True))
        local = [_result(vacancy(NOW, "cheap", weekly_fee=3000)), _result(vacancy(NOW, "dear", weekly_fee=6000))]
        response = service.combine(local, [], [], request, now=NOW, fee_check=lambda v: v.weekly_fee <= 5000)
        assert [(r.vacancy.id, r.fee_within_cap) for r in response.results] == [("cheap", True)]

    def test_with_no_cap_covering_any_place_the_local_ranking_stands(self) -> None:
        request = SearchRequest.model_validate(search_request(NOW))
        local = search.rank(
            [_result(vacancy(NOW, "a")), _result(vacancy(NOW, "b", la_code=MANCHESTER))], request, now=NOW
        )
        response = service.combine(local, [], [], request, now=NOW, fee_check=lambda _: None)
        assert response.results == local


class TestFeeCaps:
    def _publish(self, session: Session, publication_id: str, **changes: Any) -> None:
        ring = KeyRing.generate()
        signer = Signer(node_id="rcc-test", region_code="E12000008", key=ring.active)
        publications.publish(
            session,
            signer=signer,
            kind=Kind.fee_cap,
            document=documents.fee_cap(**changes),
            publication_id=publication_id,
        )
        session.commit()

    def test_a_fee_is_within_when_some_need_level_allows_it_and_over_when_none_does(self, session: Session) -> None:
        self._publish(session, "se-caps")
        check = fee_caps(session, NOW)
        caps = load_fee_caps(session, on=NOW.date(), upcoming=False)
        # Children's homes in Kent: standard £5,500, complex £7,250.75 — the check agrees with the caps, level by level.
        for fee, expected in ((5500, True), (7250.75, True), (7250.76, False)):
            document = VacancyDocument.model_validate(vacancy(NOW, "a", weekly_fee=fee, la_code=KENT))
            by_level = [
                caps.within(setting_type="childrens-home", need_level=level, weekly_fee=fee, la=KENT)
                for level in ("standard", "complex")
            ]
            assert check(document) is expected is any(by_level)
        elsewhere = VacancyDocument.model_validate(vacancy(NOW, "b", la_code=MANCHESTER))
        assert check(elsewhere) is None  # no cap held covers Manchester

    def test_a_cap_published_after_a_search_is_used_by_the_next(self, session: Session) -> None:
        document = VacancyDocument.model_validate(vacancy(NOW, "a", weekly_fee=6000, la_code=KENT))
        assert fee_caps(session, NOW)(document) is None
        self._publish(session, "se-caps")
        assert fee_caps(session, NOW)(document) is True
        kent = [
            {"setting_type": "childrens-home", "need_level": "standard", "max_weekly_fee": 5000},
            {"setting_type": "childrens-home", "need_level": "complex", "max_weekly_fee": 5800},
        ]
        self._publish(session, "kent-caps", covers={"la_codes": [KENT]}, caps=kent)
        assert fee_caps(session, NOW)(document) is False  # the Kent-only caps are the more specific, both lower
        assert fee_caps(session, datetime(2025, 1, 1, tzinfo=UTC))(document) is None  # before any took effect

    def test_the_caps_held_serve_the_searches_after_the_session_that_read_them(self, engine: Engine) -> None:
        document = VacancyDocument.model_validate(vacancy(NOW, "a", weekly_fee=6000, la_code=KENT))
        with Session(engine) as first:
            self._publish(first, "se-caps")
            assert fee_caps(first, NOW)(document) is True
            first.commit()  # expires what the session loaded
        for _ in range(2):
            with Session(engine) as later:
                check = fee_caps(later, NOW)
                later.commit()
                assert check(document) is True


def test_local_results_read_back_as_the_documents_stored(session: Session) -> None:
    stored = [vacancy(NOW, f"v{i}", urn=f"SC1000{i:02d}") for i in range(5)]
    stored[0]["framework"] = {"id": "se-framework", "version": 2, "sha256": "a" * 64}
    service.put_vacancies(session, VacancyBatch.model_validate({"vacancies": stored}), now=NOW)
    session.commit()
    request = SearchRequest.model_validate(search_request(NOW))
    found = search.search_local(session, request, now=NOW, node_id="rcc-test", region_code="E12000008")
    expected = {d["id"]: VacancyDocument.model_validate(d) for d in stored}
    assert sorted(r.vacancy.id for r in found) == sorted(expected)
    for result in found:
        assert result.vacancy == expected[result.vacancy.id]
        assert result.vacancy.model_dump(mode="json") == expected[result.vacancy.id].model_dump(mode="json")
        assert SearchResult.model_validate(result.model_dump()) == result
