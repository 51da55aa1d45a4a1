"""``rcc-node import episodes``, ``rcc-node stats build`` and ``rcc-node synth episodes``.

Importing is an operator's job on the node's own machine (the file holds record-level data), so it is a CLI
command, not a route. Nothing record-level is printed: a rejected file's report names row, column, rule and a
value only where the column is not sensitive (CHILD, DOB and postcodes show ``<redacted>``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from sqlmodel import Session

from registry.cli.common import DataDirOption, JsonOption, err_console, fail, out_console, print_json, settings_for
from registry.core.db import make_engine
from registry.core.keys import KeyRing, KeyRingError
from registry.core.settings import Settings
from registry.statistics import service
from registry.statistics.errors import LaOutsideArea, NothingToBuild
from registry.statistics.ssda903 import InvalidEpisodeFile
from registry.statistics.synth import write_episodes

import_app = typer.Typer(help="Import record-level returns into the node (operators only).", no_args_is_help=True)
stats_app = typer.Typer(help="Statistics releases: build and sign.", no_args_is_help=True)

Year = Annotated[int, typer.Option("--year", min=2000, max=2100, help="Collection year (ending 31 March).")]
REPORT_LINES = 50


@import_app.command("episodes")
def import_episodes(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="SSDA903 episodes CSV.")],
    la: Annotated[str, typer.Option("--la", help="ONS code of the LA the file is from.")],
    year: Year,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Validate and import an LA's SSDA903 episodes for a year, replacing what the node held for that LA-year."""
    settings = settings_for(data_dir)
    salt = service.load_salt(settings.data_dir)
    engine = make_engine(settings.effective_database_url)
    try:
        with (
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rows]} episodes"),
                TimeRemainingColumn(),
                console=err_console,
                disable=json_output,
            ) as progress,
            Session(engine) as session,
        ):
            task = progress.add_task(f"{la} {year}", total=file.stat().st_size, rows=0)
            with file.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as stream:
                result = service.import_episodes(
                    session,
                    stream,
                    la=la,
                    year=year,
                    salt=salt,
                    area_code=settings.region_code if settings.kind == "regional" else None,
                    progress=lambda n: progress.update(task, completed=raw.tell(), rows=n),
                )
            session.commit()
    except InvalidEpisodeFile as exc:
        _report(exc, json_output)
        raise typer.Exit(2) from None
    except LaOutsideArea as exc:
        fail(exc.detail)
    except ValueError as exc:  # an unknown LA code or year: the caller's mistake, one line
        fail(f"--la {la} --year {year}: {exc}")
    finally:
        engine.dispose()
    if json_output:
        print_json(result.model_dump())
    else:
        out_console.print(
            f"Imported {result.episodes} episodes for {la} {year} (replaced {result.replaced}); nothing else changed."
        )


def _report(exc: InvalidEpisodeFile, json_output: bool) -> None:
    if json_output:
        print_json({"error": exc.code, "error_count": exc.error_count, "errors": [e._asdict() for e in exc.row_errors]})
        return
    err_console.print(f"[bold red]rejected:[/] {exc.error_count} rule(s) broken; nothing was imported.")
    for e in exc.row_errors[:REPORT_LINES]:
        err_console.print(f"  row {e.row}, {e.column} = {e.value!r}: {e.rule}", markup=False)
    if exc.error_count > REPORT_LINES:
        err_console.print(f"  … and {exc.error_count - REPORT_LINES} more (use --json for the full list)")


@stats_app.command("build")
def build(
    data_dir: DataDirOption = Path(".rcc"),
    year: Annotated[int | None, typer.Option("--year", help="Collection year (default: the latest imported).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Compute, disclosure-control and sign every catalogue table for the node's LAs; store it as a release."""
    settings = settings_for(data_dir)
    if settings.region_code is None:
        fail("this node has no region: a release is built from the region's LAs' imports")
    keys = _keys(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        with Session(engine) as session:
            release = service.build_release(
                session, node_id=settings.node_id, area_code=settings.region_code, key=keys.active, year=year
            )
            session.commit()
            las, missing = release.las.split(), release.missing.split()
            summary = {
                "version": release.version,
                "year": release.year,
                "area_code": release.area_code,
                "built_at": release.built_at.isoformat(),
                "las": las,
                "missing": missing,
            }
    except NothingToBuild as exc:
        fail(exc.detail)
    finally:
        engine.dispose()
    if json_output:
        print_json(summary)
    else:
        out_console.print(
            f"Release {summary['version']} for {summary['year']} signed: {len(las)} LAs, {len(missing)} missing."
        )


def _keys(settings: Settings) -> KeyRing:
    try:
        return KeyRing.load(settings.effective_key_dir)
    except KeyRingError as exc:
        fail(str(exc))


def synth_episodes(
    la: Annotated[str, typer.Option("--la", help="ONS code of the LA.")],
    year: Year,
    children: Annotated[int, typer.Option("--children", min=1, max=1_000_000, help="How many children.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same file.")] = 1,
) -> None:
    """Write a synthetic, valid SSDA903 episodes file (labelled synthetic; no real child)."""
    try:
        rows = write_episodes(out, la=la, year=year, children=children, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    out_console.print(f"Wrote {rows} synthetic episodes for {children} children of {la} {year} to {out}")
