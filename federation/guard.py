"""Inbound side of the wire: who is calling (the guard) and the signature on every answer (the middleware).

:func:`authenticate_peer` guards every ``/federation/v1/*`` route except the public directory: the token
must verify against the directory key of its ``iss``, be for this node, be fresh (``iat``/``exp`` within 30 s
skew, at most 60 s long), match the request received (method, URL, body digest) and carry a ``jti`` never
seen before. A refusal is 401 problem+json naming the reason and is audited as ``deny`` with the claimed
peer. The guard authenticates only: the ``agreement`` claim is carried on :class:`~federation.models.Peer`
for the policy decision to rule on.

:class:`ResponseSignatureMiddleware` signs every response under ``/federation/`` — errors included, whoever
produced them — with ``RCC-Response-Signature`` over ``{jti, status, bdh, iat}``. The body has to be complete
before the header can be sent, so it is held once (not copied again unless it arrived in several pieces).
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from federation.errors import DirectoryUnavailable, PeerUnauthenticated
from federation.models import Peer
from federation.runtime import Federation
from federation.tokens import (
    CLOCK_SKEW_SECONDS,
    RESPONSE_SIGNATURE_HEADER,
    TokenRefused,
    body_digest,
    sign_response,
    unverified_jti,
    verify_request_token,
)
from registry.core.audit.context import AuditContext, audit_context
from registry.core.errors import ServiceUnavailable
from registry.core.keys import b64url

log = logging.getLogger("rcc.federation.guard")
FEDERATION_PREFIX = "/federation/"
_JTI_STATE = "federation_jti"


def federation_of(request: Request) -> Federation:
    """The federation runtime of the node serving this request."""
    federation: Federation = request.app.state.node.extensions["federation"]
    return federation


async def get_federation(request: Request) -> Federation:
    """Dependency form of :func:`federation_of` (async: no thread-pool hop per request)."""
    return federation_of(request)


FederationDep = Annotated[Federation, Depends(get_federation)]


def _called_url(federation: Federation, request: Request) -> str:
    # The URL as the caller addressed it: our published base URL (what the directory lists) plus the raw
    # path and query, so a proxy in front of the node does not change what the token is compared with.
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else scope["path"]
    query = scope.get("query_string", b"")
    return federation.base_url + path + ("?" + query.decode("latin-1") if query else "")


def _has_body(scope: Scope) -> bool:
    # HTTP/1.x: a request without Content-Length (or with 0) and without Transfer-Encoding has no body
    # (RFC 9112 §6.3), so its bdh is that of b"" and the body need not be awaited through every receive
    # wrapper. Other versions (HTTP/2 may send DATA without Content-Length) always read what arrives.
    if scope.get("http_version") not in ("1.1", "1.0"):
        return True
    for name, value in scope["headers"]:
        lowered = name.lower()
        if (lowered == b"content-length" and value != b"0") or lowered == b"transfer-encoding":
            return True
    return False


def _authorization(scope: Scope) -> str:
    # Servers hand header names over lower-cased (ASGI), as Starlette's Headers also assumes.
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""


async def authenticate_peer(request: Request) -> Peer:
    """Authenticate the calling node from its request token; refuse with 401 and the reason otherwise.

    Works on the ASGI scope itself (headers, state) rather than through Starlette's per-request wrappers:
    this runs on every federated call.
    """
    scope = request.scope
    federation = federation_of(request)
    state: dict[str, Any] = scope.setdefault("state", {})
    audit = state.get("audit")
    if not isinstance(audit, AuditContext):
        audit = audit_context(request)
    audit.actor_type = "node"
    scheme, _, token = _authorization(scope).partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        audit.deny("missing-token")
        raise PeerUnauthenticated("missing-token", "a federation call needs Authorization: Bearer <request JWT>")
    federation.store.maybe_refresh()
    try:
        directory = federation.store.require()
    except DirectoryUnavailable:
        state[_JTI_STATE] = unverified_jti(token)
        audit.deny("directory-unavailable")
        raise
    body = await request.body() if _has_body(scope) else b""
    try:
        verified = verify_request_token(
            token,
            directory=directory,
            audience=federation.node_id,
            method=scope["method"],
            url=_called_url(federation, request),
            bdh=body_digest(body),
            now=time.time(),
        )
    except TokenRefused as exc:
        state[_JTI_STATE] = exc.jti
        audit.actor_id = audit.peer = exc.issuer
        audit.extra["peer_verified"] = exc.verified
        audit.deny(exc.reason)
        raise PeerUnauthenticated(exc.reason, exc.detail, peer_id=exc.issuer) from None
    state[_JTI_STATE] = verified.jti
    node = verified.node
    audit.actor_id = audit.peer = node.node_id
    audit.purpose = verified.purpose.value
    audit.agreement = verified.agreement
    try:
        fresh = await federation.replay.claim(
            jti=verified.jti,
            issuer=node.node_id,
            expires_at=datetime.fromtimestamp(verified.expires_at + CLOCK_SKEW_SECONDS, tz=UTC),
        )
    except Exception:
        log.exception("replay cache unavailable")
        audit.deny("replay-cache-unavailable")
        raise ServiceUnavailable("cannot record the request token; refusing rather than risk a replay") from None
    if not fresh:
        audit.deny("replayed")
        raise PeerUnauthenticated("replayed", "this request token (jti) has already been used", peer_id=node.node_id)
    audit.permit("peer-authenticated")
    peer = Peer(
        node_id=node.node_id,
        name=node.name,
        kind=node.kind,
        region_code=node.region_code,
        kid=verified.kid,
        jti=verified.jti,
        purpose=verified.purpose,
        agreement=verified.agreement,
        issued_at=verified.issued_at,
        expires_at=verified.expires_at,
    )
    state["federation_peer"] = peer
    return peer


PeerDep = Annotated[Peer, Depends(authenticate_peer)]


class ResponseSignatureMiddleware:
    """Adds ``RCC-Response-Signature`` to every response under ``/federation/`` (pure ASGI, one pass)."""

    def __init__(self, app: ASGIApp, *, federation: Federation) -> None:
        self.app = app
        self.federation = federation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(FEDERATION_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        digest = hashlib.sha256()

        async def send_signed(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                digest.update(chunk)
            if message.get("more_body", False):
                return
            signature = sign_response(
                self.federation.signer,
                jti=self._jti(scope),
                status=int(start["status"]),
                bdh=b64url(digest.digest()),
                iat=int(time.time()),
            )
            start["headers"] = [*start.get("headers", []), (_HEADER, signature.encode("ascii"))]
            await send(start)
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_signed)

    @staticmethod
    def _jti(scope: Scope) -> str | None:
        state = scope.get("state") or {}
        jti = state.get(_JTI_STATE)
        if isinstance(jti, str):
            return jti
        for name, value in scope.get("headers", []):  # refused before the guard ran (404, 405, 413…)
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return unverified_jti(token.strip()) if scheme.lower() == "bearer" else None
        return None


_HEADER = RESPONSE_SIGNATURE_HEADER.lower().encode("ascii")
