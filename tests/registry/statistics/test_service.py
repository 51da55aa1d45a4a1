from __future__ import annotations

import csv
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.statistics import catalogue, service
from registry.statistics.errors import LaOutsideArea, NothingToBuild, ReleaseNotFound, UnknownTable
from registry.statistics.models import StatisticsEpisode, StatisticsRelease
from registry.statistics.ssda903 import REDACTED, InvalidEpisodeFile, read_episodes
from registry.statistics.synth import write_episodes
from tests.support.jose import verify_detached

pytestmark = pytest.mark.postgres

SOUTH_EAST = "E12000008"
KENT, MEDWAY = "E10000016", "E06000035"
YEAR = 2024
SALT = b"s" * 32


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("episodes")
    kent, medway, kent_again = root / "kent.csv", root / "medway.csv", root / "kent2.csv"
    write_episodes(kent, la=KENT, year=YEAR, children=400, seed=1)
    write_episodes(medway, la=MEDWAY, year=YEAR, children=150, seed=2)
    write_episodes(kent_again, la=KENT, year=YEAR, children=120, seed=3)
    return {"kent": kent, "medway": medway, "kent2": kent_again}


def do_import(engine: Engine, path: Path, la: str = KENT) -> int:
    with Session(engine) as session:
        result = service.import_episodes(session, path, la=la, year=YEAR, salt=SALT, area_code=SOUTH_EAST)
        session.commit()
    return result.episodes


def stored(engine: Engine, la: str = KENT) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).where(StatisticsEpisode.la == la)).one()


def broken(source: Path, target: Path, *, row: int, column: str, value: str) -> Path:
    with source.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[row - 2][column] = value  # spreadsheet numbering: the header is row 1
    with target.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


class TestSalt:
    def test_the_salt_is_created_once_private_and_then_kept(self, tmp_path: Path) -> None:
        first = service.load_salt(tmp_path)
        assert len(first) == service.SALT_BYTES
        assert stat.S_IMODE((tmp_path / service.SALT_FILE).stat().st_mode) == 0o600
        assert service.load_salt(tmp_path) == first


class TestImport:
    def test_import_stores_every_episode_pseudonymised(self, engine: Engine, files: dict[str, Path]) -> None:
        count = do_import(engine, files["kent"])
        expected = list(read_episodes(files["kent"], la=KENT, year=YEAR, salt=SALT))
        assert count == stored(engine) == len(expected)
        with files["kent"].open(newline="") as fh:
            raw_ids = {r["CHILD"] for r in csv.DictReader(fh)}
        with Session(engine) as session:
            pseudonyms = set(session.exec(select(StatisticsEpisode.pseudonym)).all())
        assert pseudonyms == {e.child for e in expected}
        assert not pseudonyms & raw_ids

    def test_reimporting_an_la_year_is_idempotent_and_replaces_it(self, engine: Engine, files: dict[str, Path]) -> None:
        first = do_import(engine, files["kent"])
        do_import(engine, files["medway"], la=MEDWAY)
        assert do_import(engine, files["kent"]) == first == stored(engine)
        smaller = do_import(engine, files["kent2"])
        assert stored(engine) == smaller < first
        assert stored(engine, MEDWAY) > 0  # another LA's year is untouched

    def test_a_bad_file_is_rejected_whole_with_a_precise_report(
        self, engine: Engine, files: dict[str, Path], tmp_path: Path
    ) -> None:
        before = do_import(engine, files["kent2"])
        bad = broken(files["kent"], tmp_path / "bad.csv", row=300, column="LS", value="ZZ")
        bad = broken(bad, tmp_path / "bad2.csv", row=5, column="DOB", value="31/02/2010")
        with Session(engine) as session, pytest.raises(InvalidEpisodeFile) as caught:
            service.import_episodes(session, bad, la=KENT, year=YEAR, salt=SALT)
        errors = {(e.row, e.column, e.value, e.rule) for e in caught.value.row_errors}
        assert (300, "LS", "ZZ", "code-list") in errors
        assert (5, "DOB", REDACTED, "date-format") in errors
        assert stored(engine) == before  # the session rolled back: the earlier import stands, nothing half-written

    def test_every_field_is_stored_as_read(self, engine: Engine, files: dict[str, Path]) -> None:
        # Rows skip SQLAlchemy on the way in (executemany on SQLite, COPY on PostgreSQL): dates, booleans and
        # blanks must still read back exactly as the parser made them.
        do_import(engine, files["kent"])
        expected = list(read_episodes(files["kent"], la=KENT, year=YEAR, salt=SALT))
        with Session(engine) as session:
            assert service.episodes_of(session, year=YEAR, las=[KENT]) == expected
            # SQLite gets '' for a blank and turns it into NULL: no empty string is left in any column
            for column in ("place_provider", "dec", "rec", "reason_place_change", "urn", "outside_la"):
                stored = StatisticsEpisode.__table__.c[column]  # type: ignore[attr-defined]
                blanks = select(func.count()).where(func.coalesce(sa.cast(stored, sa.String), "") == "")
                nulls = select(func.count()).where(stored.is_(None))
                assert session.exec(blanks).one() == session.exec(nulls).one()
            assert session.exec(select(func.count()).where(StatisticsEpisode.dec.is_(None))).one() > 0  # type: ignore[union-attr]

    def test_a_file_broken_after_rows_were_stored_leaves_nothing_of_it(
        self, engine: Engine, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(service, "INSERT_BATCH", 50)  # many batches stored before the broken row is read
        monkeypatch.setattr(service, "ROWS_PER_INSERT", 7)
        before = do_import(engine, files["kent2"])
        bad = broken(files["kent"], tmp_path / "late.csv", row=600, column="PLACE", value="Q9")
        progress: list[int] = []
        with Session(engine) as session, pytest.raises(InvalidEpisodeFile) as caught:
            service.import_episodes(session, bad, la=KENT, year=YEAR, salt=SALT, progress=progress.append)
        assert progress[-1] >= 550 and progress == sorted(progress)
        assert [(e.row, e.column, e.rule) for e in caught.value.row_errors] == [(600, "PLACE", "code-list")]
        assert stored(engine) == before

    def test_batches_of_any_size_store_every_row(
        self, engine: Engine, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(service, "INSERT_BATCH", 333)
        monkeypatch.setattr(service, "ROWS_PER_INSERT", 10)
        progress: list[int] = []
        with Session(engine) as session:
            result = service.import_episodes(
                session, files["medway"], la=MEDWAY, year=YEAR, salt=SALT, progress=progress.append
            )
            session.commit()
        assert result.episodes == stored(engine, MEDWAY) == progress[-1]
        assert progress == [*range(333, result.episodes, 333), result.episodes]

    def test_an_la_outside_the_region_is_refused(self, engine: Engine, files: dict[str, Path]) -> None:
        with Session(engine) as session, pytest.raises(LaOutsideArea):
            service.import_episodes(session, files["kent"], la=KENT, year=YEAR, salt=SALT, area_code="E12000007")


class TestRelease:
    def build(self, engine: Engine, keys: KeyRing, year: int | None = None) -> StatisticsRelease:
        with Session(engine) as session:
            release = service.build_release(session, node_id="rcc-se", area_code=SOUTH_EAST, key=keys.active, year=year)
            session.commit()
            session.refresh(release)
            return release

    def test_nothing_imported_means_nothing_to_build(self, engine: Engine, keys: KeyRing) -> None:
        with pytest.raises(NothingToBuild):
            self.build(engine, keys)

    def test_a_release_covers_the_regions_las_and_marks_the_missing(
        self, engine: Engine, keys: KeyRing, files: dict[str, Path]
    ) -> None:
        do_import(engine, files["kent"])
        do_import(engine, files["medway"], la=MEDWAY)
        release = self.build(engine, keys)
        assert release.version == 1
        assert (release.year, release.threshold) == (YEAR, 5)
        assert release.las.split() == sorted([KENT, MEDWAY])
        expected = service.area_las(SOUTH_EAST)
        assert sorted(release.las.split() + release.missing.split()) == expected
        assert self.build(engine, keys).version == 2

    def test_every_table_is_signed_and_verifies_independently(
        self, engine: Engine, keys: KeyRing, files: dict[str, Path]
    ) -> None:
        do_import(engine, files["kent"])
        self.build(engine, keys)
        with Session(engine) as session:
            for spec in catalogue.TABLES:
                _, signed = service.get_signed_table(session, spec.name)
                verify_detached(signed.document, signed.signature, keys.jwks(), "rcc-statistics+jws")
                assert signed.document["table"] == spec.name
                kent_total = next(
                    r
                    for r in signed.document["rows"]
                    if r["area_code"] == KENT and all(r[b.name] == catalogue.TOTAL for b in spec.breakdowns)
                )
                assert kent_total["number"] not in ("", None)

    def test_a_stricter_threshold_reprotects_and_hides_at_least_as_much(
        self, engine: Engine, keys: KeyRing, files: dict[str, Path]
    ) -> None:
        do_import(engine, files["kent"])
        do_import(engine, files["medway"], la=MEDWAY)
        self.build(engine, keys)
        with Session(engine) as session:
            release, signed = service.get_signed_table(session, "cla-placement-group")
            strict = service.reprotect(
                session, release, "cla-placement-group", node_id="rcc-se", key=keys.active, min_cell_size=40
            )
        assert strict.document["threshold"] == 40
        assert len(strict.document["rows"]) == len(signed.document["rows"])
        for loose_row, strict_row in zip(signed.document["rows"], strict.document["rows"], strict=True):
            if loose_row["number"] == "c":
                assert strict_row["number"] == "c"
        assert sum(r["number"] == "c" for r in strict.document["rows"]) > sum(
            r["number"] == "c" for r in signed.document["rows"]
        )

    def test_unknown_table_and_missing_release_are_not_found(self, engine: Engine) -> None:
        with Session(engine) as session:
            with pytest.raises(UnknownTable):
                service.get_signed_table(session, "children")
            with pytest.raises(ReleaseNotFound):
                service.get_signed_table(session, "cla-sex")


class TestTidyLayout:
    def test_ees_rows_carry_time_geography_filters_and_indicators(self) -> None:
        spec = catalogue.table("cla-sex")
        rows = [
            {"year": 2024, "geographic_level": "Local authority", "area_code": KENT, "area_name": "Kent",
             "sex": "female", "number": "c", "percent": "c"},
            {"year": 2024, "geographic_level": "Regional", "area_code": SOUTH_EAST, "area_name": "South East",
             "sex": "Total", "number": "120", "percent": "100"},
        ]  # fmt: skip
        ees = service.ees_rows(rows, spec)
        assert list(ees[0]) == [
            "time_period", "time_identifier", "geographic_level", "country_code", "country_name", "region_code",
            "region_name", "new_la_code", "la_name", "sex", "number", "percent",
        ]  # fmt: skip
        assert ees[0]["region_code"] == SOUTH_EAST and ees[0]["new_la_code"] == KENT
        assert ees[1]["new_la_code"] == "" and ees[1]["region_name"] == "South East"
        text = service.to_csv(ees)
        assert text.splitlines()[0].startswith("time_period,time_identifier,geographic_level")
        assert len(text.splitlines()) == 3
