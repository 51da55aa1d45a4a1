"""The computed lifecycle: states from signatures, signed events and the clock; warnings 90 and 30 days ahead."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from agreements.documents import digest
from agreements.ledger import VerifiedCache, compile_group
from agreements.lifecycle import State, VersionFacts
from tests.agreements.conftest import GM, NAT, SE, document, grant, signed_event, stored_version


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def facts(*versions) -> list[VersionFacts]:  # newest last
    return compile_group(list(versions), VerifiedCache())


class TestStates:
    def test_unsigned_is_draft_partly_signed_is_proposed_fully_signed_is_active(self, rings) -> None:
        doc = document()
        now = at("2025-06-01T12:00:00")
        assert facts(stored_version(doc, rings, signers=[]))[0].state_at(now) == State.draft
        assert facts(stored_version(doc, rings, signers=[SE]))[0].state_at(now) == State.proposed
        assert facts(stored_version(doc, rings))[0].state_at(now) == State.active

    def test_a_proposed_event_alone_makes_it_proposed(self, rings) -> None:
        doc = document()
        event = signed_event(rings[SE], SE, doc, "proposed", at("2025-05-01T00:00:00"))
        assert (
            facts(stored_version(doc, rings, signers=[], events=[event]))[0].state_at(at("2025-06-01"))
            == State.proposed
        )

    @pytest.mark.parametrize(
        ("moment", "state"),
        [
            ("2025-03-31T23:59:59", State.proposed),  # signed by all, not yet in force
            ("2025-04-01T00:00:00", State.active),
            ("2026-03-31T23:59:59", State.active),  # the review day itself still counts
            ("2026-04-01T00:00:00", State.suspended),
            ("2027-03-31T23:59:59", State.suspended),
            ("2027-04-01T00:00:00", State.expired),
        ],
    )
    def test_the_clock_moves_it_through_validity_and_review(self, rings, moment: str, state: State) -> None:
        assert facts(stored_version(document(), rings))[0].state_at(at(moment)) == state

    def test_a_signature_that_does_not_verify_does_not_count(self, rings) -> None:
        doc = document()
        version = stored_version(doc, rings)
        forged = version.signatures[1].__class__(
            GM, rings[GM].active.kid, version.signatures[1].jwk, version.signatures[0].jws, version.recorded_at
        )
        tampered = version.__class__(version.document, "test", version.recorded_at, (version.signatures[0], forged), ())
        compiled = facts(tampered)[0]
        assert compiled.missing_signatures == [GM]
        assert compiled.state_at(at("2025-06-01")) == State.proposed

    def test_revocation_by_any_party_wins_over_everything(self, rings) -> None:
        doc = document()
        revoked = signed_event(rings[GM], GM, doc, "revoked", at("2025-06-01T00:00:00"))
        compiled = facts(stored_version(doc, rings, events=[revoked]))[0]
        assert compiled.state_at(at("2025-05-01")) == State.revoked  # at once, whatever the clock says
        assert compiled.revoked_by == (GM,)

    def test_events_by_a_non_party_are_ignored(self, rings) -> None:
        doc = document()
        revoked = signed_event(rings[NAT], NAT, doc, "revoked", at("2025-06-01T00:00:00"))
        assert facts(stored_version(doc, rings, events=[revoked]))[0].state_at(at("2025-06-02")) == State.active


class TestRenewal:
    def test_review_lapse_suspends_until_every_party_renews_to_the_same_date(self, rings) -> None:
        doc = document()
        after_review = at("2026-05-01T00:00:00")
        se_renews = signed_event(rings[SE], SE, doc, "renewed", at("2026-04-10T00:00:00"), review_by="2027-01-31")
        gm_other = signed_event(rings[GM], GM, doc, "renewed", at("2026-04-11T00:00:00"), review_by="2026-12-31")
        gm_same = signed_event(rings[GM], GM, doc, "renewed", at("2026-04-12T00:00:00"), review_by="2027-01-31")
        assert facts(stored_version(doc, rings, events=[se_renews]))[0].state_at(after_review) == State.suspended
        assert (
            facts(stored_version(doc, rings, events=[se_renews, gm_other]))[0].state_at(after_review) == State.suspended
        )
        renewed = facts(stored_version(doc, rings, events=[se_renews, gm_other, gm_same]))[0]
        assert renewed.review_by == date(2027, 1, 31)
        assert renewed.state_at(after_review) == State.active
        assert renewed.state_at(at("2027-02-01T00:00:00")) == State.suspended

    def test_a_suspension_event_holds_until_a_later_renewal(self, rings) -> None:
        doc = document()
        suspended = signed_event(rings[GM], GM, doc, "suspended", at("2025-07-01T00:00:00"))
        assert facts(stored_version(doc, rings, events=[suspended]))[0].state_at(at("2025-07-02")) == State.suspended
        renewals = [
            signed_event(rings[p], p, doc, "renewed", at("2025-07-05T00:00:00"), review_by="2026-06-30")
            for p in (SE, GM)
        ]
        lifted = facts(stored_version(doc, rings, events=[suspended, *renewals]))[0]
        assert lifted.state_at(at("2025-07-06")) == State.active


class TestAttention:
    @pytest.mark.parametrize(
        ("moment", "expected"),
        [
            ("2025-06-01", []),
            ("2026-01-01", [("review-due", 89, 90)]),
            ("2026-03-10", [("review-due", 21, 30)]),
            ("2026-03-31", [("review-due", 0, 30)]),
            ("2026-04-01", [("review-lapsed", -1, None)]),
            ("2027-03-01", [("review-lapsed", -335, None), ("expiry-due", 30, 30)]),
            ("2027-04-01", []),  # expired: nothing left to act on
        ],
    )
    def test_warnings_come_90_and_30_days_ahead(self, rings, moment: str, expected) -> None:
        compiled = facts(stored_version(document(), rings))[0]
        warnings = compiled.attention(at(moment + "T09:00:00"))
        assert [(w.kind, w.days_left, w.threshold) for w in warnings] == expected

    def test_drafts_need_no_attention(self, rings) -> None:
        assert facts(stored_version(document(), rings, signers=[]))[0].attention(at("2026-03-10T00:00:00")) == []


class TestWithdrawalAndAccession:
    def test_withdrawal_ends_the_withdrawing_partys_grants_only(self, rings) -> None:
        doc = document(
            "mou-3",
            [SE, GM, NAT],
            [
                grant(SE, [GM, NAT], ["capacity.vacancies"], ["placement-search"]),
                grant(GM, [SE, NAT], ["capacity.vacancies"], ["placement-search"]),
                grant(NAT, [GM], ["statistics.looked-after"], ["national-statistics"]),
            ],
        )
        withdrawn = signed_event(rings[GM], GM, doc, "withdrawn", at("2025-06-01T00:00:00"))
        compiled = facts(stored_version(doc, rings, events=[withdrawn]))[0]
        assert compiled.state_at(at("2025-06-02")) == State.active
        assert compiled.withdrawn == {GM}
        assert [(g.provider, sorted(g.recipients)) for g in compiled.grants] == [(SE, [NAT])]

    def test_a_new_version_signed_by_all_supersedes_the_old_once_in_force(self, rings) -> None:
        v1 = document()
        v2 = document(
            parties=[SE, GM, NAT],
            version=2,
            supersedes={"id": v1["id"], "version": 1, "sha256": digest(v1)},
            valid_from="2025-09-01",
        )
        now, later = at("2025-08-01T00:00:00"), at("2025-09-01T00:00:00")
        pending = facts(stored_version(v1, rings), stored_version(v2, rings, signers=[SE, GM]))
        assert [f.state_at(later) for f in pending] == [State.active, State.proposed]
        signed = facts(stored_version(v1, rings), stored_version(v2, rings))
        assert [f.state_at(now) for f in signed] == [State.active, State.proposed]
        assert [f.state_at(later) for f in signed] == [State.superseded, State.active]
