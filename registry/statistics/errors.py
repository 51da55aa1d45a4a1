"""Errors of the statistics register, rendered as problem+json by the one handler."""

from __future__ import annotations

from registry.core.errors import Conflict, NotFound, ValidationFailed


class UnknownTable(NotFound):
    """The table is not in the fixed catalogue."""

    code = "statistics-table-unknown"
    title = "No such statistics table"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"table {name!r} is not in the catalogue", table=name)


class ReleaseNotFound(NotFound):
    """No release has been built (for that year)."""

    code = "statistics-release-not-found"
    title = "No statistics release"

    def __init__(self, year: int | None) -> None:
        self.year = year
        super().__init__("no release has been built" + (f" for {year}" if year else ""), year=year)


class NothingToBuild(Conflict):
    """No LA of the area has imported episodes for the year, so there is nothing to publish."""

    code = "statistics-nothing-to-build"
    title = "No episodes imported for the release"

    def __init__(self, area_code: str, year: int | None) -> None:
        self.area_code = area_code
        self.year = year
        super().__init__(f"no episodes imported for {area_code}" + (f" in {year}" if year else ""), year=year)


class LaOutsideArea(ValidationFailed):
    """An import for an LA that is not one of this node's (live) LAs."""

    code = "statistics-la-outside-area"
    title = "LA is not in this node's area"

    def __init__(self, la: str, area_code: str | None) -> None:
        self.la = la
        self.area_code = area_code
        super().__init__(f"LA {la} is not a live LA of {area_code or 'this node'}", la=la, area_code=area_code)
