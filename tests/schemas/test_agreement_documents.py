"""Agreements and their signed lifecycle events: what the ICO data sharing code asks a document to carry."""

from __future__ import annotations

import pytest

from schemas import validate
from tests.schemas.examples import DELETE, DIGEST, GM, NATIONAL, agreement, agreement_event, edited

SUPERSEDES = {"id": "se-gm-placement-search", "version": 1, "sha256": DIGEST}
SPECIAL_ITEM = {
    "dataset": "statistics.looked-after",
    "description": "Counts by category of need, which touch on health.",
    "personal_data": True,
    "special_category": True,
}
THIRD_PARTY = {
    "node_id": NATIONAL,
    "organisation": "Department for Education",
    "signatory_role": "Deputy Director",
    "contacts": {
        "data_protection_officer": {"name": "DPO", "email": "dpo@education.gov.uk", "phone": "+44 370 000 2288"}
    },
}


class TestAgreement:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a memorandum of understanding with its text"),
            pytest.param({"/text": DELETE, "/text_sha256": DIGEST}, id="the digest of a text held elsewhere"),
            pytest.param({"/version": 2, "/supersedes": SUPERSEDES}, id="a second version naming the first"),
            pytest.param({"/kind": "data-sharing-agreement", "/dpia_reference": "DPIA-2025-014"}, id="a DSA with DPIA"),
            pytest.param(
                {"/data_items/-": SPECIAL_ITEM, "/lawful_basis/article_9": "health-social-care"},
                id="special category data with an Article 9 condition",
            ),
            pytest.param(
                {"/parties/-": THIRD_PARTY, "/grants/0/recipients": [GM, NATIONAL]},
                id="a three-party memorandum",
            ),
            pytest.param(
                {"/lawful_basis/article_6": "legitimate-interests", "/lawful_basis/statutory_duties": []},
                id="a basis that needs no statutory duty",
            ),
        ],
    )
    def test_accepts(self, changes):
        assert validate("agreement", edited(agreement(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/text_sha256": DIGEST}, [""], id="both the text and its digest"),
            pytest.param({"/text": DELETE}, [""], id="neither the text nor its digest"),
            pytest.param({"/supersedes": SUPERSEDES}, ["/supersedes"], id="version 1 superseding something"),
            pytest.param({"/version": 2}, ["/supersedes"], id="a later version superseding nothing"),
            pytest.param({"/kind": "data-sharing-agreement"}, ["/dpia_reference"], id="a DSA without DPIA"),
            pytest.param({"/kind": "contract"}, ["/kind"], id="an unknown kind"),
            pytest.param({"/parties/1": DELETE}, ["/parties"], id="a single party"),
            pytest.param(
                {"/parties/1/contacts/data_protection_officer": DELETE},
                ["/parties/1/contacts/data_protection_officer"],
                id="a party without a data protection officer",
            ),
            pytest.param(
                {"/parties/0/contacts/data_protection_officer/email": "dpo at kent"},
                ["/parties/0/contacts/data_protection_officer/email"],
                id="a DPO email that is no address",
            ),
            pytest.param(
                {"/grants/0/datasets/-": "children.records"}, ["/grants/0/datasets/1"], id="an unknown dataset"
            ),
            pytest.param({"/grants/0/purposes/0": "marketing"}, ["/grants/0/purposes/0"], id="an unknown purpose"),
            pytest.param({"/grants/0/recipients": []}, ["/grants/0/recipients"], id="a grant to nobody"),
            pytest.param(
                {"/grants/1/purposes/-": "placement-search"}, ["/grants/1/purposes"], id="a purpose granted twice"
            ),
            pytest.param({"/grants": []}, ["/grants"], id="no grants"),
            pytest.param({"/grants/1/min_cell_size": 3}, ["/grants/1/min_cell_size"], id="a cell size below DfE's"),
            pytest.param(
                {"/grants/0/min_cell_size": 10}, ["/grants/0/datasets"], id="a cell size on a grant without statistics"
            ),
            pytest.param({"/grants/1/fields/0": "name; drop"}, ["/grants/1/fields/0"], id="a field that is no path"),
            pytest.param({"/grants/0/provider": "South East"}, ["/grants/0/provider"], id="a provider that is no node"),
            pytest.param(
                {"/lawful_basis/article_6": "public-interest"}, ["/lawful_basis/article_6"], id="no UK GDPR basis"
            ),
            pytest.param(
                {"/lawful_basis/statutory_duties": []},
                ["/lawful_basis/statutory_duties"],
                id="public task resting on no statutory duty",
            ),
            pytest.param(
                {"/data_items/-": SPECIAL_ITEM}, ["/lawful_basis/article_9"], id="special category without Article 9"
            ),
            pytest.param(
                {
                    "/data_items/-": {**SPECIAL_ITEM, "personal_data": False},
                    "/lawful_basis/article_9": "health-social-care",
                },
                ["/data_items/1/personal_data"],
                id="special category data that claims not to be personal",
            ),
            pytest.param({"/retention": "6 years"}, ["/retention"], id="retention in words"),
            pytest.param({"/retention": "P1Y2W"}, ["/retention"], id="weeks mixed with years"),
            pytest.param({"/valid_until": "31/03/2027"}, ["/valid_until"], id="a UK-style date"),
            pytest.param({"/review_by": DELETE}, ["/review_by"], id="no review date"),
            pytest.param({"/security_measures": []}, ["/security_measures"], id="no security measures"),
            pytest.param({"/title": "Line one\nline two"}, ["/title"], id="a title with a line break"),
            pytest.param({"/signatures": []}, ["/signatures"], id="signatures inside the signed document"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("agreement", edited(agreement(), changes))] == paths

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            pytest.param({"/text_sha256": DIGEST}, "give exactly one of text and text_sha256", id="text and digest"),
            pytest.param({"/text": DELETE}, "give exactly one of text and text_sha256", id="no text"),
            pytest.param(
                {"/grants/0/min_cell_size": 10},
                "min_cell_size applies only to a grant of statistics.looked-after",
                id="a misplaced cell size",
            ),
        ],
    )
    def test_explains_rules_that_span_members(self, changes, message):
        assert [e.message for e in validate("agreement", edited(agreement(), changes))] == [message]


class TestAgreementEvent:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a signature"),
            pytest.param({"/type": "proposed", "/by": GM}, id="a proposal"),
            pytest.param({"/type": "revoked", "/reason": "Data sent outside the agreed purpose."}, id="a revocation"),
            pytest.param({"/type": "renewed", "/review_by": "2027-03-31"}, id="a renewal with its new review date"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("agreement-event", edited(agreement_event(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/type": "revoked"}, ["/reason"], id="a revocation without reason"),
            pytest.param({"/type": "withdrawn"}, ["/reason"], id="a withdrawal without reason"),
            pytest.param({"/type": "suspended"}, ["/reason"], id="a suspension without reason"),
            pytest.param({"/type": "renewed"}, ["/review_by"], id="a renewal without a review date"),
            pytest.param({"/review_by": "2027-03-31"}, ["/review_by"], id="a review date on a signature"),
            pytest.param({"/type": "accepted"}, ["/type"], id="an unknown event"),
            pytest.param(
                {"/document_sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
                ["/document_sha256"],
                id="a base64 digest",
            ),
            pytest.param({"/by": "South East RCC"}, ["/by"], id="a signer that is no node"),
            pytest.param({"/at": "2025-04-02"}, ["/at"], id="a date without time"),
            pytest.param({"/signature": "x..y"}, ["/signature"], id="an unknown member"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("agreement-event", edited(agreement_event(), changes))] == paths

    def test_says_which_events_carry_a_review_date(self):
        errors = validate("agreement-event", edited(agreement_event(), {"/review_by": "2027-03-31"}))
        assert [e.message for e in errors] == ["only a renewed event carries review_by"]
