from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from registry.core.keys import KeyRing, KeyRingError
from registry.core.signing import TYP_DESCRIPTOR, sign_detached
from tests.support import jose


class TestKeyRingOnDisk:
    def test_private_key_file_is_readable_by_owner_only(self, tmp_path: Path) -> None:
        ring = KeyRing.create(tmp_path / "keys")
        mode = stat.S_IMODE(os.stat(tmp_path / "keys" / f"{ring.active.kid}.pem").st_mode)
        assert mode == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700

    def test_create_refuses_to_overwrite_an_existing_ring(self, tmp_path: Path) -> None:
        first = KeyRing.create(tmp_path / "keys")
        with pytest.raises(KeyRingError, match="refusing to overwrite"):
            KeyRing.create(tmp_path / "keys")
        assert KeyRing.load(tmp_path / "keys").active.kid == first.active.kid

    def test_kid_is_the_rfc7638_thumbprint(self, tmp_path: Path) -> None:
        ring = KeyRing.create(tmp_path / "keys")
        (jwk,) = ring.jwks()["keys"]
        assert jwk["kid"] == jose.thumbprint(jwk)
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")

    def test_rotation_keeps_old_signatures_verifiable(self, tmp_path: Path) -> None:
        key_dir = tmp_path / "keys"
        old = KeyRing.create(key_dir)
        document = {"hello": "world"}
        old_signature = sign_detached(document, old.active, typ=TYP_DESCRIPTOR)
        new = KeyRing.load(key_dir).rotate(key_dir)
        reloaded = KeyRing.load(key_dir)
        assert reloaded.active.kid == new.active.kid != old.active.kid
        statuses = {k["kid"]: k["status"] for k in reloaded.jwks()["keys"]}
        assert statuses == {new.active.kid: "active", old.active.kid: "retired"}
        jose.verify_detached(document, old_signature, reloaded.jwks(), TYP_DESCRIPTOR)
        assert not (key_dir / f"{old.active.kid}.pem").exists(), "retired private key must be gone"

    def test_retired_key_cannot_sign(self, tmp_path: Path) -> None:
        key_dir = tmp_path / "keys"
        old = KeyRing.create(key_dir).active
        retired = KeyRing.load(key_dir).rotate(key_dir).get(old.kid)
        assert retired is not None
        with pytest.raises(ValueError, match="retired"):
            sign_detached({}, retired, typ=TYP_DESCRIPTOR)

    def test_world_readable_key_is_refused(self, tmp_path: Path) -> None:
        ring = KeyRing.create(tmp_path / "keys")
        os.chmod(tmp_path / "keys" / f"{ring.active.kid}.pem", 0o644)
        with pytest.raises(KeyRingError, match="chmod 600"):
            KeyRing.load(tmp_path / "keys")

    def test_manifest_with_a_forged_kid_is_refused(self, tmp_path: Path) -> None:
        KeyRing.create(tmp_path / "keys")
        manifest_path = tmp_path / "keys" / "keyring.json"
        manifest = json.loads(manifest_path.read_text())
        other = KeyRing.generate().jwks()["keys"][0]
        manifest["keys"].append(
            {
                "kid": "forged",
                "status": "retired",
                "created_at": "2026-01-01T00:00:00+00:00",
                "jwk": {k: other[k] for k in ("kty", "crv", "x")},
            }
        )
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(KeyRingError, match="thumbprint"):
            KeyRing.load(tmp_path / "keys")

    def test_missing_ring_says_to_run_init(self, tmp_path: Path) -> None:
        with pytest.raises(KeyRingError, match="rcc-node init"):
            KeyRing.load(tmp_path / "nothing")
