"""``rcc-node clients`` run in-process (typer's runner): add, list, revoke, and the errors an operator sees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.cli import app as cli
from registry.core.auth.service import verify_secret
from tests.support.tokens import ed25519_pair

runner = CliRunner()


def _invoke(args: list[str]):
    # The CLI sets RCC_DATA_DIR for the process it runs in; keep that from leaking into other tests.
    saved = dict(os.environ)
    try:
        return runner.invoke(cli, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "node"
    result = _invoke(["init", "--data-dir", str(path), "--node-id", "rcc-cli", "--region-code", "E12000008"])
    assert result.exit_code == 0, result.output
    return path


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = _invoke(["clients", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


class TestClientsCommand:
    def test_add_prints_the_secret_once_and_stores_only_its_hash(self, data_dir: Path) -> None:
        code, out = run(data_dir, "add", "Kent app", "--role", "commissioner", "--role", "analyst", "--json")
        assert code == 0, out
        made = json.loads(out)
        assert made["roles"] == ["analyst", "commissioner"] and made["auth_method"] == "client_secret_basic"
        code, listed = run(data_dir, "list", "--json")
        row = next(r for r in json.loads(listed) if r["client_id"] == made["client_id"])
        assert "client_secret" not in row and made["client_secret"] not in listed
        database = (data_dir / "node.db").read_bytes()
        assert made["client_secret"].encode() not in database

    def test_add_in_text_says_to_store_the_secret(self, data_dir: Path) -> None:
        code, out = run(data_dir, "add", "Text app", "--role", "governance")
        assert code == 0
        assert "client_id:" in out and "client_secret:" in out and "cannot be shown again" in out

    @pytest.mark.parametrize("as_jwks", [False, True])
    def test_add_with_a_public_jwk_makes_a_private_key_jwt_client(
        self, data_dir: Path, tmp_path: Path, as_jwks
    ) -> None:
        jwk = ed25519_pair().public_jwk
        path = tmp_path / "key.json"
        path.write_text(json.dumps({"keys": [jwk]} if as_jwks else jwk))
        code, out = run(data_dir, "add", "Keyed app", "--role", "publisher", "--jwk", str(path), "--json")
        assert code == 0, out
        made = json.loads(out)
        assert made["auth_method"] == "private_key_jwt" and made["client_secret"] is None

    def test_private_key_file_is_refused(self, data_dir: Path, tmp_path: Path) -> None:
        path = tmp_path / "private.json"
        path.write_text(json.dumps({**ed25519_pair().public_jwk, "d": "AAAA"}))
        code, out = run(data_dir, "add", "Leaky app", "--role", "publisher", "--jwk", str(path))
        assert code == 1 and "public key only" in out

    def test_unknown_role_is_refused(self, data_dir: Path) -> None:
        code, out = run(data_dir, "add", "X", "--role", "superuser")
        assert code == 2 and "superuser" in out

    def test_revoke_then_list_shows_it_revoked(self, data_dir: Path) -> None:
        made = json.loads(run(data_dir, "add", "Doomed", "--role", "analyst", "--json")[1])
        code, out = run(data_dir, "revoke", made["client_id"])
        assert code == 0 and "Revoked" in out
        code, out = run(data_dir, "list", "--json")
        row = next(r for r in json.loads(out) if r["client_id"] == made["client_id"])
        assert row["revoked_at"] is not None
        code, out = run(data_dir, "list", "--active", "--json")
        assert made["client_id"] not in out
        code, out = run(data_dir, "revoke", made["client_id"])
        assert code == 1 and "already revoked" in out

    def test_revoke_unknown_client_is_one_clear_line(self, data_dir: Path) -> None:
        code, out = run(data_dir, "revoke", "nobody-1234")
        assert code == 1
        assert out.strip() == "error: no client 'nobody-1234' on this node"

    def test_secret_verifies_against_the_stored_hash(self, data_dir: Path) -> None:
        from sqlalchemy import create_engine, text

        made = json.loads(run(data_dir, "add", "Checked", "--role", "analyst", "--json")[1])
        engine = create_engine(f"sqlite:///{data_dir / 'node.db'}")
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT secret_hash FROM auth_client WHERE id = :c"), {"c": made["client_id"]}
            ).scalar_one()
        engine.dispose()
        assert verify_secret(made["client_secret"], stored)
