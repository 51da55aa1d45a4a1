"""Agreements between in-process nodes (own databases and key rings) exchanging messages through receive().

Each scenario is what two or three RCCs would live through: draft, sign, countersign, decide; tampering and
forged signatures refused; revocation, expiry and review lapse with the clock moved; a three-party MoU with
a withdrawal; an accession by a new version.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from agreements import bundle, exchange, service, signatures
from agreements.documents import digest
from agreements.errors import (
    AgreementNotFound,
    AgreementStateConflict,
    DocumentInvalid,
    NotAParty,
    SignatureRefused,
    VersionConflict,
)
from agreements.ledger import bump_revision
from agreements.models import AgreementMessage, AgreementVersion
from agreements.policy import DenyReason, decide
from registry.core.signing import canonical
from tests.agreements.conftest import GM, NAT, SE, Party, document, variant
from tests.support import jose

pytestmark = pytest.mark.postgres

VACANCIES, SEARCH = "capacity.vacancies", "placement-search"


def state(node: Party, agreement_id: str = "se-gm-mou", version: int | None = None) -> str:
    return node.call(service.get, agreement_id=agreement_id, version=version).state


def ask(node: Party, provider: str = SE, requester: str = GM, dataset: str = VACANCIES, **kw):
    return decide(
        node.runtime.policy,
        provider=provider,
        requester=requester,
        dataset=dataset,
        purpose=kw.pop("purpose", SEARCH),
        at=node.runtime.now(),
        **kw,
    )


def make_active(se: Party, gm: Party, doc: dict | None = None) -> dict:
    """SE drafts and signs, GM receives and countersigns, SE receives GM's signature."""
    doc = doc or document()
    se.call(service.create, document=doc)
    se.call(service.sign, agreement_id=doc["id"])
    se.send_to(gm, doc["id"])
    gm.call(service.sign, agreement_id=doc["id"], sha256=digest(doc))
    gm.send_to(se, doc["id"])
    return doc


class TestLifecycleBetweenTwoNodes:
    def test_draft_sign_exchange_countersign_then_data_may_flow_both_ways(self, se: Party, gm: Party) -> None:
        doc = document()
        created, was_new = se.call(service.create, document=doc)
        assert (created.state, was_new, created.sha256) == ("draft", True, digest(doc))
        assert ask(se).reason == DenyReason.not_active

        signed = se.call(service.sign, agreement_id="se-gm-mou")
        assert (signed.state, signed.missing_signatures) == ("proposed", [GM])
        # An independent JOSE check (cryptography only) of SE's signature over JCS(document).
        header = jose.verify_detached(doc, signed.signatures[0].jws, se.runtime.keys.jwks(), "rcc-agreement+jws")
        assert header["kid"] == se.runtime.keys.active.kid
        signed_event = next(e for e in signed.events if e.type == "signed")
        jose.verify_detached(signed_event.event, signed_event.jws, se.runtime.keys.jwks(), "rcc-agreement-event+jws")

        [received] = se.send_to(gm, "se-gm-mou")
        assert (received.document_stored, received.signatures_stored, received.events_stored) == (True, 1, 1)
        assert state(gm) == "proposed"
        countersigned = gm.call(service.sign, agreement_id="se-gm-mou", sha256=digest(doc))
        assert countersigned.state == "active"
        assert ask(gm).permit and ask(gm).agreement_id == "se-gm-mou"

        assert state(se) == "proposed"
        gm.send_to(se, "se-gm-mou")
        assert state(se) == "active"
        assert ask(se).permit
        assert (
            ask(
                se, provider=GM, requester=SE, dataset="statistics.looked-after", purpose="sufficiency-planning"
            ).min_cell_size
            == 10
        )

        again = gm.send_to(se, "se-gm-mou")
        assert [(r.document_stored, r.signatures_stored, r.events_stored) for r in again] == [(False, 0, 0)]
        report = se.call(bundle.verify, agreement_id="se-gm-mou")
        assert report.valid and [s.node_id for s in report.versions[0].signatures if s.valid] == [SE, GM]

    def test_signing_a_document_other_than_the_one_read_is_refused(self, se: Party) -> None:
        se.call(service.create, document=document())
        with pytest.raises(AgreementStateConflict):
            se.call(service.sign, agreement_id="se-gm-mou", sha256="0" * 64)

    def test_a_node_cannot_draft_an_agreement_it_is_not_party_to(self, nat: Party) -> None:
        with pytest.raises(NotAParty):
            nat.call(service.create, document=document())

    def test_a_stored_version_is_immutable(self, se: Party) -> None:
        doc = document()
        se.call(service.create, document=doc)
        assert se.call(service.create, document=doc)[1] is False
        with pytest.raises(VersionConflict) as raised:
            se.call(service.create, document=variant(doc, title="Another title"))
        assert raised.value.stored_sha256 == digest(doc)

    def test_an_invalid_draft_is_refused_with_json_paths(self, se: Party) -> None:
        doc = document()
        doc["grants"][0]["purposes"] = ["marketing"]
        with pytest.raises(DocumentInvalid) as raised:
            se.call(service.create, document=doc)
        assert [e["path"] for e in raised.value.errors or []] == ["/grants/0/purposes/0"]


class TestTamperingAndForgery:
    def test_a_one_byte_change_to_a_signed_document_fails_verification(self, se: Party, gm: Party) -> None:
        make_active(se, gm)
        signed_bundle = se.call(bundle.build, agreement_id="se-gm-mou")
        tampered = signed_bundle.model_copy(deep=True)
        tampered.versions[0].document["title"] += "!"
        report = bundle.verify_bundle(tampered, se.federation)
        assert not report.valid
        assert {s.reason for s in report.versions[0].signatures} == {"bad-signature"}
        with pytest.raises(AssertionError):
            jose.verify_detached(
                tampered.versions[0].document,
                tampered.versions[0].signatures[0].jws,
                se.runtime.keys.jwks(),
                "rcc-agreement+jws",
            )

    def test_a_document_altered_in_the_database_stops_being_active(self, se: Party, gm: Party) -> None:
        doc = make_active(se, gm)
        assert ask(se).permit
        altered = variant(doc, title=doc["title"] + "!")
        with Session(se.engine) as session:  # what someone with SQL access to the node's database could do
            session.execute(
                update(AgreementVersion)
                .where(col(AgreementVersion.agreement_id) == "se-gm-mou")
                .values(document=canonical(altered).decode())
            )
            bump_revision(session)
            session.commit()
        decision = ask(se)
        assert (decision.permit, decision.reason) == (False, DenyReason.not_active)
        assert not se.call(bundle.verify, agreement_id="se-gm-mou").valid

    def test_a_signature_by_a_non_party_is_refused(self, se: Party, gm: Party, nat: Party) -> None:
        doc = document()
        se.call(service.create, document=doc)
        intruder = signatures.sign(doc, nat.runtime.keys.active, typ=signatures.DOCUMENT_TYP)
        message = AgreementMessage(
            agreement=doc["id"], version=1, document=doc, signatures=[{"node_id": NAT, "jws": intruder}]
        )
        with pytest.raises(SignatureRefused) as raised:
            gm.call(exchange.receive, message=message, sender_node_id=SE)
        assert raised.value.reason == "not-a-party"
        # Passing it off as GM's signature fails too: that key is not GM's.
        message.signatures[0].node_id = GM
        with pytest.raises(SignatureRefused) as raised:
            gm.call(exchange.receive, message=message, sender_node_id=SE)
        assert raised.value.reason == "unknown-key"
        with pytest.raises(AgreementNotFound):
            gm.call(service.get, agreement_id=doc["id"])  # nothing half-written

    def test_a_sender_that_is_not_a_party_is_refused(self, se: Party, nat: Party) -> None:
        doc = document()
        message = AgreementMessage(agreement=doc["id"], version=1, document=doc)
        with pytest.raises(NotAParty) as raised:
            se.call(exchange.receive, message=message.model_dump(), sender_node_id=NAT)
        assert raised.value.node_id == NAT

    def test_a_signature_by_a_retired_key_is_refused_but_old_signatures_still_stand(self, se: Party, gm: Party) -> None:
        doc = make_active(se, gm)
        second = document("se-gm-second")
        se.call(service.create, document=second)
        se.call(service.sign, agreement_id="se-gm-second")
        se.send_to(gm, "se-gm-second")
        made_before_rotation = signatures.sign(second, gm.runtime.keys.active, typ=signatures.DOCUMENT_TYP)
        gm.rotate()
        late = AgreementMessage(
            agreement="se-gm-second",
            version=1,
            document=second,
            signatures=[{"node_id": GM, "jws": made_before_rotation}],
        )
        with pytest.raises(SignatureRefused) as raised:
            se.call(exchange.receive, message=late, sender_node_id=GM)
        assert raised.value.reason == "retired-key"
        assert state(se) == "active"  # GM's earlier signature, by the now-retired key, still verifies
        report = se.call(bundle.verify, agreement_id=doc["id"])
        assert report.valid and {s.key_status for s in report.versions[0].signatures} == {"active", "retired"}
        gm.call(service.sign, agreement_id="se-gm-second")  # the new key signs fine
        gm.send_to(se, "se-gm-second")
        assert state(se, "se-gm-second") == "active"
