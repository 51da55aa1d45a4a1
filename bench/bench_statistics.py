"""Statistics benchmark: episode import rows/s, release build for 200,000 episodes, national combination.

Run: ``.venv/bin/python bench/bench_statistics.py`` (about a minute on an idle 2-core machine; no network;
SQLite in a temporary folder). ``--postgres URL`` (a database the URL's user may create databases from,
e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) also imports the same files into throw-away
PostgreSQL databases, dropped after. Figures are wall clock and CPU time of this process:
on a shared, loaded machine the CPU figure is the comparable one (the load average is printed first and last);
PostgreSQL's own work is in the server process, so for it the wall figure is the one that counts.

1. Synthetic SSDA903 files (``registry.statistics.synth``, seeded) for every LA of the South East, about
   200,000 episodes in all, are written once. Then ``--runs`` rounds (default 3), each side by side on the
   same files, so a load that comes and goes hits all three alike:
   * parse only: ``read_episodes`` (validate + pseudonymise), nothing stored;
   * import end to end: ``service.import_episodes`` into a fresh migrated SQLite database, committed per file
     (and, with ``--postgres``, the same into a fresh PostgreSQL database, where rows go in with ``COPY``).
   The summary gives each one's median wall rate and range. Judged by the median import rows/s ÷ 50,000 on
   SQLite and on PostgreSQL (≥ 1.0 passes).
2. ``service.build_release`` over those episodes: load, count, protect (disclosure control), sign, store —
   one run, in seconds.
3. National combination across 9 regions, in process: each region's signed table is verified (Ed25519,
   JCS) and ``federation.statistics.combine`` builds England, for all nine catalogue tables; ms per table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from federation.statistics import combine
from registry.core.db import make_engine, upgrade
from registry.core.domain import english_regions, las_in_region
from registry.core.keys import KeyRing
from registry.core.signing import TYP_STATISTICS, sign_detached, verify_detached
from registry.statistics import catalogue, service
from registry.statistics.ssda903 import read_episodes
from registry.statistics.synth import write_episodes

SOUTH_EAST = "E12000008"
YEAR = 2024
SALT = b"b" * 32
TARGET_ROWS_PER_SECOND = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200_000, help="about how many episodes in all")
    parser.add_argument("--postgres", metavar="URL", help="also import into a throw-away database on this server")
    parser.add_argument("--runs", type=int, default=3, help="rounds of parse / SQLite / PostgreSQL, side by side")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        files = write_files(root, args.episodes)
        total = sum(rows for _, _, rows in files)
        print(f"synthetic files: {len(files)} LAs, {total} episodes")
        pg_server = stack.enter_context(postgres_server(args.postgres)) if args.postgres else None

        rates: dict[str, list[float]] = {}
        url = ""
        for run in range(1, args.runs + 1):
            print(f"run {run} (load average {os.getloadavg()[0]:.2f}):")
            started, cpu = time.perf_counter(), time.process_time()
            parsed = sum(sum(1 for _ in read_episodes(path, la=la, year=YEAR, salt=SALT)) for la, path, _ in files)
            report(rates, "parse only", parsed, time.perf_counter() - started, time.process_time() - cpu)
            url = f"sqlite:///{(root / f'bench-{run}.db').as_posix()}"
            imported, seconds, cpu_seconds = import_all(url, files)
            report(rates, "import (SQLite)", imported, seconds, cpu_seconds)
            if pg_server is not None:
                with pg_server() as pg_url:
                    pg, pg_seconds, pg_cpu = import_all(pg_url, files)
                report(rates, "import (PostgreSQL)", pg, pg_seconds, pg_cpu)

        engine = make_engine(url)
        keys = KeyRing.generate()
        started = time.perf_counter()
        with Session(engine) as session:
            release = service.build_release(session, node_id="bench", area_code=SOUTH_EAST, key=keys.active)
            session.commit()
            version = release.version
        build_seconds = time.perf_counter() - started
        print(
            f"build release {version}:  {build_seconds:.2f} s for {imported} episodes ({len(catalogue.TABLES)} tables)"
        )
        engine.dispose()

        per_table_ms = national(root, keys)
        print(f"national, 9 regions: {per_table_ms:.1f} ms per table (verify 9 signatures + combine)")
    print()
    print(f"rows/s, wall clock, over {args.runs} run(s) side by side: median (lowest-highest)")
    for name, values in rates.items():
        print(f"  {name:<20}{median(values):>10,.0f} ({min(values):,.0f}-{max(values):,.0f})")
    parse = rates["parse only"]
    for name in ("import (SQLite)", "import (PostgreSQL)"):
        if name in rates:
            judged = median(rates[name]) / TARGET_ROWS_PER_SECOND
            share = median(r / p for r, p in zip(rates[name], parse, strict=True))
            print(
                f"{name} rows/s / {TARGET_ROWS_PER_SECOND:,} = {judged:.2f} (>= 1.0 passes); / parse-only = {share:.2f}"
            )
    print(f"build seconds for {imported} episodes = {build_seconds:.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def report(rates: dict[str, list[float]], name: str, rows: int, seconds: float, cpu_seconds: float) -> None:
    """Print one measurement (wall rate, and rate per CPU-second of this process) and keep the wall rate."""
    rates.setdefault(name, []).append(rows / seconds)
    print(f"  {name:<20}{rows / seconds:>10,.0f} rows/s wall, {rows / cpu_seconds:>9,.0f} per CPU-s")


def import_all(url: str, files: list[tuple[str, Path, int]]) -> tuple[int, float, float]:
    """Import every file into a freshly migrated database, one committed transaction each: rows, wall s, CPU s."""
    upgrade(url)
    engine = make_engine(url)
    started, cpu = time.perf_counter(), time.process_time()
    imported = 0
    for la, path, _ in files:
        with Session(engine) as session:
            imported += service.import_episodes(session, path, la=la, year=YEAR, salt=SALT).episodes
            session.commit()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return imported, seconds, cpu_seconds


@contextmanager
def postgres_server(server_url: str) -> Iterator[Callable[[], AbstractContextManager[str]]]:
    """Throw-away databases on the server ``server_url`` points at, each dropped after its use."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")

    @contextmanager
    def database() -> Iterator[str]:
        name = f"rcc_bench_{secrets.token_hex(4)}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    try:
        yield database
    finally:
        admin.dispose()


def write_files(root: Path, episodes: int) -> list[tuple[str, Path, int]]:
    las = service.area_las(SOUTH_EAST)
    children = max(1, int(episodes / 1.6 / len(las)))  # about 1.6 episodes a child in the synthetic mix
    out = []
    for n, la in enumerate(las):
        path = root / f"{la}.csv"
        out.append((la, path, write_episodes(path, la=la, year=YEAR, children=children, seed=n)))
    return out


def national(root: Path, keys: KeyRing) -> float:
    """Nine regions' signed tables (one LA each, 800 children), verified and combined, for every table."""
    signed: dict[str, dict[str, tuple[dict[str, object], str]]] = {}
    for n, region in enumerate(sorted(english_regions())):
        la = next(a.ons_code for a in las_in_region(region) if "/" not in a.ons_code)
        path = root / f"region-{region}.csv"
        write_episodes(path, la=la, year=YEAR, children=800, seed=100 + n)
        published = catalogue.publish(
            read_episodes(path, la=la, year=YEAR, salt=SALT), year=YEAR, las=[la], total=region
        )
        signed[region] = {}
        for name, table_rows in published.items():
            document: dict[str, object] = {"table": name, "area_code": region, "year": YEAR, "rows": table_rows}
            signed[region][name] = (document, sign_detached(document, keys.active, typ=TYP_STATISTICS))
    resolve = {keys.active.kid: keys.active.public}.get
    started = time.perf_counter()
    for spec in catalogue.TABLES:
        regional = {}
        for region, tables in signed.items():
            signed_document, signature = tables[spec.name]
            verify_detached(signed_document, signature, typ=TYP_STATISTICS, resolve=resolve)
            regional[region] = signed_document["rows"]
        _, missing, _ = combine(spec, YEAR, regional)  # type: ignore[arg-type]
        assert not missing
    return (time.perf_counter() - started) * 1000 / len(catalogue.TABLES)


if __name__ == "__main__":
    main()
