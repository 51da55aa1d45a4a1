"""The inbound side of witnessing: a peer fetches this node's signed audit tree head.

``GET /federation/v1/audit/tree-head`` serves dataset ``audit.tree-heads``. Like every data-serving federation
route it asks the policy decision first (:func:`agreements.runtime.enforce_request`): the calling node gets the
head only if an active agreement grants it ``audit.tree-heads`` from this node for the purpose its request token
claims (``audit-witnessing`` in practice); otherwise 403 with the reason, audited with the agreement id.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from agreements.runtime import enforce_request
from federation.guard import PeerDep
from registry.core.audit.models import SignedTreeHead
from registry.core.audit.recording import audit_log
from registry.core.audit.service import signed_tree_head
from registry.core.node import NodeDep
from schemas.vocabulary import Dataset

router = APIRouter(prefix="/federation/v1/audit", tags=["federation"])


@router.get("/tree-head", name="federation.audit_tree_head")
def tree_head(peer: PeerDep, request: Request, node: NodeDep) -> SignedTreeHead:
    """This node's latest signed audit tree head, for a peer an agreement lets witness it."""
    enforce_request(
        request,
        requester=peer.node_id,
        dataset=Dataset.audit_tree_heads.value,
        purpose=peer.purpose.value,
        agreement_id=peer.agreement,
    )
    return signed_tree_head(audit_log(node))
