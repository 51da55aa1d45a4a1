"""Service functions behind the federation routes (routes stay thin: parse, authenticate, call one of these)."""

from __future__ import annotations

from typing import Any

from federation.errors import NotOperator
from federation.models import Peer, PingResponse
from federation.runtime import Federation
from registry.core.db import utcnow


def ping(federation: Federation, peer: Peer, *, echo: Any = None) -> PingResponse:
    """The authenticated echo: the caller as verified, this node's clock, and the body sent back if any."""
    return PingResponse(
        node_id=federation.node_id,
        peer=peer.node_id,
        kid=peer.kid,
        purpose=peer.purpose,
        agreement=peer.agreement,
        jti=peer.jti,
        server_time=utcnow(),
        echo=echo,
    )


def served_directory(federation: Federation) -> dict[str, Any]:
    """The signed directory the operator serves: the one it holds, as long as it is still valid."""
    if not federation.is_operator:
        raise NotOperator("this node is not the federation operator; ask the operator for the directory")
    return federation.store.require().envelope()
