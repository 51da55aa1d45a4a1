"""The register's service layer: the update race on both engines, key rotation, relabelling, validation order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from registry.core.db import utcnow
from registry.core.errors import NodeError, ValidationFailed
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.publications import service, signatures
from registry.publications.errors import ETagRequired, PublicationExists, StaleETag
from registry.publications.kinds import Kind
from registry.publications.models import PublicationVersion
from registry.publications.signatures import Signer
from tests.registry.publications import documents
from tests.registry.publications.documents import edited

pytestmark = pytest.mark.postgres


def _count_versions(node: Node, publication_id: str) -> int:
    with Session(node.engine) as db:
        return db.exec(
            select(func.count())
            .select_from(PublicationVersion)
            .where(PublicationVersion.publication_id == publication_id)
        ).one()


class TestUpdateRace:
    def test_writer_that_read_before_another_committed_is_refused(self, node: Node, signer: Signer) -> None:
        """The conditional UPDATE itself refuses a writer whose read is stale, whatever its If-Match check said."""
        with Session(node.engine) as first:
            held = service.publish(
                first, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="c"
            )
            first.commit()
            etag = service.etag(held.version)
        with Session(node.engine) as late, Session(node.engine) as early:
            stale_head = service.get_or_raise(late, "c", node_id=signer.node_id)
            assert stale_head.latest_version == 1
            service.update(early, signer=signer, publication_id="c", document=documents.fee_cap(), if_match=etag)
            early.commit()
            with pytest.raises(StaleETag):
                service.claim_next_version(late, signer.node_id, "c", expected=1, state="published", now=utcnow())
            late.rollback()
        assert _count_versions(node, "c") == 2

    def test_threads_with_one_etag_leave_exactly_one_new_version(self, node: Node, signer: Signer) -> None:
        with Session(node.engine) as db:
            held = service.publish(
                db, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="c"
            )
            db.commit()
            etag = service.etag(held.version)
        writers = 8
        barrier = threading.Barrier(writers)
        outcomes: list[str] = []
        lock = threading.Lock()

        def write(fee: int) -> None:
            document = edited(documents.fee_cap(), "/caps/0/max_weekly_fee", fee)
            with Session(node.engine) as db:
                barrier.wait()
                try:
                    service.update(db, signer=signer, publication_id="c", document=document, if_match=etag)
                    db.commit()
                    outcome = "won"
                except StaleETag:
                    db.rollback()
                    outcome = "412"
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=write, args=(5000 + i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["412"] * (writers - 1) + ["won"]
        assert _count_versions(node, "c") == 2

    def test_concurrent_creates_of_one_id_let_exactly_one_win(self, node: Node, signer: Signer) -> None:
        writers = 6
        barrier = threading.Barrier(writers)
        outcomes: list[str] = []
        lock = threading.Lock()

        def create() -> None:
            with Session(node.engine) as db:
                barrier.wait()
                try:
                    service.publish(
                        db, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="same"
                    )
                    db.commit()
                    outcome = "won"
                except PublicationExists:
                    db.rollback()
                    outcome = "409"
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=create) for _ in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["409"] * (writers - 1) + ["won"]
        assert _count_versions(node, "same") == 1


class TestRules:
    def test_etag_is_checked_before_the_document(self, session: Session, signer: Signer) -> None:
        service.publish(session, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="c")
        with pytest.raises(ETagRequired):
            service.update(session, signer=signer, publication_id="c", document={}, if_match=None)
        with pytest.raises(StaleETag):
            service.update(session, signer=signer, publication_id="c", document={}, if_match='"9.abc"')
        held = service.get_latest(session, "c", node_id=signer.node_id)
        with pytest.raises(ValidationFailed):
            service.update(session, signer=signer, publication_id="c", document={}, if_match=service.etag(held.version))

    @pytest.mark.parametrize(
        ("header", "holds"),
        [('"1.a"', True), ('"0.x", "1.a"', True), ("*", True), ('W/"1.a"', False), ('"1.b"', False), ("", False)],
    )
    def test_if_match_comparison_is_strong(self, header: str, holds: bool) -> None:
        assert service.if_match_holds(header, '"1.a"') is holds

    def test_protocol_citing_a_held_fee_cap_must_cite_it_exactly(self, session: Session, signer: Signer) -> None:
        cap = service.publish(
            session, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap(), publication_id="c"
        )
        good = documents.placement_protocol(fee_cap={"id": "c", "version": 1, "sha256": cap.version.sha256})
        service.publish(session, signer=signer, kind=Kind.placement_protocol, document=good)
        for ref, path in [
            ({"id": "c", "version": 2}, "/document/fee_cap/version"),
            ({"id": "c", "version": 1, "sha256": "0" * 64}, "/document/fee_cap/sha256"),
        ]:
            with pytest.raises(ValidationFailed) as refused:
                service.publish(
                    session,
                    signer=signer,
                    kind=Kind.placement_protocol,
                    document=documents.placement_protocol(fee_cap=ref),
                )
            assert [e["path"] for e in refused.value.errors or []] == [path]
        protocol = documents.placement_protocol(fee_cap={"id": "held-by-a-peer", "version": 4})
        service.publish(session, signer=signer, kind=Kind.placement_protocol, document=protocol)


class TestSignatures:
    def test_versions_signed_before_a_key_rotation_still_verify(self, tmp_path: Path, session: Session) -> None:
        ring = KeyRing.create(tmp_path / "keys")
        old = Signer("rcc-test", "E12000008", ring.active)
        held = service.publish(session, signer=old, kind=Kind.fee_cap, document=documents.fee_cap())
        rotated = ring.rotate(tmp_path / "keys")
        new = Signer("rcc-test", "E12000008", rotated.active)
        second = service.update(
            session,
            signer=new,
            publication_id=held.version.publication_id,
            document=documents.fee_cap(),
            if_match=service.etag(held.version),
        )
        keys = signatures.own_keys("rcc-test", rotated)
        assert signatures.verify_version(held.version, keys=keys).ok
        assert signatures.verify_version(second.version, keys=keys).kid == rotated.active.kid
        assert (
            signatures.verify_version(held.version, keys=signatures.own_keys("rcc-other", rotated)).reason
            == "unknown-key"
        )

    def test_a_version_cannot_be_relabelled(self, session: Session, signer: Signer, node: Node) -> None:
        held = service.publish(session, signer=signer, kind=Kind.fee_cap, document=documents.fee_cap())
        keys = signatures.keys_for(node)
        changes: list[dict[str, object]] = [
            {"publication_id": "other"},
            {"version": 2},
            {"state": "withdrawn"},
            {"kind": "framework"},
        ]
        for change in changes:
            relabelled = held.version.model_copy(update=change)
            assert signatures.verify_version(relabelled, keys=keys).reason == "bad-signature", change

    def test_node_error_for_unknown_publication(self, session: Session) -> None:
        with pytest.raises(NodeError) as missing:
            service.get_latest(session, "nope", node_id="rcc-test")
        assert missing.value.status == 404
