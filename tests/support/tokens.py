"""Access tokens for tests of protected routes: ``access_token(app_or_node, *roles, subject="test-client")``;
and key pairs and a tiny JWKS endpoint for tests that play a client or an identity provider.

The token is a genuine node-issued access token (signed by the node's active key, ``at+jwt``), and the
client it names is registered in the node's database with the roles asked for (added to any it already
holds), so the node accepts it exactly as it would one from ``POST /oauth/token``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlmodel import Session

from registry.core.auth.models import Client, ClientCreate
from registry.core.auth.service import create
from registry.core.auth.tokens import issue_access_token
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.core.settings import load_settings
from schemas.vocabulary import Role


def _register(engine: Any, subject: str, roles: list[str]) -> None:
    with Session(engine) as session:
        client = session.get(Client, subject)
        if client is None:
            # A token without roles still needs a registered client; it holds analyst, the token grants nothing.
            held = [Role(r) for r in roles] or [Role.analyst]
            create(session, data=ClientCreate(name=subject, roles=held), client_id=subject)
        else:
            client.roles = " ".join(sorted(client.role_set | set(roles)))
            client.revoked_at = None
            session.add(client)
        session.commit()


def access_token(app_or_node: Any, *roles: Role | str, subject: str = "test-client", ttl_seconds: int = 900) -> str:
    """A valid access token for ``subject`` holding ``roles`` (none: a token that opens nothing) on an in-process
    app, a ``Node``, or a served node.

    A served node (``tests.support.nodes.ServedNode`` or ``NodeSpec``) is reached through its data folder:
    its settings, key ring and database, as ``rcc-node`` itself would.
    """
    role_values = sorted({Role(r).value for r in roles})
    if isinstance(app_or_node, FastAPI):
        app_or_node = app_or_node.state.node
    if isinstance(app_or_node, Node):
        _register(app_or_node.engine, subject, role_values)
        keys, base_url = app_or_node.keys, app_or_node.settings.base_url
    else:
        spec = getattr(app_or_node, "spec", app_or_node)
        settings = load_settings(data_dir=spec.data_dir, config=spec.data_dir / "node.toml")
        engine = make_engine(settings.effective_database_url)
        try:
            _register(engine, subject, role_values)
        finally:
            engine.dispose()
        keys, base_url = KeyRing.load(settings.effective_key_dir), settings.base_url
    return issue_access_token(
        keys, base_url=base_url, client_id=subject, roles=role_values, ttl_seconds=ttl_seconds
    ).access_token


def bearer(app_or_node: Any, *roles: Role | str, subject: str = "test-client") -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` for ``access_token(app_or_node, *roles, subject=subject)``."""
    return {"Authorization": f"Bearer {access_token(app_or_node, *roles, subject=subject)}"}


@dataclass
class KeyPair:
    """A test-generated signing key and its public JWK (the way an identity provider or a client holds one)."""

    private: Any
    public_jwk: dict[str, Any]
    alg: str


def ed25519_pair(kid: str = "k1") -> KeyPair:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return KeyPair(private, {**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"}, "EdDSA")


def rsa_pair(kid: str = "r1", *, declare_alg: bool = True) -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk = {**jwk, "kid": kid, "use": "sig"}
    if declare_alg:
        jwk["alg"] = "RS256"
    return KeyPair(private, jwk, "RS256")


def ec_pair(kid: str = "e1") -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return KeyPair(private, {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}, "ES256")


def write_jwks(path: Path, *pairs: KeyPair) -> Path:
    path.write_text(json.dumps({"keys": [p.public_jwk for p in pairs]}), encoding="utf-8")
    return path


class JwksEndpoint:
    """A tiny HTTP JWKS endpoint on 127.0.0.1 that counts its fetches and can swap its keys."""

    def __init__(self, *pairs: KeyPair) -> None:
        self.document = {"keys": [p.public_jwk for p in pairs]}
        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.fetches += 1
                body = json.dumps(endpoint.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
