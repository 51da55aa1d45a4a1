"""``rcc-node federation up`` gives its scheduled rounds something to witness.

Every agreement the local federation makes lets both parties witness each other's audit log (dataset
``audit.tree-heads``, purpose ``audit-witnessing``), and a folder made before witnessing was granted gets a new
version of each agreement that supersedes the old one, signed by both parties, instead of keeping the old grants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlmodel import Session

from agreements import service
from agreements.keys import StaticKeys
from agreements.runtime import AgreementsRuntime
from registry.cli import localfed_data as data
from registry.core.db import make_engine, upgrade, utcnow
from registry.core.keys import KeyRing
from tests.support.databases import fresh_database

WITNESSING = (["audit.tree-heads"], ["audit-witnessing"])


def witnessing(spec: data.AgreementSpec) -> set[tuple[str, tuple[str, ...]]]:
    """Who may witness whom under an agreement: (provider, recipients) of its witnessing grants."""
    return {
        (g["provider"], tuple(g["recipients"])) for g in spec.grants if (g["datasets"], g["purposes"]) == WITNESSING
    }


class TestGrants:
    @pytest.mark.parametrize("spec", data.AGREEMENTS, ids=lambda s: s.id)
    def test_both_parties_witness_each_other(self, spec: data.AgreementSpec) -> None:
        first, second = spec.parties
        assert witnessing(spec) == {(first, (second,)), (second, (first,))}

    def test_every_member_is_witnessed_by_a_peer(self) -> None:
        witnessed = {provider for spec in data.AGREEMENTS for provider, _ in witnessing(spec)}
        assert witnessed == {member.node_id for member in data.MEMBERS}


@pytest.mark.postgres
class TestOlderFolder:
    @pytest.fixture
    def runtimes(self, tmp_path: Path) -> Iterator[dict[str, AgreementsRuntime]]:
        parties = (data.SE, data.NAT)
        rings = {node_id: KeyRing.generate() for node_id in parties}
        peers = StaticKeys.from_jwks({node_id: ring.jwks() for node_id, ring in rings.items()})
        with ExitStack() as stack:
            runtimes = {}
            for node_id in parties:
                url = stack.enter_context(fresh_database(tmp_path / node_id))
                upgrade(url)
                engine = make_engine(url)
                stack.callback(engine.dispose)
                runtimes[node_id] = AgreementsRuntime.standalone(
                    node_id=node_id, keys=rings[node_id], engine=engine, peers=peers
                )
            yield runtimes

    def test_an_agreement_without_witnessing_is_superseded_once_then_kept(
        self, runtimes: dict[str, AgreementsRuntime]
    ) -> None:
        spec = next(s for s in data.AGREEMENTS if s.parties == (data.SE, data.NAT))
        older = dataclasses.replace(
            spec, grants=tuple(g for g in spec.grants if (g["datasets"], g["purposes"]) != WITNESSING)
        )
        today = utcnow().date()
        assert data._agreement(older, runtimes, today) == {
            "id": spec.id,
            "version": 1,
            "parties": list(spec.parties),
            "state": "active",
        }

        upgraded = data._agreement(spec, runtimes, today)
        assert (upgraded["version"], upgraded["state"]) == (2, "active")
        for runtime in runtimes.values():
            with Session(runtime.engine) as session:
                held = service.get(session, runtime=runtime, agreement_id=spec.id)
            assert (held.version, held.state) == (2, "active")
            assert held.document["grants"] == list(spec.grants)
            assert held.document["supersedes"]["version"] == 1

        assert data._agreement(spec, runtimes, today)["version"] == 2  # kept: nothing new to sign
