"""The comparison views: every region's cap against the median, protocols' duties side by side."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.core.keys import KeyRing
from registry.publications import service
from registry.publications.compare import compare_fee_caps, compare_placement_protocols
from registry.publications.kinds import Kind
from registry.publications.signatures import Signer
from schemas import NeedLevel, SettingType
from tests.registry.publications import documents
from tests.registry.publications.documents import CAMDEN, MANCHESTER

pytestmark = pytest.mark.postgres

ON = date(2025, 6, 1)
GM, LONDON = "rcc-greater-manchester", "rcc-london"


class Federation:
    """Documents from three regions in one node's register, as phase 2 will store peers' copies."""

    def __init__(self, own: Signer) -> None:
        self.rings = {GM: KeyRing.generate(), LONDON: KeyRing.generate()}
        self.signers = {
            own.node_id: own,
            GM: Signer(GM, "E12000002", self.rings[GM].active),
            LONDON: Signer(LONDON, "E12000007", self.rings[LONDON].active),
        }
        self.own = own

    def keys(self, node_id: str, kid: str) -> Ed25519PublicKey | None:
        if node_id == self.own.node_id:
            return self.own.key.public if kid == self.own.key.kid else None
        key = self.rings[node_id].get(kid) if node_id in self.rings else None
        return key.public if key else None

    def publish(self, session: Session, node_id: str, kind: Kind, document: dict[str, Any], pid: str) -> None:
        service.publish(session, signer=self.signers[node_id], kind=kind, document=document, publication_id=pid)


def _cap(owner: str, covers: dict[str, Any], fee: float) -> dict[str, Any]:
    return documents.fee_cap(
        owner,
        covers=covers,
        caps=[
            {"setting_type": "childrens-home", "need_level": "standard", "max_weekly_fee": fee},
            {"setting_type": "independent-fostering-agency", "need_level": "standard", "max_weekly_fee": 900},
        ],
    )


@pytest.fixture
def federation(session: Session, signer: Signer) -> Federation:
    fed = Federation(signer)
    fed.publish(session, signer.node_id, Kind.fee_cap, _cap(signer.node_id, {"region_code": "E12000008"}, 5500), "se")
    fed.publish(session, GM, Kind.fee_cap, _cap(GM, {"la_codes": [MANCHESTER]}, 4800.5), "gm")
    fed.publish(
        session, LONDON, Kind.fee_cap, _cap(LONDON, {"region_code": "E12000007", "la_codes": [CAMDEN]}, 6200), "ldn"
    )
    fed.publish(
        session,
        LONDON,
        Kind.fee_cap,
        _cap(LONDON, {"region_code": "E12000007"}, 9999) | {"effective_from": "2025-07-01"},
        "x",
    )
    fed.publish(session, signer.node_id, Kind.placement_protocol, documents.placement_protocol(), "se-protocol")
    gm_protocol = documents.placement_protocol(
        GM,
        parties={"nodes": [GM], "las": [MANCHESTER]},
        notification_duties=[
            {
                "notify": "host-authority",
                "duty_holder": "placing-authority",
                "information": "Written notice.",
                "timing": {"when": "before-placement", "working_days": 5},
                "emergency_timing": {"when": "after-placement", "working_days": 5},
                "regulations": ["reg 13(4)"],
            },
            {
                "notify": "host-health",
                "duty_holder": "placing-authority",
                "information": "Notice to the ICB.",
                "timing": {"when": "after-placement", "working_days": 5},
                "regulations": ["reg 13"],
            },
            {
                "notify": "virtual-school",
                "duty_holder": "placing-authority",
                "information": "Notice to the virtual school.",
                "timing": {"when": "after-placement", "working_days": 3},
                "regulations": ["reg 13"],
            },
        ],
    )
    fed.publish(session, GM, Kind.placement_protocol, gm_protocol, "gm-protocol")
    session.commit()
    return fed


class TestFeeCapComparison:
    def test_every_region_against_the_median(self, session: Session, federation: Federation) -> None:
        table = compare_fee_caps(
            session, setting_type=SettingType.childrens_home, need_level=NeedLevel.standard, on=ON, keys=federation.keys
        )
        assert table.median == 5500
        rows: list[tuple[object, ...]] = [
            (r.node_id, r.region_code, r.max_weekly_fee, r.difference_from_median, r.percent_from_median)
            for r in table.rows
        ]
        assert rows == [
            (LONDON, "E12000007", 6200, 700, 12.7),
            ("rcc-test", "E12000008", 5500, 0, 0.0),
            (GM, "E12000002", 4800.5, -699.5, -12.7),
        ]
        assert table.rows[0].region_name == "London"
        assert "E12000008" not in table.regions_without_cap and "E12000001" in table.regions_without_cap
        assert len(table.regions_without_cap) == 6
        assert table.synthetic is True and table.unverified == []

    def test_no_caps_gives_an_empty_table(self, session: Session, federation: Federation) -> None:
        table = compare_fee_caps(
            session,
            setting_type=SettingType.secure_childrens_home,
            need_level=NeedLevel.standard,
            on=ON,
            keys=federation.keys,
        )
        assert table.rows == [] and table.median is None and len(table.regions_without_cap) == 9

    def test_over_http_documents_the_node_cannot_verify_are_set_aside(
        self, client: TestClient, reader: dict[str, str], federation: Federation
    ) -> None:
        response = client.get(
            "/v1/compare/fee-caps",
            params={"setting_type": "childrens-home", "need_level": "standard", "on": ON.isoformat()},
            headers=reader,
        )
        assert response.status_code == 200
        body = response.json()
        # Phase 1 trusts only this node's keys: peers' copies are named, not used.
        assert [row["publication"]["id"] for row in body["rows"]] == ["se"]
        assert sorted(ref["id"] for ref in body["unverified"]) == ["gm", "ldn"]
        assert body["median"] == 5500

    def test_bad_parameters_are_422(self, client: TestClient, reader: dict[str, str]) -> None:
        response = client.get("/v1/compare/fee-caps", params={"setting_type": "castle"}, headers=reader)
        assert response.status_code == 422
        assert {e["path"] for e in response.json()["errors"]} == {"query:setting_type", "query:need_level"}


class TestProtocolComparison:
    def test_duties_side_by_side(self, session: Session, federation: Federation) -> None:
        view = compare_placement_protocols(session, on=ON, keys=federation.keys)
        assert [column.key for column in view.protocols] == [f"{GM}/gm-protocol", "rcc-test/se-protocol"]
        rows = {(row.notify, row.duty_holder): row for row in view.duties}
        assert list(rows) == [
            ("host-authority", "placing-authority"),
            ("host-health", "placing-authority"),
            ("virtual-school", "placing-authority"),
        ]
        host = rows[("host-authority", "placing-authority")]
        assert host.differs is True
        assert host.protocols[f"{GM}/gm-protocol"][0].timing.working_days == 5
        assert host.protocols["rcc-test/se-protocol"][0].timing.working_days == 0
        assert rows[("host-health", "placing-authority")].differs is False
        school = rows[("virtual-school", "placing-authority")]
        assert school.differs is True and school.protocols["rcc-test/se-protocol"] == []
        assert view.protocols[1].distance_approval_by == "Director of Children's Services"
        assert view.protocols[1].dispute_steps == 2

    def test_over_http(self, client: TestClient, reader: dict[str, str], federation: Federation) -> None:
        body = client.get("/v1/compare/placement-protocols", params={"on": ON.isoformat()}, headers=reader).json()
        assert [column["key"] for column in body["protocols"]] == ["rcc-test/se-protocol"]
        assert [ref["id"] for ref in body["unverified"]] == ["gm-protocol"]
        before = client.get("/v1/compare/placement-protocols", params={"on": "2020-01-01"}, headers=reader).json()
        assert before["protocols"] == [] and before["duties"] == []
