"""Agreement documents: schema and cross-document rules, reported at JSON paths; the canonical digest as identity."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agreements import documents
from agreements.errors import DocumentInvalid
from tests.agreements.conftest import GM, SE, document, grant, variant
from tests.support import jose


def problems(doc: Any) -> list[dict[str, str]]:
    with pytest.raises(DocumentInvalid) as raised:
        documents.parse(doc)
    assert raised.value.status == 422
    return raised.value.errors or []


def paths(doc: Any) -> set[str]:
    return {p["path"] for p in problems(doc)}


class TestParse:
    def test_a_valid_document_gives_its_facts(self) -> None:
        parsed = documents.parse(document())
        assert parsed.id == "se-gm-mou"
        assert parsed.parties == (SE, GM)
        assert parsed.datasets == {"capacity.vacancies", "statistics.looked-after"}
        assert parsed.grants[1].min_cell_size == 10
        assert parsed.starts_at.isoformat() == "2025-04-01T00:00:00+00:00"
        assert parsed.ends_at.isoformat() == "2027-04-01T00:00:00+00:00"

    def test_schema_errors_name_the_json_path(self) -> None:
        doc = document()
        del doc["retention"]
        doc["grants"][0]["datasets"] = ["children.names"]
        assert {"/retention", "/grants/0/datasets/0"} <= paths(doc)

    def test_not_an_object_is_refused(self) -> None:
        assert paths([1, 2]) == {""}

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            (
                lambda d: d["grants"].append(grant("rcc-london", [GM], ["capacity.vacancies"], ["placement-search"])),
                "/grants/2/provider",
            ),
            (lambda d: d["grants"][0]["recipients"].append("rcc-london"), "/grants/0/recipients/1"),
            (lambda d: d["grants"][0]["recipients"].append(SE), "/grants/0/recipients/1"),
            (lambda d: d["parties"].append(d["parties"][0]), "/parties/2/node_id"),
            (lambda d: d.update(valid_until="2025-01-01"), "/valid_until"),
            (lambda d: d.update(review_by="2028-01-01"), "/review_by"),
        ],
    )
    def test_cross_document_rules_are_reported_at_their_path(self, change, path: str) -> None:
        doc = document()
        change(doc)
        assert path in paths(doc)

    def test_a_later_version_must_supersede_an_earlier_version_of_itself(self) -> None:
        doc = document(version=2, supersedes={"id": "other", "version": 3, "sha256": "0" * 64})
        assert {"/supersedes/id", "/supersedes/version"} <= paths(doc)


class TestDigest:
    def test_member_order_and_whitespace_do_not_change_the_identity(self) -> None:
        doc = document()
        reordered = json.loads(json.dumps(dict(reversed(list(doc.items())))))
        assert documents.digest(doc) == documents.digest(reordered) == documents.parse(reordered).sha256

    def test_one_changed_byte_is_another_document(self) -> None:
        doc = document()
        assert documents.digest(doc) != documents.digest(variant(doc, title=doc["title"] + "."))

    def test_digest_is_sha256_of_the_canonical_form(self) -> None:
        import hashlib

        doc = document()
        assert documents.digest(doc) == hashlib.sha256(jose.jcs(doc)).hexdigest()


class TestEvents:
    def test_event_schema_errors_name_the_path(self) -> None:
        from agreements.errors import EventInvalid

        event = {
            "agreement": "x",
            "version": 1,
            "document_sha256": "0" * 64,
            "type": "revoked",
            "by": SE,
            "at": "2025-01-01T00:00:00Z",
        }
        with pytest.raises(EventInvalid) as raised:
            documents.parse_event(event)
        assert [e["path"] for e in raised.value.errors or []] == ["/reason"]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2025-04-02T10:15:00.250Z", "2025-04-02T10:15:00.250000+00:00"),
            ("2025-04-02T11:15:00+01:00", "2025-04-02T10:15:00+00:00"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59+00:00"),
        ],
    )
    def test_event_times_are_read_as_utc(self, text: str, expected: str) -> None:
        assert documents.event_time(text).isoformat() == expected
