"""The statistics register's services: import episodes, build and sign releases, read tables.

Services flush, never commit: the caller (CLI command or request) owns the transaction, so an import that
fails half-way, or a build that fails to sign, leaves nothing behind.

Import streams the file once: :func:`registry.statistics.ssda903.read_rows` stops yielding at the first
broken rule but checks on to the end and then raises, so the caller's rollback discards the rows already
inserted — the same "validate whole file first" outcome as two passes, at half the cost. Rows go in as plain
tuples straight to the driver, never as ORM objects or through SQLAlchemy's parameter handling: on SQLite
prepared multi-row INSERTs with ``executemany`` in large batches, on PostgreSQL ``COPY … FROM STDIN``. That,
and a parser that works each date, DOB and postcode out once, is what keeps import above 50,000 rows/s
(``bench/bench_statistics.py``).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlmodel import Session, col, select

from registry.core.db import utcnow
from registry.core.domain import las_in_region, local_authorities, regions
from registry.core.keys import NodeKey
from registry.core.signing import TYP_STATISTICS, sign_detached
from registry.statistics import catalogue
from registry.statistics.disclosure import threshold_for
from registry.statistics.errors import LaOutsideArea, NothingToBuild, ReleaseNotFound, UnknownTable
from registry.statistics.models import (
    EPISODE_COLUMNS,
    ImportResult,
    ReleaseSummary,
    Row,
    SignedTable,
    StatisticsCatalogue,
    StatisticsEpisode,
    StatisticsRelease,
    StatisticsReleaseTable,
    StatisticsTable,
    TableEntry,
)
from registry.statistics.ssda903 import Episode, read_rows

SALT_FILE = "statistics.salt"
SALT_BYTES = 32
INSERT_BATCH = 20_000  # rows per executemany (and per progress report)
ROWS_PER_INSERT = 400  # rows per SQLite INSERT statement (9,200 bound values; fewer if SQLite's limit is lower)
EES_TIME_IDENTIFIER = "Reporting year"
_ONS_CODE = re.compile(r"E[0-9]{8}")
_EPISODES = StatisticsEpisode.__table__  # type: ignore[attr-defined]


def load_salt(data_dir: Path) -> bytes:
    """The node's secret pseudonymisation salt, created (0600, never overwritten) on first need."""
    path = data_dir / SALT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    salt = secrets.token_bytes(SALT_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(salt)
    return salt


def area_las(area_code: str) -> list[str]:
    """The live LAs of a region: the LAs a regional node publishes for.

    The DfE list also carries joint-return rows (``E06000063 / E06000064``); their LAs are listed on their own
    too, and a file comes from one LA, so the joint rows are left out (counting them would mark them missing).
    """
    return sorted(la.ons_code for la in las_in_region(area_code) if _ONS_CODE.fullmatch(la.ons_code))


def import_episodes(
    session: Session,
    source: str | os.PathLike[str] | TextIO,
    *,
    la: str,
    year: int,
    salt: bytes,
    area_code: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Replace the LA's episodes for the year with the file's, or raise ``InvalidEpisodeFile`` (roll back then).

    ``area_code`` limits imports to that region's live LAs; ``progress`` is told the count of rows stored so far.
    """
    if area_code is not None and la not in area_las(area_code):
        raise LaOutsideArea(la, area_code)
    connection = session.connection()
    replaced = connection.execute(sa.delete(_EPISODES).where(_EPISODES.c.la == la, _EPISODES.c.year == year)).rowcount
    postgres = connection.dialect.name == "postgresql"
    rows = read_rows(source, la=la, year=year, salt=salt, blank=None if postgres else "")
    store = _copy_rows if postgres else _insert_rows
    with _collector_paused():
        stored = store(connection.connection, rows, progress or _no_progress)
    return ImportResult(la=la, year=year, episodes=stored, replaced=replaced or 0)


def _no_progress(_stored: int) -> None:
    pass


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a file streams in, as it was after.

    Reading a file allocates several small containers per row and keeps some (each child's episodes until
    the cross-row checks at the end), which set off collections of a growing heap: 10-15% of an import.
    Nothing it allocates forms a cycle, so reference counting alone frees it all. Imports run in commands
    (``rcc-node import episodes``, ``federation up``), never in a request, so no other work is held up.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_COLUMN_LIST = ", ".join(EPISODE_COLUMNS)
_NULLABLE = "NULLIF(?, '')"  # rows come with '' for NULL: the driver binds a str 4x faster than None


def _insert_rows(dbapi: Any, rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None]) -> int:
    """SQLite: prepared multi-row INSERTs, ``executemany`` on the driver's cursor, in large batches of plain tuples.

    SQLAlchemy's per-row parameter handling cost more than SQLite's own insert, so rows skip it: the parser
    already gives dates as the ISO text SQLAlchemy's ``Date`` stores on SQLite, booleans as 0/1 and an absent
    value as ``''``, which ``NULLIF`` turns back into NULL (sqlite3 binds ``None`` and ``bool`` through its
    adapter look-up, two caught ``AttributeError`` each: that was a third of the insert). A statement of
    ``ROWS_PER_INSERT`` rows costs SQLite and the driver one step for all of them.
    """
    width = len(EPISODE_COLUMNS)
    per_insert = max(
        1, min(ROWS_PER_INSERT, dbapi.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    )
    one = "(" + ", ".join(_NULLABLE if _EPISODES.c[name].nullable else "?" for name in EPISODE_COLUMNS) + ")"
    head = f"INSERT INTO {_EPISODES.name} ({_COLUMN_LIST}) VALUES "  # noqa: S608 - constants; values are bound
    many, single = head + ", ".join([one] * per_insert), head + one
    step = per_insert * width
    cursor = dbapi.cursor()
    stored = 0
    try:
        while batch := list(islice(rows, INSERT_BATCH)):
            whole = len(batch) - len(batch) % per_insert
            if whole:
                flat = list(chain.from_iterable(batch[:whole]))
                cursor.executemany(many, [flat[i : i + step] for i in range(0, len(flat), step)])
            if whole < len(batch):
                cursor.executemany(single, batch[whole:])
            stored += len(batch)
            progress(stored)
    finally:
        cursor.close()
    return stored


def _copy_rows(dbapi: Any, rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None]) -> int:
    """PostgreSQL: ``COPY … FROM STDIN`` through psycopg, the server's bulk path (dates travel as ISO text).

    An error raised by the rows (a rejected file) aborts the COPY and the transaction, and is re-raised.
    """
    stored = 0
    cursor = dbapi.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {_EPISODES.name} ({_COLUMN_LIST}) FROM STDIN") as copy:
        write = copy.write_row
        while batch := list(islice(rows, INSERT_BATCH)):
            for row in batch:
                write(row)
            stored += len(batch)
            progress(stored)
    return stored


def imported(session: Session, *, year: int | None = None) -> dict[int, set[str]]:
    """The LAs with episodes, by collection year."""
    query = sa.select(_EPISODES.c.year, _EPISODES.c.la).distinct()
    if year is not None:
        query = query.where(_EPISODES.c.year == year)
    found: dict[int, set[str]] = {}
    for y, la in session.connection().execute(query):
        found.setdefault(y, set()).add(la)
    return found


def episodes_of(session: Session, *, year: int, las: Iterable[str]) -> list[Episode]:
    """The stored episodes of those LAs and year, as :class:`Episode` (for building tables only)."""
    columns = [_EPISODES.c[name] for name in EPISODE_COLUMNS]
    query = sa.select(*columns).where(_EPISODES.c.year == year, _EPISODES.c.la.in_(sorted(las)))
    return [Episode(*row) for row in session.connection().execute(query)]


def build_release(
    session: Session,
    *,
    node_id: str,
    area_code: str,
    key: NodeKey,
    year: int | None = None,
    now: datetime | None = None,
) -> StatisticsRelease:
    """Compute, protect and sign every catalogue table for the area's LAs; store it as the next version.

    ``year`` defaults to the latest year with an import. LAs of the area without an import are ``missing``:
    their rows, and the area totals, are published as ``x``.
    """
    held = imported(session, year=year)
    if not held:
        raise NothingToBuild(area_code, year)
    year = max(held) if year is None else year
    expected = area_las(area_code)
    present = sorted(held[year] & set(expected))
    if not present:
        raise NothingToBuild(area_code, year)
    missing = [la for la in expected if la not in present]
    episodes = episodes_of(session, year=year, las=present)
    tables = catalogue.publish(episodes, year=year, las=present, total=area_code, missing=missing)
    release = StatisticsRelease(
        year=year,
        area_code=area_code,
        built_at=(now or utcnow()).replace(microsecond=0),
        threshold=threshold_for(None),
        las=" ".join(present),
        missing=" ".join(missing),
    )
    session.add(release)
    session.flush()
    assert release.version is not None  # noqa: S101 - assigned by the flush
    for spec in catalogue.TABLES:
        document = table_document(node_id, release, spec.name, tables[spec.name])
        session.add(
            StatisticsReleaseTable(
                version=release.version,
                name=spec.name,
                document=json.dumps(document, separators=(",", ":")),
                signature=sign_detached(document, key, typ=TYP_STATISTICS),
            )
        )
    session.flush()
    return release


def table_document(
    node_id: str, release: StatisticsRelease, name: str, rows: list[Row], *, threshold: int | None = None
) -> dict[str, Any]:
    """The signed unit: one table of one release, with what a verifier needs to know where it came from."""
    return {
        "node_id": node_id,
        "table": name,
        "title": catalogue.table(name).title,
        "year": release.year,
        "release_version": release.version,
        "built_at": release.built_at.isoformat().replace("+00:00", "Z"),
        "area_code": release.area_code,
        "threshold": release.threshold if threshold is None else threshold,
        "las": release.las.split(),
        "missing": release.missing.split(),
        "rows": rows,
    }


def spec_or_raise(name: str) -> catalogue.TableSpec:
    """The catalogue entry, or 404."""
    try:
        return catalogue.table(name)
    except KeyError:
        raise UnknownTable(name) from None


def get_release_or_raise(session: Session, *, year: int | None = None) -> StatisticsRelease:
    """The newest release (of that year)."""
    query = select(StatisticsRelease).order_by(col(StatisticsRelease.version).desc()).limit(1)
    if year is not None:
        query = query.where(StatisticsRelease.year == year)
    release = session.exec(query).first()
    if release is None:
        raise ReleaseNotFound(year)
    return release


def get_signed_table(session: Session, name: str, *, year: int | None = None) -> tuple[StatisticsRelease, SignedTable]:
    """The newest release's table as signed."""
    spec_or_raise(name)
    release = get_release_or_raise(session, year=year)
    stored = session.get(StatisticsReleaseTable, (release.version, name))
    if stored is None:
        raise ReleaseNotFound(year)
    return release, SignedTable(document=json.loads(stored.document), signature=stored.signature)


def reprotect(
    session: Session, release: StatisticsRelease, name: str, *, node_id: str, key: NodeKey, min_cell_size: int
) -> SignedTable:
    """The release's table re-protected at a stricter threshold (an agreement's minimum cell size), signed now.

    Built from the same episodes as the release; thresholds nest (disclosure rule 3), so this copy hides
    everything the stored one hides and more.
    """
    las, missing = release.las.split(), release.missing.split()
    tables = catalogue.publish(
        episodes_of(session, year=release.year, las=las),
        year=release.year,
        las=las,
        total=release.area_code,
        missing=missing,
        min_cell_size=min_cell_size,
    )
    threshold = threshold_for(min_cell_size)
    document = table_document(node_id, release, name, tables[name], threshold=threshold)
    return SignedTable(document=document, signature=sign_detached(document, key, typ=TYP_STATISTICS))


def list_catalogue(session: Session) -> StatisticsCatalogue:
    """The fixed catalogue and every release built, newest first."""
    releases = session.exec(select(StatisticsRelease).order_by(col(StatisticsRelease.version).desc())).all()
    names = [spec.name for spec in catalogue.TABLES]
    return StatisticsCatalogue(
        tables=[
            TableEntry(
                name=spec.name,
                title=spec.title,
                measure=spec.measure,
                breakdowns=[b.name for b in spec.breakdowns],
                row_schema=catalogue.row_schema(spec),
            )
            for spec in catalogue.TABLES
        ],
        releases=[
            ReleaseSummary(
                version=r.version or 0,
                year=r.year,
                area_code=r.area_code,
                built_at=r.built_at,
                threshold=r.threshold,
                las=r.las.split(),
                missing=r.missing.split(),
                tables=names,
            )
            for r in releases
        ],
    )


def local_table(session: Session, name: str, *, year: int | None = None) -> StatisticsTable:
    """The newest release's table in the EES tidy layout."""
    release, signed = get_signed_table(session, name, year=year)
    return StatisticsTable(
        table=name,
        title=signed.document["title"],
        year=release.year,
        release_version=release.version,
        built_at=release.built_at,
        threshold=release.threshold,
        rows=ees_rows(signed.document["rows"], catalogue.table(name)),
    )


def ees_rows(rows: Iterable[Row], spec: catalogue.TableSpec) -> list[dict[str, str | int]]:
    """Catalogue rows in the EES tidy-data layout: time, geography codes and names, filters, indicators."""
    names = regions()
    las = local_authorities()
    out: list[dict[str, str | int]] = []
    for row in rows:
        area, level = str(row["area_code"]), str(row["geographic_level"])
        region = area if level == "Regional" else las[area].region_code if level == "Local authority" else ""
        ees: dict[str, str | int] = {
            "time_period": int(row["year"]),
            "time_identifier": EES_TIME_IDENTIFIER,
            "geographic_level": level,
            "country_code": catalogue.ENGLAND,
            "country_name": "England",
            "region_code": region,
            "region_name": names.get(region, "") if region else "",
            "new_la_code": area if level == "Local authority" else "",
            "la_name": str(row["area_name"]) if level == "Local authority" else "",
        }
        for b in spec.breakdowns:
            ees[b.name] = row[b.name]
        ees["number"] = row["number"]
        ees["percent"] = row["percent"]
        out.append(ees)
    return out


def to_csv(rows: list[dict[str, str | int]]) -> str:
    """Rows as a CSV file with a header line (EES tidy files are CSV)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
