"""The outbound client: every call this node makes to a peer goes through :meth:`FederationClient.call`.

For each attempt it signs a fresh request token (new ``jti``; ``htu`` the full URL called, ``bdh`` the hash of
the exact body bytes), sends it over the pooled wire, verifies the peer's ``RCC-Response-Signature`` against
the peer's current directory key, and classifies the call: ``ok``, ``refused`` (403), ``unauthorized`` (401),
``timeout``, ``unreachable``, ``error`` (5xx, malformed) or ``bad-signature``. Only idempotent reads are
retried, a bounded number of times, and never past the caller's deadline. Every call is audited with the
peer's response signature: proof of what the peer said and when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from federation.directory import Directory, DirectoryNode
from federation.errors import DirectoryUnavailable
from federation.models import PeerResult
from federation.tokens import (
    RESPONSE_SIGNATURE_HEADER,
    RequestToken,
    Signer,
    body_digest,
    build_request_token,
    verify_response,
)
from federation.wire import Wire, WireError, WireResponse
from registry.core.audit.context import AuditContext
from registry.core.signing import SignatureInvalid, sha256_hex
from schemas.vocabulary import PeerOutcome

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
_SIGNATURE_HEADER = RESPONSE_SIGNATURE_HEADER.lower()


@dataclass(frozen=True)
class OutboundCall:
    """What was asked of a peer, for the audit entry (never the body itself: only its digest)."""

    peer: str
    method: str
    path: str
    purpose: str
    agreement: str | None
    dataset: str | None
    request_id: str | None
    context: AuditContext | None = None


OutboundAuditor = Callable[[OutboundCall, PeerResult], Awaitable[None]]
"""Records one outbound call durably (the audit log's ``append_outbound``)."""


class FederationClient:
    """Signed, verified, classified calls to peers, over one pooled wire."""

    def __init__(
        self,
        *,
        node_id: str,
        signer: Signer,
        directory: Callable[[], Directory],
        wire: Wire,
        auditor: OutboundAuditor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.signer = signer
        self.directory = directory
        self.wire = wire
        self.auditor = auditor
        self.clock = clock

    async def call(
        self,
        peer: str,
        method: str,
        path: str,
        *,
        purpose: str,
        json_body: Any = None,
        agreement: str | None = None,
        dataset: str | None = None,
        timeout: float = 10.0,
        retries: int = 1,
        deadline: float | None = None,
        request_id: str | None = None,
        context: AuditContext | None = None,
        parse: bool = True,
    ) -> PeerResult:
        """Call ``peer`` and classify the outcome; never raises for anything the peer or network does.

        ``deadline`` is an absolute ``loop.time()`` shared by a fan-out; without it the call gets ``timeout``
        seconds. ``request_id`` and ``context`` (the audit context of the local request that caused the call)
        go into the audit entry. GET/HEAD are retried up to ``retries`` times when the peer was unreachable or answered
        502/503/504, each attempt with a new token, and only while the deadline allows. With ``parse`` false a
        2xx answer is left unparsed (``body`` None, the bytes in ``content``) for a caller that validates the
        bytes straight into its models, and so judges a malformed answer itself.
        """
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        method = method.upper()
        until = deadline if deadline is not None else loop.time() + timeout
        body = b"" if json_body is None else json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
        record = OutboundCall(peer, method, path, purpose, agreement, dataset, request_id, context)
        try:
            node = self._node(peer)
        except DirectoryUnavailable as exc:
            result = PeerResult(peer, PeerOutcome.error, 0.0, detail=exc.detail)
            await self._audit(record, result)
            return result
        attempts = 0
        while True:
            attempts += 1
            result = await self._attempt(node, method, path, body, purpose, agreement, until, parse)
            retry = (result.outcome is PeerOutcome.unreachable or result.status in RETRY_STATUSES) and (
                method in IDEMPOTENT_METHODS and attempts <= retries and loop.time() < until
            )
            if not retry:
                break
        result.attempts = attempts
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.request_sha256 = sha256_hex(body)
        await self._audit(record, result)
        return result

    def _node(self, peer: str) -> DirectoryNode:
        node = self.directory().node(peer, at=self.clock())
        if node is None:
            raise DirectoryUnavailable(f"node {peer} is not in the federation directory")
        return node

    async def _attempt(
        self,
        node: DirectoryNode,
        method: str,
        path: str,
        body: bytes,
        purpose: str,
        agreement: str | None,
        until: float,
        parse: bool = True,
    ) -> PeerResult:
        loop = asyncio.get_running_loop()
        remaining = until - loop.time()
        if remaining <= 0:
            return PeerResult(node.node_id, PeerOutcome.timeout, 0.0, detail="deadline passed before the call")
        url = node.base_url + path
        token = build_request_token(
            self.signer,
            issuer=self.node_id,
            audience=node.node_id,
            method=method,
            url=url,
            body=body,
            purpose=purpose,
            agreement=agreement,
            now=self.clock(),
        )
        headers = {"authorization": f"Bearer {token.token}", "accept": "application/json"}
        if body:
            headers["content-type"] = "application/json"
        try:
            async with asyncio.timeout_at(until):
                response = await self.wire.send(method, url, headers=headers, body=body, timeout=remaining)
        except TimeoutError:
            return PeerResult(node.node_id, PeerOutcome.timeout, 0.0, detail=f"no answer within {remaining:.3f} s")
        except WireError as exc:
            return PeerResult(node.node_id, PeerOutcome(exc.kind), 0.0, detail=exc.detail)
        return self._classify(node, token, response, parse)

    def _classify(self, node: DirectoryNode, token: RequestToken, response: WireResponse, parse: bool) -> PeerResult:
        status = response.status
        result = PeerResult(node.node_id, PeerOutcome.error, 0.0, status=status)
        result.response_sha256 = sha256_hex(response.body)
        signature = response.headers.get(_SIGNATURE_HEADER)
        if signature is None:
            # A gateway's 5xx in front of the peer is an error; anything else unsigned cannot be trusted.
            result.outcome = PeerOutcome.error if status >= 500 else PeerOutcome.bad_signature
            result.detail = f"HTTP {status} without {RESPONSE_SIGNATURE_HEADER}"
            return result
        result.response_signature = signature
        try:
            proof = verify_response(
                signature, node=node, jti=token.jti, status=status, bdh=body_digest(response.body), now=self.clock()
            )
        except SignatureInvalid as exc:
            result.outcome, result.detail = PeerOutcome.bad_signature, f"{exc.reason}: {exc.detail}"
            return result
        result.kid = proof.kid
        result.content = response.body
        if 200 <= status < 300 and not parse:
            result.outcome = PeerOutcome.ok
            return result
        try:
            result.body = json.loads(response.body) if response.body else None
        except ValueError:
            result.detail = "response body is not JSON"
            return result
        if 200 <= status < 300:
            result.outcome = PeerOutcome.ok
        elif status == 401:
            result.outcome = PeerOutcome.unauthorized
        elif status == 403:
            result.outcome = PeerOutcome.refused
        if result.outcome is not PeerOutcome.ok:
            result.detail = _problem_detail(result.body, status)
        return result

    async def _audit(self, call: OutboundCall, result: PeerResult) -> None:
        if self.auditor is not None:
            await self.auditor(call, result)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.wire.aclose()


def _problem_detail(body: Any, status: int) -> str:
    if isinstance(body, dict):
        reason = body.get("reason") or body.get("code")
        detail = body.get("detail")
        if reason and detail:
            return f"{reason}: {detail}"
        if detail:
            return str(detail)
    return f"HTTP {status}"
