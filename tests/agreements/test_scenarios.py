"""Life after activation, between in-process nodes: revocation, review lapse and renewal, expiry, a three-party
MoU with one withdrawal, accession by a new version, and the policy cache noticing every committed change."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session

from agreements import bundle as bundles
from agreements import exchange, service
from agreements.documents import digest
from agreements.errors import AgreementStateConflict, DocumentInvalid, EventInvalid
from agreements.models import AgreementMessage, Bundle
from agreements.policy import DenyReason, decide, providers_for, recipients_for
from agreements.runtime import AgreementsRuntime
from tests.agreements.conftest import GM, NAT, SE, Clock, Party, document, grant, variant
from tests.agreements.test_service import ask, make_active, state

pytestmark = pytest.mark.postgres

VACANCIES, SEARCH = "capacity.vacancies", "placement-search"


class TestRevocation:
    def test_revocation_by_one_side_stops_access_on_the_other_at_once(self, se: Party, gm: Party) -> None:
        make_active(se, gm)
        assert ask(se).permit and ask(gm).permit
        revoked = gm.call(service.revoke, agreement_id="se-gm-mou", reason="Data breach under investigation")
        assert revoked.state == "revoked"
        assert ask(gm).reason == DenyReason.revoked
        gm.send_to(se, "se-gm-mou")
        # The cached policy store of SE sees the committed event on the very next decision.
        assert ask(se).reason == DenyReason.revoked
        event = next(e for e in se.call(service.get, agreement_id="se-gm-mou").events if e.type == "revoked")
        assert (event.by, event.reason) == (GM, "Data breach under investigation")
        again = gm.call(service.revoke, agreement_id="se-gm-mou", reason="twice")  # idempotent
        assert [e.type for e in again.events].count("revoked") == 1

    def test_a_revoked_agreement_cannot_be_signed(self, se: Party) -> None:
        se.call(service.create, document=document())
        se.call(service.revoke, agreement_id="se-gm-mou", reason="Drafted in error")
        with pytest.raises(AgreementStateConflict) as raised:
            se.call(service.sign, agreement_id="se-gm-mou")
        assert raised.value.state == "revoked"


class TestTheClock:
    def test_review_lapse_suspends_until_both_parties_renew(self, se: Party, gm: Party, clock: Clock) -> None:
        make_active(se, gm)
        clock.set(datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
        listed = se.call(service.list_agreements, attention=True)
        assert [(a.agreement, [(w.kind, w.threshold) for w in a.attention]) for a in listed] == [
            ("se-gm-mou", [("review-due", 90)])
        ]
        clock.set(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
        assert state(se) == "suspended"
        assert ask(se).reason == DenyReason.suspended_review

        with pytest.raises(EventInvalid) as raised:
            se.call(service.renew, agreement_id="se-gm-mou", review_by=date(2028, 1, 1))
        assert [e["path"] for e in raised.value.errors or []] == ["/review_by"]
        se.call(service.renew, agreement_id="se-gm-mou", review_by=date(2027, 1, 31))
        se.send_to(gm, "se-gm-mou")
        assert state(gm) == "suspended"  # one party's renewal is not enough
        renewed = gm.call(service.renew, agreement_id="se-gm-mou", review_by=date(2027, 1, 31))
        assert (renewed.state, renewed.review_by) == ("active", date(2027, 1, 31))
        gm.send_to(se, "se-gm-mou")
        assert ask(se).permit

        clock.set(datetime(2027, 4, 1, 0, 0, tzinfo=UTC))
        assert state(se) == "expired"
        assert ask(se).reason == DenyReason.expired
        assert se.call(service.list_agreements, attention=True) == []
        assert [a.agreement for a in se.call(service.list_agreements, state="expired")] == ["se-gm-mou"]

    def test_an_agreement_not_yet_in_force_is_not_active(self, se: Party, gm: Party, clock: Clock) -> None:
        make_active(se, gm, document(valid_from="2025-07-01", review_by="2026-06-30"))
        assert (state(se), ask(se).reason) == ("proposed", DenyReason.not_active)
        clock.set(datetime(2025, 7, 1, tzinfo=UTC))
        assert (state(se), ask(se).permit) == ("active", True)


class TestThreeParties:
    def test_one_party_withdraws_and_the_other_two_keep_sharing(self, se: Party, gm: Party, nat: Party) -> None:
        mou = document(
            "regional-mou",
            [SE, GM, NAT],
            [
                grant(SE, [GM, NAT], [VACANCIES], [SEARCH]),
                grant(GM, [SE, NAT], [VACANCIES], [SEARCH]),
                grant(NAT, [SE, GM], ["statistics.looked-after"], ["national-statistics"]),
            ],
        )
        se.call(service.create, document=mou)
        se.call(service.sign, agreement_id="regional-mou")
        se.send_to(gm, "regional-mou")
        se.send_to(nat, "regional-mou")
        gm.call(service.sign, agreement_id="regional-mou")
        gm.send_to(nat, "regional-mou")
        nat.call(service.sign, agreement_id="regional-mou")
        for sender in (nat, gm):
            for receiver in (se, gm, nat):
                if receiver is not sender:
                    sender.send_to(receiver, "regional-mou")
        assert {state(p, "regional-mou") for p in (se, gm, nat)} == {"active"}

        gm.call(service.withdraw, agreement_id="regional-mou", reason="Leaving the regional arrangement")
        gm.send_to(se, "regional-mou")
        gm.send_to(nat, "regional-mou")
        for node in (se, nat):
            assert state(node, "regional-mou") == "active"
            assert ask(node, provider=SE, requester=NAT).permit
            assert ask(
                node, provider=NAT, requester=SE, dataset="statistics.looked-after", purpose="national-statistics"
            ).permit
            assert ask(node, provider=SE, requester=GM).reason == DenyReason.not_a_party
            assert ask(node, provider=GM, requester=SE).reason == DenyReason.not_a_party
        now = se.runtime.now()
        assert list(recipients_for(se.runtime.policy, provider=SE, dataset=VACANCIES, purpose=SEARCH, at=now)) == [NAT]
        assert list(providers_for(nat.runtime.policy, requester=NAT, dataset=VACANCIES, purpose=SEARCH, at=now)) == [SE]
        assert se.call(service.get, agreement_id="regional-mou").withdrawn == [GM]


class TestAccession:
    def test_a_new_party_accedes_by_a_new_version_every_party_signs(self, se: Party, gm: Party, nat: Party) -> None:
        v1 = make_active(se, gm)
        v2 = document(
            parties=[SE, GM, NAT],
            grants=[grant(SE, [GM, NAT], [VACANCIES], [SEARCH]), grant(GM, [SE], [VACANCIES], [SEARCH])],
            version=2,
            supersedes={"id": v1["id"], "version": 1, "sha256": digest(v1)},
        )
        se.call(service.create, document=v2)
        se.call(service.sign, agreement_id="se-gm-mou", version=2)
        se.send_to(gm, "se-gm-mou")
        se.send_to(nat, "se-gm-mou")  # the acceding party receives version 2 only: it was never party to 1
        assert [v.state for v in gm.call(service.get, agreement_id="se-gm-mou").versions] == ["active", "proposed"]
        assert [v.state for v in nat.call(service.get, agreement_id="se-gm-mou").versions] == ["proposed"]
        assert ask(se, requester=NAT).reason == DenyReason.not_active  # version 2 is not in force yet
        gm.call(service.sign, agreement_id="se-gm-mou", version=2)
        nat.call(service.sign, agreement_id="se-gm-mou", version=2)
        for sender in (gm, nat):
            sender.send_to(se, "se-gm-mou")
        assert [v.state for v in se.call(service.get, agreement_id="se-gm-mou").versions] == ["superseded", "active"]
        decision = ask(se, requester=NAT)
        assert (decision.permit, decision.version) == (True, 2)

        # A node holding version 2 refuses a version 1 other than the one version 2 pins.
        gm.clean()
        for item in se.call(exchange.outbox_for, agreement_id="se-gm-mou", version=2):
            if item.to == GM:
                gm.call(exchange.receive, message=item.message, sender_node_id=SE)
        forged = AgreementMessage(agreement=v1["id"], version=1, document=variant(v1, title="Forged"))
        with pytest.raises(DocumentInvalid):
            gm.call(exchange.receive, message=forged, sender_node_id=SE)


class TestExchange:
    def test_outbox_holds_one_message_per_other_party_and_bundles_import(self, se: Party, gm: Party) -> None:
        make_active(se, gm)
        outbox = se.call(exchange.outbox_for, agreement_id="se-gm-mou")
        assert [(o.to, len(o.message.signatures)) for o in outbox] == [(GM, 2)]
        bundle_file = Bundle.model_validate_json(se.call(bundles.build, agreement_id="se-gm-mou").model_dump_json())
        gm.clean()
        [result] = gm.call(exchange.import_bundle, bundle=bundle_file)
        assert (result.document_stored, result.signatures_stored) == (True, 2)
        assert state(gm) == "active"


class TestProposal:
    def test_recording_a_proposal_signs_and_leaves_the_messages_for_phase_two(self, se: Party, gm: Party) -> None:
        se.call(service.create, document=document())
        version = se.call(service.record_proposal, agreement_id="se-gm-mou")
        assert (version.facts.proposed, sorted(version.facts.signers)) == (True, [SE])
        assert [e.type for e in se.call(service.get, agreement_id="se-gm-mou").events] == ["signed", "proposed"]
        [message] = se.call(exchange.outbox_for, agreement_id="se-gm-mou")
        assert (message.to, len(message.message.events)) == (GM, 2)
        gm.call(exchange.receive, message=message.message, sender_node_id=SE)
        assert state(gm) == "proposed"


class TestPolicyStore:
    def test_a_change_committed_by_another_worker_is_seen_by_the_next_decision(self, se: Party, gm: Party) -> None:
        make_active(se, gm)
        store = se.runtime.policy
        assert ask(se).permit
        rebuilds, verifications = store.rebuilds, store.cache.verifications
        for _ in range(20):
            assert ask(se).permit
        assert store.rebuilds == rebuilds  # nothing changed: one counter read per decision, no rebuild
        # Another process of the same node (its own runtime, same database) revokes.
        other_worker = AgreementsRuntime.standalone(
            node_id=SE, keys=se.runtime.keys, engine=se.engine, peers=se.federation, clock=se.runtime.clock
        )
        with Session(se.engine) as session:
            service.revoke(session, runtime=other_worker, agreement_id="se-gm-mou", reason="Stop now")
            assert (
                decide(
                    session, provider=SE, requester=GM, dataset=VACANCIES, purpose=SEARCH, at=se.runtime.now()
                ).reason
                == "revoked"
            )
            assert ask(se).permit  # not committed yet: the store only ever sees committed state
            session.commit()
        assert ask(se).reason == DenyReason.revoked
        assert store.rebuilds == rebuilds + 1
        assert store.cache.verifications == verifications + 1  # only the changed agreement was re-verified
