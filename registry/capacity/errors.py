"""Refusals of the capacity register, each with its evidence as attributes (rendered as problem+json)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from registry.core.errors import Conflict, NotFound, ValidationFailed


class VacancyNotFound(NotFound):
    """No current vacancy with this id on this node."""

    code = "vacancy-not-found"
    title = "No such vacancy"

    def __init__(self, vacancy_id: str) -> None:
        self.vacancy_id = vacancy_id
        super().__init__(f"no vacancy {vacancy_id!r} on this node", vacancy_id=vacancy_id)


class CapacityFactInvalid(ValidationFailed):
    """A vacancy or secure-home report that breaks a rule the body's shape cannot express (``errors`` has paths)."""

    code = "capacity-fact-invalid"
    title = "Capacity fact invalid"


class BatchRejected(ValidationFailed):
    """A batch with at least one bad item: nothing was stored. ``failed_items`` lists the bad items' indexes."""

    code = "batch-rejected"
    title = "Batch rejected"

    def __init__(self, errors: Sequence[dict[str, str]], failed_items: Sequence[int]) -> None:
        self.failed_items = sorted(set(failed_items))
        super().__init__(
            f"{len(self.failed_items)} item(s) cannot be stored, so none were; see errors",
            errors=errors,
            failed_items=self.failed_items,
        )


class OutOfOrderUpdate(Conflict):
    """The report sent is older (``as_of``) than the one held: a late retry must not overwrite newer facts."""

    code = "out-of-order-update"
    title = "Older than the stored report"

    def __init__(self, key: str, stored_as_of: datetime) -> None:
        self.key = key
        self.stored_as_of = stored_as_of
        super().__init__(
            f"{key!r} holds a report as of {stored_as_of.isoformat()}, newer than the one sent",
            key=key,
            stored_as_of=stored_as_of.isoformat(),
        )


class ConcurrentChange(Conflict):
    """Another request stored the same record at the same moment; retrying is safe."""

    code = "concurrent-change"
    title = "Changed concurrently"

    def __init__(self) -> None:
        super().__init__("another request stored the same record at the same time; retry")
