"""Errors of the audit log."""

from __future__ import annotations

from typing import ClassVar

from registry.core.errors import ServiceUnavailable


class AuditUnavailable(ServiceUnavailable):
    """The entry for this request could not be stored, so the request is refused rather than served unaudited."""

    code: ClassVar[str] = "audit-unavailable"
    title: ClassVar[str] = "Audit log unavailable"


class AuditStoreError(RuntimeError):
    """The stored log is inconsistent (missing head row, nodes that do not rebuild the signed root…).

    The sequencer stops extending a log in this state; ``rcc-node audit verify`` names what is wrong.
    """
