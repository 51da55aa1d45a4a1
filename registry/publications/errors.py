"""What can go wrong in the publications register, as problem+json classes carrying their evidence."""

from __future__ import annotations

from registry.core.errors import Conflict, NotFound, PreconditionFailed, PreconditionRequired


class PublicationNotFound(NotFound):
    """This node holds no publication with that id."""

    code = "publication-not-found"
    title = "No such publication"

    def __init__(self, publication_id: str) -> None:
        super().__init__(f"no publication {publication_id!r} on this node", publication_id=publication_id)
        self.publication_id = publication_id


class VersionNotFound(NotFound):
    """The publication exists but has no such version."""

    code = "version-not-found"
    title = "No such version"

    def __init__(self, publication_id: str, version: int, latest: int) -> None:
        super().__init__(
            f"publication {publication_id!r} has versions 1 to {latest}, not {version}",
            publication_id=publication_id,
            version=version,
            latest_version=latest,
        )
        self.publication_id, self.version, self.latest = publication_id, version, latest


class PublicationExists(Conflict):
    """A new publication asked for an id already in use."""

    code = "publication-exists"
    title = "Publication id already in use"

    def __init__(self, publication_id: str) -> None:
        super().__init__(
            f"publication {publication_id!r} already exists; update it with PUT and If-Match",
            publication_id=publication_id,
        )
        self.publication_id = publication_id


class PublicationWithdrawn(Conflict):
    """Withdrawal is final: a withdrawn publication takes no new versions."""

    code = "publication-withdrawn"
    title = "Publication withdrawn"

    def __init__(self, publication_id: str, version: int) -> None:
        super().__init__(
            f"publication {publication_id!r} was withdrawn in version {version}; publish a new one instead",
            publication_id=publication_id,
            version=version,
        )
        self.publication_id, self.version = publication_id, version


class StaleETag(PreconditionFailed):
    """``If-Match`` names a version that is no longer the latest (someone else updated it first)."""

    code = "stale-etag"
    title = "Publication changed since you read it"

    def __init__(self, publication_id: str, current_etag: str | None) -> None:
        super().__init__(
            f"publication {publication_id!r} has changed; fetch it again and retry with its current ETag",
            publication_id=publication_id,
            current_etag=current_etag,
        )
        self.publication_id, self.current_etag = publication_id, current_etag


class ETagRequired(PreconditionRequired):
    """Changing a publication must name the version it changes (``If-Match``), so no update is lost."""

    code = "if-match-required"
    title = "If-Match required"

    def __init__(self, publication_id: str) -> None:
        super().__init__(
            f"send If-Match with the ETag of the version of {publication_id!r} you are changing",
            publication_id=publication_id,
        )
        self.publication_id = publication_id


class SchemaNotFound(NotFound):
    """No shipped schema by that name."""

    code = "schema-not-found"
    title = "No such schema"

    def __init__(self, name: str) -> None:
        super().__init__(f"no schema named {name[:100]!r}", name=name[:100])
        self.name = name
