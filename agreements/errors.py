"""Refusals of the agreements part, each a :class:`~registry.core.errors.NodeError` carrying its evidence.

The one handler in ``registry.core.errors`` renders them as problem+json; the attributes (``agreement_id``,
``reason``, ``node_id``…) are what tests, the audit log and phase-2 federation code read, never the text.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry.core.errors import Conflict, Forbidden, NodeError, NotFound, ValidationFailed


class AgreementNotFound(NotFound):
    """No agreement (or no such version of it) is stored on this node."""

    code = "agreement-not-found"
    title = "No such agreement"

    def __init__(self, agreement_id: str, version: int | None = None) -> None:
        self.agreement_id = agreement_id
        self.version = version
        what = f"{agreement_id!r}" if version is None else f"{agreement_id!r} version {version}"
        super().__init__(f"no agreement {what} on this node", agreement=agreement_id, version=version)


class DocumentInvalid(ValidationFailed):
    """The agreement document breaks its schema or a cross-document rule; ``errors`` names each JSON path."""

    code = "agreement-invalid"
    title = "Invalid agreement document"

    def __init__(self, errors: Sequence[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "the agreement document is not valid", errors=errors)


class EventInvalid(ValidationFailed):
    """A lifecycle event (or a request to make one) that cannot be recorded; ``errors`` names each path."""

    code = "agreement-event-invalid"
    title = "Invalid agreement event"

    def __init__(self, errors: Sequence[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "the agreement event is not valid", errors=errors)


class VersionConflict(Conflict):
    """A different document already holds this (id, version): stored versions are immutable."""

    code = "agreement-version-conflict"
    title = "Agreement version already exists with other content"

    def __init__(self, agreement_id: str, version: int, stored_sha256: str, offered_sha256: str) -> None:
        self.agreement_id = agreement_id
        self.version = version
        self.stored_sha256 = stored_sha256
        self.offered_sha256 = offered_sha256
        super().__init__(
            f"agreement {agreement_id!r} version {version} is already stored with another content; "
            "publish a new version that supersedes it",
            agreement=agreement_id,
            version=version,
            stored_sha256=stored_sha256,
            offered_sha256=offered_sha256,
        )


class AgreementStateConflict(Conflict):
    """The agreement's computed state does not allow this step (e.g. signing a revoked agreement)."""

    code = "agreement-state-conflict"
    title = "Not allowed in the agreement's current state"

    def __init__(self, agreement_id: str, state: str, detail: str) -> None:
        self.agreement_id = agreement_id
        self.state = state
        super().__init__(detail, agreement=agreement_id, state=state)


class NotAParty(Forbidden):
    """A node acted on, or sent, an agreement it is not a party to."""

    code = "not-a-party"
    title = "Not a party to the agreement"

    def __init__(self, agreement_id: str, node_id: str | None) -> None:
        self.agreement_id = agreement_id
        self.node_id = node_id
        super().__init__(
            f"node {node_id!r} is not a party to agreement {agreement_id!r}", agreement=agreement_id, node_id=node_id
        )


class SignatureRefused(NodeError):
    """A signature or signed event that must not be stored: bad, by a non-party, or by a key not valid for its node.

    ``reason`` is the first refusal's stable code (``bad-signature``, ``unknown-key``, ``retired-key``,
    ``not-a-party``, ``wrong-type``…); ``errors`` lists every refused item by JSON path.
    """

    status = 422
    code = "signature-refused"
    title = "Signature refused"

    def __init__(self, reason: str, errors: Sequence[dict[str, str]], detail: str | None = None) -> None:
        self.reason = reason
        super().__init__(detail or f"signature refused: {reason}", errors=errors, reason=reason)


class PolicyDenied(Forbidden):
    """No active agreement lets ``requester`` have ``dataset`` from ``provider`` for ``purpose``.

    Raised by :func:`agreements.policy.enforce`, which has already recorded the denial in the audit context.
    ``reason`` is one of :class:`agreements.policy.DenyReason`.
    """

    code = "policy-denied"
    title = "No agreement permits this"

    def __init__(
        self,
        reason: str,
        *,
        provider: str,
        requester: str,
        dataset: str,
        purpose: str,
        agreement_id: str | None,
    ) -> None:
        self.reason = reason
        self.provider = provider
        self.requester = requester
        self.dataset = dataset
        self.purpose = purpose
        self.agreement_id = agreement_id
        super().__init__(
            f"{requester} may not have {dataset} from {provider} for {purpose}: {reason}",
            reason=reason,
            agreement=agreement_id,
            dataset=dataset,
            purpose=purpose,
        )
