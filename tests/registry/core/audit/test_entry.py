"""Audit entries: the fields they carry, what they never carry, and their canonical bytes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.audit.context import AuditContext
from registry.core.audit.entry import FIELDS, MAX_TEXT, build_entry, canonical_entry, format_time

json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class TestCanonicalForm:
    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(st.text(), json_values, max_size=8))
    def test_fast_path_is_exactly_rfc8785(self, document) -> None:
        try:
            expected = rfc8785.dumps(document)
        except (rfc8785.CanonicalizationError, UnicodeEncodeError):
            return  # lone surrogates: not JSON text at all
        try:
            assert canonical_entry(document) == expected
        except UnicodeEncodeError:
            raise AssertionError("fast path failed where rfc8785 succeeded") from None

    def test_floats_and_non_ascii_keys_take_the_rfc8785_path(self) -> None:
        document = {"é": 1, "b": 1e21, "a": 0.1}
        assert canonical_entry(document) == rfc8785.dumps(document)

    @settings(max_examples=80, deadline=None)
    @given(
        texts=st.lists(st.none() | st.text(max_size=40), min_size=8, max_size=8),
        roles=st.lists(st.text(max_size=12), max_size=4),
        numbers=st.lists(st.none() | st.integers(-(2**60), 2**60), min_size=2, max_size=2),
        extra=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    )
    def test_built_entries_are_exactly_rfc8785(self, texts, roles, numbers, extra) -> None:
        # build_entry writes the canonical form itself (known keys, known value types): it must be the JCS bytes.
        context = AuditContext(
            actor_id=texts[0], roles=roles, issuer=texts[1], dataset=texts[2], purpose=texts[3], agreement=texts[4]
        )
        context.reason, context.peer, context.result_count = texts[5], texts[6], numbers[0]
        if extra is not None:
            context.extra = extra
        try:
            entry = build_entry(
                node_id="rcc-test", direction="inbound", action=texts[7] or "a", context=context, status=numbers[1]
            )
            expected = rfc8785.dumps(entry.document)
        except rfc8785.CanonicalizationError:
            return  # a document RFC 8785 itself refuses: nothing to compare with
        assert entry.canonical == expected

    def test_time_has_one_spelling_whatever_the_zone(self) -> None:
        moment = datetime(2026, 1, 31, 9, 30, 0, 0, tzinfo=UTC)
        assert format_time(moment) == "2026-01-31T09:30:00.000000Z"
        east = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
        assert format_time(east) == format_time(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def test_leaf_hash_is_rfc9162_over_the_stored_bytes(self) -> None:
        entry = build_entry(node_id="rcc-test", direction="inbound", action="x.y")
        assert entry.canonical == rfc8785.dumps(entry.document)
        assert entry.leaf_hash == hashlib.sha256(b"\x00" + entry.canonical).digest()
        assert entry.row()["entry"].encode() == entry.canonical


class TestFields:
    def test_every_field_is_present_and_context_is_copied(self) -> None:
        context = AuditContext(
            actor_type="client", actor_id="c1", roles=["governance", "analyst"], dataset="capacity.vacancies"
        )
        context.deny("no-agreement")
        entry = build_entry(
            node_id="rcc-test",
            direction="inbound",
            action="capacity.search",
            context=context,
            status=403,
            method="POST",
        )
        document = json.loads(entry.canonical)
        assert set(FIELDS) <= set(document)
        assert document["roles"] == ["analyst", "governance"]
        assert document["decision"] == "deny" and document["reason"] == "no-agreement"
        assert document["status"] == 403 and document["method"] == "POST"
        assert entry.row()["decision"] == "deny" and entry.row()["actor_id"] == "c1"

    def test_strings_are_clipped_and_made_valid_utf8(self) -> None:
        context = AuditContext(actor_id="x" * 5000, reason="bad \ud800 surrogate")
        entry = build_entry(node_id="rcc-test", direction="inbound", action="a", context=context)
        assert len(entry.document["actor_id"]) == MAX_TEXT
        assert entry.canonical.decode("utf-8")  # valid UTF-8
        assert "\ud800" not in entry.document["reason"]

    def test_extra_evidence_is_made_valid_utf8_too(self) -> None:
        context = AuditContext(extra={"bad \udfff key": "bad \ud800 value"})
        entry = build_entry(node_id="rcc-test", direction="inbound", action="a", context=context)
        assert json.loads(entry.canonical.decode("utf-8"))["extra"] == {"bad ? key": "bad ? value"}

    def test_extra_evidence_is_kept_as_json(self) -> None:
        context = AuditContext(extra={"peer_verified": False, "kid": "abc"})
        entry = build_entry(node_id="rcc-test", direction="inbound", action="a", context=context)
        assert json.loads(entry.canonical)["extra"] == {"kid": "abc", "peer_verified": False}
