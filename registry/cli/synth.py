"""``rcc-node synth``: seeded, deterministic synthetic data for trying a node out (no real child or provider)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from registry.capacity.synth import region_las, store, synth_capacity
from registry.cli.common import DataDirOption, JsonOption, fail, out_console, print_json, settings_for
from registry.cli.statistics import synth_episodes
from registry.core import domain
from registry.core.db import make_engine, utcnow

synth_app = typer.Typer(help="Synthetic data (seeded, deterministic, labelled synthetic).", no_args_is_help=True)


def _parse_as_of(text: str | None) -> datetime:
    if text is None:
        return utcnow().replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--as-of {text!r} is not an ISO 8601 date-time")
    if moment.tzinfo is None:
        fail("--as-of needs a UTC offset, e.g. 2026-03-01T09:00:00Z")
    return moment.astimezone(UTC)


@synth_app.command("capacity")
def capacity(
    data_dir: DataDirOption = Path(".rcc"),
    region: Annotated[
        str | None, typer.Option("--region", help="ONS region code E12… (default: the node's region).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, region and --as-of give the same data.")] = 1,
    vacancies: Annotated[
        int | None, typer.Option(min=0, max=100_000, help="How many vacancies (default: 25 per LA).")
    ] = None,
    la: Annotated[
        list[str] | None, typer.Option("--la", help="Only these LAs (ONS codes; repeat), e.g. an RCC's boroughs.")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The clock the data is generated at (default: now).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the data to this JSON file instead of the node's database.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Make synthetic vacancies and secure homes for a region and store them in the node (or a JSON file)."""
    settings = None
    if out is None or region is None:
        settings = settings_for(data_dir)
        region = region or settings.region_code
    if region is None:
        fail("this node has no region: pass --region E12…")
    if region not in domain.english_regions():
        fail(f"--region {region!r} is not an English region code (E12000001-E12000009)")
    unknown = sorted(set(la or ()) - {authority.ons_code for authority in region_las(region)})
    if unknown:
        fail(f"--la {', '.join(unknown)}: not a local authority of region {region}")
    now = _parse_as_of(as_of)
    data = synth_capacity(region, seed=seed, now=now, vacancies=vacancies, la_codes=la or None)
    summary = {
        "region_code": region,
        "seed": seed,
        "as_of": now.isoformat(),
        "vacancies": len(data.vacancies),
        "secure_homes": len(data.secure_homes),
    }
    if out is not None:
        out.write_text(json.dumps(data.document(), indent=2) + "\n", encoding="utf-8")
        summary["out"] = str(out)
    else:
        assert settings is not None  # noqa: S101 - loaded above whenever there is no --out
        engine = make_engine(settings.effective_database_url)
        try:
            with Session(engine) as session:
                store(session, data, now=utcnow())
                session.commit()
        except Exception as exc:  # a driver error or an unmigrated database: one line, not a traceback
            fail(f"cannot store synthetic data: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            engine.dispose()
        summary["node_id"] = settings.node_id
    if json_output:
        print_json(summary)
    else:
        where = summary.get("out") or f"node {summary['node_id']}"
        out_console.print(
            f"Synthetic capacity for {region} (seed {seed}): {summary['vacancies']} vacancies, "
            f"{summary['secure_homes']} secure homes -> {where}"
        )


synth_app.command("episodes")(synth_episodes)
