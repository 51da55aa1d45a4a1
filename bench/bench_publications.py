"""Publications gather benchmark: what storing peers' copies costs, first time and on every later gather.

Run: ``.venv/bin/python bench/bench_publications.py`` (about 10-20 s; no network; a temporary SQLite file).

A national gather receives every region's current documents on each call, almost always the same ones as
last time. This measures, in one run and one process, the part of a gather this node pays for itself
(the peers' answers arrive in parallel and are measured by ``bench_federation``):

* ``first``: verify and store 9 regions x 3 documents that are new here (rebuild, canonicalise, digest,
  Ed25519 verify, insert) — what the first gather after a region publishes costs;
* ``again``: the same 27 answers again — rebuilt and checked, found held, nothing written (the steady state);
* ``verify``: ``verify_version`` of the 27 held rows cold (cache cleared) vs warm (the per-process cache the
  fee-cap check and comparisons rely on).

Printed: ms per gather of 27 documents (median of the rounds) and the ratios ``again ÷ first`` and
``warm ÷ cold`` (lower is better; the steady state should cost a fraction of the first gather).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from registry.core.db import make_engine, upgrade  # noqa: E402
from registry.core.keys import KeyRing  # noqa: E402
from registry.publications import copies, service, signatures  # noqa: E402
from registry.publications.models import Publication, PublicationVersion  # noqa: E402
from registry.publications.signatures import Signer  # noqa: E402
from registry.publications.synth import synth_publications  # noqa: E402

REGIONS = [f"E1200000{n}" for n in range(1, 10)]
ROUNDS = 15


def _served(engine: Any) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """What 9 regional peers would serve: each one's fee cap, protocol and framework, signed by its own key."""
    rings = {f"rcc-{code.lower()}": KeyRing.generate() for code in REGIONS}
    answers: list[tuple[str, dict[str, Any]]] = []
    with Session(engine) as scratch:
        for (node_id, ring), code in zip(rings.items(), REGIONS, strict=True):
            signer = Signer(node_id, code, ring.active)
            for made in synth_publications(code, owner=node_id, on=date(2026, 6, 1)):
                held = service.publish(
                    scratch, signer=signer, kind=made.kind, document=made.document, publication_id=made.id
                )
                answers.append((node_id, service.to_public(held).model_dump(mode="json", by_alias=True)))
        scratch.rollback()

    def keys(node_id: str, kid: str) -> Any:
        ring = rings.get(node_id)
        key = ring.get(kid) if ring is not None else None
        return key.public if key is not None else None

    return answers, keys


def _gather(engine: Any, answers: list[tuple[str, dict[str, Any]]], keys: Any) -> float:
    started = time.perf_counter()
    with Session(engine) as session:
        for node_id, item in answers:
            copies.store_copy(session, item, node_id=node_id, region_code=None, keys=keys)
        session.commit()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        answers, keys = _served(engine)
        first, again, cold, warm = [], [], [], []
        for _ in range(ROUNDS):
            with Session(engine) as db:
                db.exec(delete(PublicationVersion))
                db.exec(delete(Publication))
                db.commit()
            signatures._VERIFIED._entries.clear()
            first.append(_gather(engine, answers, keys))
            again.append(_gather(engine, answers, keys))
            with Session(engine) as db:
                rows = list(db.exec(select(PublicationVersion)))
            signatures._VERIFIED._entries.clear()
            for bucket in (cold, warm):
                started = time.perf_counter()
                assert all(signatures.verify_version(row, keys=keys).ok for row in rows)
                bucket.append((time.perf_counter() - started) * 1000)
        engine.dispose()
    m = {name: statistics.median(v) for name, v in (("first", first), ("again", again), ("cold", cold), ("warm", warm))}
    print(f"documents per gather: {len(answers)} ({len(REGIONS)} regions x 3 kinds), rounds: {ROUNDS}")
    print(f"first gather (verify + store)  : {m['first']:8.2f} ms")
    print(f"same gather again (held)       : {m['again']:8.2f} ms")
    print(f"verify_version cold            : {m['cold']:8.2f} ms")
    print(f"verify_version warm (cached)   : {m['warm']:8.2f} ms")
    print(f"ratio again / first            : {m['again'] / m['first']:.2f}")
    print(f"ratio warm / cold              : {m['warm'] / m['cold']:.2f}")


if __name__ == "__main__":
    main()
