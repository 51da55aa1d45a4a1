"""The policy decision: every deny reason, the permit's agreement and grant limits, the audit record, fan-out lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agreements.documents import digest
from agreements.errors import PolicyDenied
from agreements.ledger import VerifiedCache
from agreements.policy import DenyReason, Snapshot, enforce, providers_for, recipients_for
from registry.core.audit.context import AuditContext
from tests.agreements.conftest import GM, LDN, NAT, SE, document, grant, signed_event, stored_version

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
VACANCIES, STATS = "capacity.vacancies", "statistics.looked-after"
SEARCH, PLANNING = "placement-search", "sufficiency-planning"


def snapshot(*versions) -> Snapshot:
    groups: dict[str, list] = {}
    for v in versions:
        groups.setdefault(v.document.id, []).append(v)
    return Snapshot.build(1, groups, VerifiedCache())


def ask(snap: Snapshot, provider: str = SE, requester: str = GM, dataset: str = VACANCIES, purpose: str = SEARCH, **kw):
    return snap.decide(
        provider=provider, requester=requester, dataset=dataset, purpose=purpose, at=kw.pop("at", NOW), **kw
    )


class TestDecide:
    def test_an_active_agreement_permits_what_it_grants(self, rings) -> None:
        decision = ask(snapshot(stored_version(document(), rings)))
        assert decision.permit
        assert (decision.agreement_id, decision.version, decision.reason) == ("se-gm-mou", 1, None)

    def test_the_permit_carries_the_grants_limits(self, rings) -> None:
        doc = document(grants=[grant(GM, [SE], [STATS], [PLANNING], fields=["la_code", "count"], min_cell_size=10)])
        decision = ask(snapshot(stored_version(doc, rings)), provider=GM, requester=SE, dataset=STATS, purpose=PLANNING)
        assert decision.permit
        assert (decision.fields, decision.min_cell_size) == (("count", "la_code"), 10)

    @pytest.mark.parametrize(
        ("setup", "request_", "reason"),
        [
            ("none", {}, DenyReason.no_agreement),
            ("draft", {}, DenyReason.not_active),
            ("signed", {"at": datetime(2025, 3, 1, tzinfo=UTC)}, DenyReason.not_active),
            ("signed", {"at": datetime(2027, 4, 1, tzinfo=UTC)}, DenyReason.expired),
            ("signed", {"at": datetime(2026, 4, 1, tzinfo=UTC)}, DenyReason.suspended_review),
            ("revoked", {}, DenyReason.revoked),
            ("signed", {"purpose": PLANNING}, DenyReason.purpose_not_granted),
            ("signed", {"dataset": STATS}, DenyReason.dataset_not_granted),
            ("signed", {"requester": LDN, "agreement_id": "se-gm-mou"}, DenyReason.not_a_party),
            ("withdrawn", {}, DenyReason.not_a_party),
            ("signed", {"requester": LDN}, DenyReason.no_agreement),
        ],
    )
    def test_each_deny_reason(self, rings, setup: str, request_: dict, reason: DenyReason) -> None:
        doc = document()
        versions = {
            "none": [],
            "draft": [stored_version(doc, rings, signers=[SE])],
            "signed": [stored_version(doc, rings)],
            "revoked": [stored_version(doc, rings, events=[signed_event(rings[GM], GM, doc, "revoked", NOW)])],
            "withdrawn": [stored_version(doc, rings, events=[signed_event(rings[GM], GM, doc, "withdrawn", NOW)])],
        }[setup]
        decision = ask(snapshot(*versions), **request_)
        assert not decision.permit
        assert decision.reason == reason

    def test_with_an_agreement_id_only_that_agreement_counts(self, rings) -> None:
        wide = stored_version(document("wide"), rings)
        narrow = stored_version(document("narrow", grants=[grant(SE, [GM], [STATS], [PLANNING])]), rings)
        snap = snapshot(wide, narrow)
        assert ask(snap).agreement_id == "wide"
        refused = ask(snap, agreement_id="narrow")
        assert (refused.permit, refused.reason, refused.agreement_id) == (
            False,
            DenyReason.dataset_not_granted,
            "narrow",
        )
        assert ask(snap, agreement_id="unknown").reason == DenyReason.no_agreement

    def test_the_denial_closest_to_a_permit_is_reported(self, rings) -> None:
        doc_a = document("a")
        revoked = stored_version(doc_a, rings, events=[signed_event(rings[SE], SE, doc_a, "revoked", NOW)])
        other = stored_version(document("b", grants=[grant(SE, [GM], [VACANCIES], [PLANNING])]), rings)
        decision = ask(snapshot(revoked, other))
        assert (decision.reason, decision.agreement_id) == (DenyReason.purpose_not_granted, "b")

    def test_the_version_in_force_decides_after_accession(self, rings) -> None:
        v1 = document()
        v2 = document(
            parties=[SE, GM, NAT],
            grants=[grant(SE, [GM, NAT], [VACANCIES], [SEARCH])],
            version=2,
            supersedes={"id": v1["id"], "version": 1, "sha256": digest(v1)},
        )
        snap = snapshot(stored_version(v1, rings), stored_version(v2, rings))
        assert (ask(snap, requester=NAT).permit, ask(snap, requester=NAT).version) == (True, 2)
        assert ask(snap, provider=GM, requester=SE).reason == DenyReason.dataset_not_granted


class TestEnforce:
    def test_a_permit_is_recorded_in_the_audit_context(self, rings) -> None:
        audit = AuditContext()
        snap = snapshot(stored_version(document(), rings))
        enforce(audit, _Fixed(snap), provider=SE, requester=GM, dataset=VACANCIES, purpose=SEARCH, at=NOW)
        assert (audit.decision, audit.agreement, audit.dataset, audit.purpose) == (
            "permit",
            "se-gm-mou",
            VACANCIES,
            SEARCH,
        )

    def test_a_denial_is_a_403_carrying_the_reason_and_is_audited(self, rings) -> None:
        audit = AuditContext()
        snap = snapshot(stored_version(document(), rings))
        with pytest.raises(PolicyDenied) as raised:
            enforce(audit, _Fixed(snap), provider=SE, requester=GM, dataset=STATS, purpose=SEARCH, at=NOW)
        problem = raised.value.problem()
        assert (problem["status"], problem["code"], problem["reason"], problem["agreement"]) == (
            403,
            "policy-denied",
            "dataset-not-granted",
            "se-gm-mou",
        )
        assert (audit.decision, audit.reason, audit.agreement) == ("deny", "dataset-not-granted", "se-gm-mou")


class TestFanOutLists:
    def test_which_peers_this_node_may_ask_and_answer(self, rings) -> None:
        mou = document(
            "mou-3",
            [SE, GM, NAT],
            [
                grant(SE, [GM, NAT], [VACANCIES], [SEARCH]),
                grant(GM, [SE], [VACANCIES], [SEARCH]),
                grant(NAT, [SE], [VACANCIES], [PLANNING]),
            ],
        )
        store = _Fixed(snapshot(stored_version(mou, rings)))
        assert sorted(recipients_for(store, provider=SE, dataset=VACANCIES, purpose=SEARCH, at=NOW)) == [GM, NAT]
        asked = providers_for(store, requester=SE, dataset=VACANCIES, purpose=SEARCH, at=NOW)
        assert list(asked) == [GM]
        assert asked[GM].agreement_id == "mou-3"


class _Fixed:
    """A stand-in PolicyStore holding one snapshot (the real store is exercised in test_store_policy.py)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def snapshot(self, session=None) -> Snapshot:
        return self.snap
