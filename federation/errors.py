"""Errors of the federation transport, rendered as problem+json by the node's one handler.

Each carries its evidence as attributes (``reason``, ``peer_id``, ``serial``) so the audit entry, the
problem body and a test can all name exactly what was refused.
"""

from __future__ import annotations

from typing import Any

from registry.core.errors import NodeError, NotFound, ServiceUnavailable, Unauthenticated


class PeerUnauthenticated(Unauthenticated):
    """A federation request whose token this node does not accept; ``reason`` says which check failed."""

    code = "peer-unauthenticated"
    title = "Peer not authenticated"

    def __init__(self, reason: str, detail: str, *, peer_id: str | None = None) -> None:
        self.reason = reason
        self.peer_id = peer_id
        super().__init__(
            detail,
            reason=reason,
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'},
        )


class DirectoryRejected(NodeError):
    """A directory document this node refuses to hold (unsigned, wrong signer, expired, older serial…)."""

    status = 422
    code = "directory-rejected"
    title = "Directory rejected"

    def __init__(self, reason: str, detail: str, **extra: Any) -> None:
        self.reason = reason
        super().__init__(detail, reason=reason, **extra)


class DirectoryUnavailable(ServiceUnavailable):
    """This node holds no directory that is still valid, so it can neither authenticate nor call peers."""

    code = "directory-unavailable"
    title = "Federation directory unavailable"


class UnknownPeer(NotFound):
    """A peer the current directory does not list."""

    code = "unknown-peer"
    title = "Unknown peer"

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        super().__init__(f"node {peer_id} is not in the federation directory", peer_id=peer_id)


class NotOperator(NotFound):
    """Only the federation operator serves the directory."""

    code = "not-operator"
    title = "Not the directory operator"
