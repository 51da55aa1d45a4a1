"""The replay cache: a jti is accepted once, whichever worker (engine) sees it, and purged after expiry."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from federation.models import ReplayEntry
from federation.replay import ReplayCache
from registry.core.db import make_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def engines(migrated_db_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database: what two worker processes of one node have."""
    first, second = make_engine(migrated_db_url), make_engine(migrated_db_url)
    yield first, second
    first.dispose()
    second.dispose()


def later(seconds: int = 90) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def make_cache(engine: Engine, claims: str) -> ReplayCache:
    """A worker's cache: claims through the writer thread, or inline on the event loop (SQLite, lock shared).

    Each cache gets its own lock, as each worker process has its own: two workers of a test contend only
    through the database.
    """
    cache = ReplayCache(engine)
    if claims == "inline":
        cache.share_write_lock(threading.Lock())
    return cache


CLAIMS = pytest.mark.parametrize("claims", ["thread", "inline"])


class TestEitherWayOfClaiming:
    """What holds whichever path the claims take (on PostgreSQL the inline path is the thread's)."""

    @CLAIMS
    def test_concurrent_claims_of_one_jti_admit_exactly_one(self, engines: tuple[Engine, Engine], claims: str) -> None:
        cache, jti = make_cache(engines[0], claims), secrets.token_urlsafe(16)
        others = [secrets.token_urlsafe(16) for _ in range(20)]

        async def claim_all() -> list[bool]:
            same = [cache.claim(jti=jti, issuer="rcc-a", expires_at=later()) for _ in range(10)]
            fresh = [cache.claim(jti=o, issuer="rcc-a", expires_at=later()) for o in others]
            return list(await asyncio.gather(*same, *fresh))

        results = asyncio.run(claim_all())
        assert results[:10].count(True) == 1
        assert all(results[10:])
        cache.close()

    @CLAIMS
    def test_replay_is_caught_across_workers(self, engines: tuple[Engine, Engine], claims: str) -> None:
        # Two workers: each its own engine (and, inline, its own process-wide lock), as two uvicorn workers have.
        worker_one, worker_two = make_cache(engines[0], claims), make_cache(engines[1], claims)
        jtis = [secrets.token_urlsafe(16) for _ in range(30)]

        async def race(cache: ReplayCache) -> list[bool]:
            return list(await asyncio.gather(*(cache.claim(jti=j, issuer="rcc-a", expires_at=later()) for j in jtis)))

        async def both() -> tuple[list[bool], list[bool]]:
            one, two = await asyncio.gather(race(worker_one), race(worker_two))
            return one, two

        one, two = asyncio.run(both())
        assert [a != b for a, b in zip(one, two, strict=True)] == [True] * len(jtis)
        worker_one.close()
        worker_two.close()

    @CLAIMS
    def test_a_claim_that_cannot_be_written_fails(
        self, engines: tuple[Engine, Engine], claims: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Neither path may answer "fresh" for a jti it could not burn: the guard then refuses the request.
        cache = make_cache(engines[0], claims)

        def broken(*_args: object) -> set[str]:
            raise RuntimeError("disk I/O error")

        monkeypatch.setattr(cache, "_insert_inline", broken)
        monkeypatch.setattr(cache, "_insert_unlocked", broken)
        with pytest.raises(RuntimeError, match="disk I/O error"):
            asyncio.run(cache.claim(jti=secrets.token_urlsafe(16), issuer="rcc-a", expires_at=later()))
        cache.close()


class TestReplayCache:
    def test_a_jti_is_accepted_once(self, engines: tuple[Engine, Engine]) -> None:
        cache = ReplayCache(engines[0])
        jti = secrets.token_urlsafe(16)

        async def claim_twice() -> list[bool]:
            return [await cache.claim(jti=jti, issuer="rcc-a", expires_at=later()) for _ in range(2)]

        assert asyncio.run(claim_twice()) == [True, False]
        cache.close()

    def test_expired_claims_are_purged_and_live_ones_kept(self, engines: tuple[Engine, Engine]) -> None:
        cache = ReplayCache(engines[0])
        assert cache.claim_now(jti="a" * 22, issuer="rcc-a", expires_at=later(-5))
        assert cache.claim_now(jti="b" * 22, issuer="rcc-a", expires_at=later(60))
        assert cache.purge() == 1
        with engines[0].connect() as connection:
            assert connection.execute(select(func.count()).select_from(ReplayEntry)).scalar_one() == 1
        assert not cache.claim_now(jti="b" * 22, issuer="rcc-a", expires_at=later(60))
        cache.close()


class TestInlineClaims:
    """SQLite with the audit log's write lock shared: claims are written on the event loop, same guarantees."""

    @staticmethod
    def inline(engine: Engine) -> ReplayCache:
        return make_cache(engine, "inline")

    def test_the_lock_is_shared_only_on_sqlite(self, engines: tuple[Engine, Engine]) -> None:
        cache = self.inline(engines[0])
        assert (cache._write_lock is not None) == (engines[0].dialect.name == "sqlite")
        cache.close()

    def test_a_jti_is_accepted_once_and_committed_before_the_answer(self, engines: tuple[Engine, Engine]) -> None:
        cache, jti = self.inline(engines[0]), secrets.token_urlsafe(16)

        async def claim_then_look() -> tuple[bool, int, bool]:
            first = await cache.claim(jti=jti, issuer="rcc-a", expires_at=later())
            with engines[1].connect() as connection:  # another worker's connection sees it at once
                stored = connection.execute(select(func.count()).select_from(ReplayEntry)).scalar_one()
            again = await cache.claim(jti=jti, issuer="rcc-a", expires_at=later())
            return first, stored, again

        assert asyncio.run(claim_then_look()) == (True, 1, False)
        cache.close()

    def test_an_earlier_jti_among_fresh_ones_is_told_apart(self, engines: tuple[Engine, Engine]) -> None:
        # The usual batch is all fresh and needs no RETURNING; one holding a replay must still name it.
        cache, used = self.inline(engines[0]), secrets.token_urlsafe(16)
        fresh = [secrets.token_urlsafe(16) for _ in range(4)]
        assert cache.claim_now(jti=used, issuer="rcc-a", expires_at=later())

        async def claim_all() -> list[bool]:
            jtis = [*fresh[:2], used, *fresh[2:]]
            return list(await asyncio.gather(*(cache.claim(jti=j, issuer="rcc-a", expires_at=later()) for j in jtis)))

        assert asyncio.run(claim_all()) == [True, True, False, True, True]
        with engines[1].connect() as connection:
            assert connection.execute(select(func.count()).select_from(ReplayEntry)).scalar_one() == 5
        cache.close()

    def test_a_held_lock_sends_the_claims_to_the_writer_thread(self, engines: tuple[Engine, Engine]) -> None:
        if engines[0].dialect.name != "sqlite":
            pytest.skip("inline claims are a SQLite path")
        lock = threading.Lock()
        cache = ReplayCache(engines[0])
        cache.share_write_lock(lock)
        jti = secrets.token_urlsafe(16)

        async def claim_while_locked() -> list[bool]:
            lock.acquire()  # the sequencer is writing: the loop must not wait for it
            claims = asyncio.gather(*(cache.claim(jti=jti, issuer="rcc-a", expires_at=later()) for _ in range(2)))
            await asyncio.sleep(0.05)
            assert not claims.done()  # the writer thread waits for the lock; nothing was served unclaimed
            lock.release()
            return list(await claims)

        assert sorted(asyncio.run(claim_while_locked())) == [False, True]
        cache.close()

    def test_a_failed_inline_write_is_retried_by_the_writer_thread(
        self, engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if engines[0].dialect.name != "sqlite":
            pytest.skip("inline claims are a SQLite path")
        cache = self.inline(engines[0])

        def busy(_rows: object) -> set[str]:
            raise RuntimeError("database is locked")

        monkeypatch.setattr(cache, "_insert_inline", busy)
        jti = secrets.token_urlsafe(16)
        assert asyncio.run(cache.claim(jti=jti, issuer="rcc-a", expires_at=later())) is True
        assert cache.claim_now(jti=jti, issuer="rcc-a", expires_at=later()) is False
        cache.close()
