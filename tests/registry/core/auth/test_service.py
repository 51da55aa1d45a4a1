"""Clients in storage: secrets only hashed, revocation final, lock-out counted, assertion ids single-use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from registry.core.auth import service
from registry.core.auth.errors import ClientAlreadyRevoked, ClientInvalid, ClientNotFound
from registry.core.auth.models import Client, ClientCreate
from registry.core.db import make_engine, utcnow
from schemas.vocabulary import Role
from tests.support.tokens import ec_pair, ed25519_pair, rsa_pair

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def engine(shared_db_url: str):
    engine = make_engine(shared_db_url)
    yield engine
    engine.dispose()


def add(engine, *roles: Role, name: str = "App", jwk=None):
    with Session(engine) as session:
        created = service.create(session, data=ClientCreate(name=name, roles=list(roles), jwk=jwk))
        session.commit()
    return created


class TestSecrets:
    def test_hash_verifies_only_the_same_secret(self) -> None:
        stored = service.hash_secret("s3cret-value")
        assert stored.startswith("scrypt$16384$8$1$")
        assert "s3cret-value" not in stored
        assert service.verify_secret("s3cret-value", stored)
        assert not service.verify_secret("s3cret-valuE", stored)

    def test_same_secret_hashes_differently_each_time(self) -> None:
        assert service.hash_secret("x") != service.hash_secret("x")

    @pytest.mark.parametrize(
        "stored", ["", "plain", "argon2$1$2$3$4$5", "scrypt$x$8$1$AA$AA", "scrypt$16384$8$1$!!$AA"]
    )
    def test_malformed_hash_never_verifies(self, stored: str) -> None:
        assert not service.verify_secret("anything", stored)


class TestCreate:
    def test_secret_client_stores_only_the_hash(self, engine) -> None:
        created = add(engine, Role.commissioner, Role.analyst, name="Kent commissioning app")
        assert created.client_secret and len(created.client_secret) >= 40
        assert created.client_id.startswith("kent-commissioning-app-")
        assert created.auth_method == "client_secret_basic"
        with engine.connect() as connection:
            row = (
                connection.execute(text("SELECT * FROM auth_client WHERE id = :c"), {"c": created.client_id})
                .mappings()
                .one()
            )
        assert created.client_secret not in " ".join(str(v) for v in row.values())
        assert service.verify_secret(created.client_secret, row["secret_hash"])
        assert row["roles"] == "analyst commissioner"

    def test_jwk_client_has_no_secret(self, engine) -> None:
        created = add(engine, Role.publisher, jwk=ed25519_pair().public_jwk)
        assert created.client_secret is None
        assert created.auth_method == "private_key_jwt"

    @pytest.mark.parametrize(
        "jwk",
        [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "AAAA"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "not base64 of 32 bytes"},
        ],
    )
    def test_unusable_or_private_jwk_is_refused(self, engine, jwk) -> None:
        with Session(engine) as session, pytest.raises(ClientInvalid) as caught:
            service.create(session, data=ClientCreate(name="x", roles=[Role.analyst], jwk=jwk))
        assert caught.value.field == "jwk"

    @pytest.mark.parametrize("pair", [ec_pair, rsa_pair])
    def test_ec_and_rsa_public_keys_are_accepted(self, engine, pair) -> None:
        assert add(engine, Role.analyst, jwk=pair().public_jwk).auth_method == "private_key_jwt"

    def test_roles_are_a_closed_vocabulary(self) -> None:
        with pytest.raises(ValueError, match="roles"):
            ClientCreate(name="x", roles=["root"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="roles"):
            ClientCreate(name="x", roles=[])


class TestListAndRevoke:
    def test_list_and_revoke(self, engine) -> None:
        first = add(engine, Role.analyst, name="First")
        second = add(engine, Role.governance, name="Second")
        mine = {first.client_id, second.client_id}
        with Session(engine) as session:
            listed = [c.id for c in service.list_clients(session) if c.id in mine]
            assert listed == [first.client_id, second.client_id]
            service.revoke(session, client_id=first.client_id)
            session.commit()
        with Session(engine) as session:
            active = [c.id for c in service.list_clients(session, include_revoked=False) if c.id in mine]
            assert active == [second.client_id]
            with pytest.raises(ClientAlreadyRevoked):
                service.revoke(session, client_id=first.client_id)
            with pytest.raises(ClientNotFound):
                service.revoke(session, client_id="nobody")

    def test_status_reads_roles_and_revocation(self, engine) -> None:
        created = add(engine, Role.analyst, Role.provider)
        assert service.client_status(engine, created.client_id) == service.ClientStatus(
            frozenset({"analyst", "provider"}), revoked=False
        )
        with Session(engine) as session:
            service.revoke(session, client_id=created.client_id)
            session.commit()
        status = service.client_status(engine, created.client_id)
        assert status is not None and status.revoked
        assert service.client_status(engine, "nobody") is None


class TestLockOut:
    def test_fifth_failure_in_window_locks_then_success_clears(self, engine) -> None:
        created = add(engine, Role.analyst)
        kwargs = {"max_failures": 5, "window": timedelta(minutes=5), "lockout": timedelta(minutes=5)}
        states = [service.record_failure(engine, client_id=created.client_id, **kwargs) for _ in range(5)]
        assert [s.locked for s in states] == [False, False, False, False, True]
        with Session(engine) as session:
            row = session.get(Client, created.client_id)
            assert row is not None
            state = service.lock_state(row)
            assert state.locked and state.until is not None and state.until > utcnow()
            assert not service.lock_state(row, now=utcnow() + timedelta(minutes=6)).locked
            service.record_success(engine, client=row)
        with Session(engine) as session:
            row = session.get(Client, created.client_id)
            assert row is not None and row.locked_until is None and row.failed_auth_count == 0

    def test_failures_outside_the_window_start_a_new_count(self, engine) -> None:
        created = add(engine, Role.analyst)
        kwargs = {"max_failures": 2, "window": timedelta(minutes=5), "lockout": timedelta(minutes=5)}
        service.record_failure(engine, client_id=created.client_id, **kwargs)
        with engine.begin() as connection:  # the first failure happened long ago
            connection.execute(
                Client.__table__.update()  # type: ignore[attr-defined]
                .where(Client.__table__.c.id == created.client_id)  # type: ignore[attr-defined]
                .values(failed_auth_since=utcnow() - timedelta(hours=1))
            )
        assert not service.record_failure(engine, client_id=created.client_id, **kwargs).locked
        assert service.record_failure(engine, client_id=created.client_id, **kwargs).locked


class TestAssertionJti:
    def test_jti_is_accepted_once_and_purged_after_expiry(self, engine) -> None:
        created = add(engine, Role.analyst, jwk=ed25519_pair().public_jwk)
        soon = utcnow() + timedelta(minutes=1)
        assert service.use_assertion_jti(engine, client_id=created.client_id, jti="a", expires_at=soon)
        assert not service.use_assertion_jti(engine, client_id=created.client_id, jti="a", expires_at=soon)
        past = utcnow() - timedelta(minutes=1)
        assert service.use_assertion_jti(engine, client_id=created.client_id, jti="old", expires_at=past)
        assert service.use_assertion_jti(engine, client_id=created.client_id, jti="b", expires_at=soon)
        with engine.connect() as connection:
            jtis = connection.execute(
                text("SELECT jti FROM auth_assertion_jti WHERE client_id = :c"), {"c": created.client_id}
            ).scalars()
            assert sorted(jtis) == ["a", "b"]
