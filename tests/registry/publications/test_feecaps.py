"""The fee-cap check: boundaries (equal, a penny over, no cap, not yet effective), specificity, trust."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from registry.core.node import Node
from registry.publications import service, signatures
from registry.publications.feecaps import fee_within_cap, load_fee_caps
from registry.publications.kinds import Kind
from registry.publications.signatures import Signer
from tests.registry.publications import documents
from tests.registry.publications.documents import KENT, MANCHESTER, WEST_SUSSEX

pytestmark = pytest.mark.postgres

CH, IFA, SECURE = "childrens-home", "independent-fostering-agency", "secure-childrens-home"


@pytest.fixture
def caps(node: Node, signer: Signer) -> dict[str, service.Held]:
    """South East caps for 2025-26, a Kent-only cap, and next year's South East caps."""
    made = {}
    with Session(node.engine, expire_on_commit=False) as db:
        made["region"] = service.publish(
            db,
            signer=signer,
            kind=Kind.fee_cap,
            document=documents.fee_cap(effective_to="2026-03-31"),
            publication_id="se-2025",
        )
        made["kent"] = service.publish(
            db,
            signer=signer,
            kind=Kind.fee_cap,
            document=documents.fee_cap(
                title="Kent fee caps (synthetic)",
                covers={"la_codes": [KENT]},
                caps=[{"setting_type": CH, "need_level": "standard", "max_weekly_fee": 5800}],
            ),
            publication_id="kent",
        )
        made["next"] = service.publish(
            db,
            signer=signer,
            kind=Kind.fee_cap,
            document=documents.fee_cap(
                effective_from="2026-04-01",
                caps=[{"setting_type": CH, "need_level": "standard", "max_weekly_fee": 5700.5}],
            ),
            publication_id="se-2026",
        )
        db.commit()
    return made


def check(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"setting_type": CH, "need_level": "standard", "la": WEST_SUSSEX, "on": "2025-06-01", **body}
    response = client.post("/v1/fee-caps/check", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.usefixtures("caps")
class TestCheckBoundaries:
    @pytest.mark.parametrize(
        ("fee", "need", "outcome", "excess"),
        [
            (5500, "standard", "within", None),
            (5500.00, "standard", "within", None),
            (5499.99, "standard", "within", None),
            (5500.01, "standard", "exceeds", 0.01),
            (7250.75, "complex", "within", None),
            (7250.76, "complex", "exceeds", 0.01),
            (9000, "complex", "exceeds", 1749.25),
            (0, "standard", "within", None),
        ],
    )
    def test_equal_is_within_and_a_penny_over_exceeds(
        self, client: TestClient, reader: dict[str, str], fee: float, need: str, outcome: str, excess: float | None
    ) -> None:
        result = check(client, reader, weekly_fee=fee, need_level=need)
        assert result["outcome"] == outcome
        assert result["within_cap"] is (outcome == "within")
        assert result["excess"] == excess
        assert result["cap"]["publication"]["id"] == "se-2025"
        assert result["cap"]["verification"]["ok"] is True

    def test_the_answer_names_the_signed_document_it_rests_on(
        self, client: TestClient, reader: dict[str, str], caps: dict[str, service.Held]
    ) -> None:
        result = check(client, reader, weekly_fee=5500.01)
        region = caps["region"].version
        assert result["cap"]["publication"] == {
            "node_id": "rcc-test",
            "id": "se-2025",
            "version": 1,
            "sha256": region.sha256,
            "title": "South East fee caps 2025-26 (synthetic)",
            "synthetic": True,
        }
        assert result["cap"]["signature"] == region.signature
        assert result["cap"]["max_weekly_fee"] == 5500
        assert "exceeds the £5,500.00 cap" in result["detail"] and "by £0.01" in result["detail"]

    def test_no_cap_for_that_setting_or_that_region(self, client: TestClient, reader: dict[str, str]) -> None:
        assert check(client, reader, weekly_fee=100, setting_type=SECURE)["outcome"] == "no-cap"
        elsewhere = check(client, reader, weekly_fee=100, la=MANCHESTER)
        assert elsewhere["outcome"] == "no-cap" and elsewhere["within_cap"] is None and elsewhere["cap"] is None
        assert elsewhere["region_code"] == "E12000002"

    def test_a_cap_not_yet_effective_does_not_apply_but_is_announced(
        self, client: TestClient, reader: dict[str, str]
    ) -> None:
        before = check(client, reader, weekly_fee=100, on="2025-03-31")
        assert before["outcome"] == "no-cap" and before["within_cap"] is None
        assert before["upcoming"]["publication"]["id"] == "se-2025"
        assert before["upcoming"]["effective_from"] == "2025-04-01"
        assert check(client, reader, weekly_fee=5500, on="2025-04-01")["outcome"] == "within"

    def test_a_cap_that_ended_gives_way_to_the_next(self, client: TestClient, reader: dict[str, str]) -> None:
        last_day = check(client, reader, weekly_fee=5700.5, on="2026-03-31")
        assert last_day["outcome"] == "exceeds" and last_day["cap"]["publication"]["id"] == "se-2025"
        first_day = check(client, reader, weekly_fee=5700.5, on="2026-04-01")
        assert first_day["outcome"] == "within" and first_day["cap"]["publication"]["id"] == "se-2026"
        assert check(client, reader, weekly_fee=5700.51, on="2026-04-01")["excess"] == 0.01
        complex_next_year = check(client, reader, weekly_fee=1, need_level="complex", on="2026-04-01")
        assert complex_next_year["outcome"] == "no-cap"

    def test_an_la_specific_cap_beats_the_regional_one(self, client: TestClient, reader: dict[str, str]) -> None:
        kent = check(client, reader, weekly_fee=5800, la=KENT)
        assert kent["outcome"] == "within" and kent["cap"]["publication"]["id"] == "kent"
        assert check(client, reader, weekly_fee=5800.01, la=KENT)["excess"] == 0.01
        # Kent's own document prices only standard children's homes; the region's answers the rest.
        assert (
            check(client, reader, weekly_fee=950.07, setting_type=IFA, la=KENT)["cap"]["publication"]["id"] == "se-2025"
        )

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            ({"la": "E10999999"}, "/la"),
            ({"la": "Kent"}, "/la"),
            ({"weekly_fee": 5500.001}, "/weekly_fee"),
            ({"weekly_fee": -1}, "/weekly_fee"),
            ({"setting_type": "castle"}, "/setting_type"),
            ({"on": "31/03/2026"}, "/on"),
            ({"child_name": "x"}, "/child_name"),
        ],
    )
    def test_bad_questions_are_422(
        self, client: TestClient, reader: dict[str, str], change: dict[str, Any], path: str
    ) -> None:
        body = {"setting_type": CH, "need_level": "standard", "la": WEST_SUSSEX, "weekly_fee": 1, **change}
        response = client.post("/v1/fee-caps/check", json=body, headers=reader)
        assert response.status_code == 422
        assert [e["path"] for e in response.json()["errors"]] == [path]


class TestFeeWithinCap:
    @pytest.mark.usefixtures("caps")
    @pytest.mark.parametrize(
        ("fee", "la", "on", "expected"),
        [
            (Decimal("5500"), WEST_SUSSEX, date(2025, 6, 1), True),
            (5500.01, WEST_SUSSEX, date(2025, 6, 1), False),
            (5500.001, WEST_SUSSEX, date(2025, 6, 1), False),
            (5800, KENT, date(2025, 6, 1), True),
            (100, MANCHESTER, date(2025, 6, 1), None),
            (100, WEST_SUSSEX, date(2025, 3, 31), None),
            (100, "E10999999", date(2025, 6, 1), None),
        ],
    )
    def test_true_false_or_none(
        self, session: Session, node: Node, fee: Decimal | float, la: str, on: date, expected: bool | None
    ) -> None:
        kwargs = {"setting_type": CH, "need_level": "standard", "weekly_fee": fee, "la": la, "on": on}
        assert fee_within_cap(session, **kwargs) is expected  # type: ignore[arg-type]
        assert fee_within_cap(session, keys=signatures.keys_for(node), **kwargs) is expected  # type: ignore[arg-type]

    def test_a_withdrawn_cap_no_longer_applies(self, session: Session, signer: Signer) -> None:
        held = service.publish(
            session, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="c"
        )
        on = date(2025, 6, 1)
        assert fee_within_cap(session, setting_type=CH, need_level="standard", weekly_fee=1, la=KENT, on=on) is True
        service.withdraw(session, signer=signer, publication_id="c", if_match=service.etag(held.version))
        assert fee_within_cap(session, setting_type=CH, need_level="standard", weekly_fee=1, la=KENT, on=on) is None

    @pytest.mark.usefixtures("caps")
    def test_a_tampered_cap_is_set_aside_when_keys_are_given(
        self, client: TestClient, reader: dict[str, str], node: Node, session: Session
    ) -> None:
        with node.engine.begin() as connection:
            connection.execute(
                text("UPDATE publication_version SET signature = :s WHERE publication_id = 'se-2025'"),
                {"s": service.get_latest(session, "kent", node_id="rcc-test").version.signature},
            )
        result = check(client, reader, weekly_fee=9999)
        assert result["outcome"] == "no-cap"
        assert [ref["id"] for ref in result["unverified"]] == ["se-2025"]
        loaded = load_fee_caps(session, on=date(2025, 6, 1), keys=signatures.keys_for(node))
        assert loaded.within(setting_type=CH, need_level="standard", weekly_fee=1, la=WEST_SUSSEX) is None
