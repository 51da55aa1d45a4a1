"""The ``rcc-node`` application and the node lifecycle commands: init, serve, keys, version."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from registry import __version__
from registry.cli.agreements import agreements_app
from registry.cli.audit import audit_app
from registry.cli.clients import clients_app
from registry.cli.common import (
    ConfigOption,
    DataDirOption,
    JsonOption,
    fail,
    out_console,
    print_json,
    settings_for,
)
from registry.cli.federation import directory_app, peers_app
from registry.cli.localfed import federation_app
from registry.cli.publications import install as install_publications
from registry.cli.statistics import import_app, stats_app
from registry.cli.synth import synth_app
from registry.core.db import claim_database, make_engine, upgrade
from registry.core.keys import KeyRing, KeyRingError
from registry.core.settings import CONFIG_FILE_NAME, Settings, SettingsError, load_settings, write_config

app = typer.Typer(
    name="rcc-node",
    help="Run and operate a Regional Care Cooperative's rcc-registry node.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="The node's signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(directory_app, name="directory")
app.add_typer(peers_app, name="peers")
app.add_typer(clients_app, name="clients")
app.add_typer(audit_app, name="audit")
app.add_typer(synth_app, name="synth")
app.add_typer(agreements_app, name="agreements")
app.add_typer(federation_app, name="federation")
app.add_typer(import_app, name="import")
app.add_typer(stats_app, name="stats")
install_publications(app, synth=synth_app)


@app.command()
def init(
    data_dir: DataDirOption = Path(".rcc"),
    node_id: Annotated[str, typer.Option(help="This node's id in the federation, e.g. rcc-south-east.")] = "rcc-local",
    name: Annotated[str, typer.Option(help="Human name of the RCC.")] = "Local RCC node",
    kind: Annotated[str, typer.Option(help="regional or national.")] = "regional",
    region_code: Annotated[str | None, typer.Option(help="ONS region code E12… (required for regional nodes).")] = None,
    base_url: Annotated[str, typer.Option(help="The URL peers reach this node at.")] = "http://127.0.0.1:8000",
    database_url: Annotated[
        str | None, typer.Option(help="postgresql+psycopg://… (default: SQLite in DATA_DIR).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port 'serve' listens on.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a node: data folder, node.toml, Ed25519 signing key (0600), migrated database."""
    config_path = data_dir / CONFIG_FILE_NAME
    if config_path.exists():
        fail(f"{config_path} already exists; refusing to overwrite an existing node")
    values: dict[str, Any] = {
        "node_id": node_id,
        "name": name,
        "kind": kind,
        "region_code": region_code,
        "base_url": base_url,
        "database_url": database_url,
        "port": port,
    }
    try:
        settings = load_settings(data_dir=data_dir, **{k: v for k, v in values.items() if v or k == "region_code"})
    except SettingsError as exc:
        fail(str(exc))
    if (settings.effective_key_dir / "keyring.json").exists():
        fail(f"{settings.effective_key_dir} already holds keys; refusing to overwrite them")
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        ring = KeyRing.create(settings.effective_key_dir)
    except KeyRingError as exc:
        fail(str(exc))
    _migrate(settings)
    write_config(config_path, values)
    summary = {
        "node_id": settings.node_id,
        "data_dir": str(data_dir),
        "config": str(config_path),
        "kid": ring.active.kid,
        "database": settings.effective_database_url.split("@")[-1],
    }
    if json_output:
        print_json(summary)
    else:
        out_console.print(f"Created node [bold]{settings.node_id}[/] in {data_dir} (key {ring.active.kid}).")


def _migrate(settings: Settings) -> None:
    try:
        upgrade(settings.effective_database_url)
        engine = make_engine(settings.effective_database_url)
        try:
            claim_database(engine, settings.node_id)
        finally:
            engine.dispose()
    except ValueError as exc:
        fail(str(exc))
    except Exception as exc:  # a driver error: say what, not a traceback
        fail(f"cannot migrate the database: {type(exc).__name__}: {str(exc).splitlines()[0]}")


@app.command()
def serve(
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: setting 'host').")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: setting 'port').")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the node over HTTP (uvicorn, uvloop + httptools), migrating the database first."""
    import uvicorn

    settings = settings_for(data_dir, config)
    try:
        KeyRing.load(settings.effective_key_dir)
    except (KeyRingError, OSError) as exc:
        fail(str(exc))
    _migrate(settings)
    # Worker processes rebuild the app from these variables (create_app reads settings itself).
    os.environ["RCC_DATA_DIR"] = str(settings.data_dir)
    if config is not None:
        os.environ["RCC_CONFIG"] = str(config)
    uvicorn.run(
        "registry.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDirOption = Path(".rcc"), json_output: JsonOption = False) -> None:
    """Make a new active signing key; the old one is retired but stays published so old signatures verify."""
    settings = settings_for(data_dir)
    try:
        ring = KeyRing.load(settings.effective_key_dir).rotate(settings.effective_key_dir)
    except (KeyRingError, OSError) as exc:
        fail(str(exc))
    result = {"active": ring.active.kid, "retired": [k.kid for k in ring.keys if k.status == "retired"]}
    if json_output:
        print_json(result)
    else:
        out_console.print(f"New active key {ring.active.kid}; {len(result['retired'])} retired key(s) still published.")


@keys_app.command("list")
def keys_list(data_dir: DataDirOption = Path(".rcc"), json_output: JsonOption = False) -> None:
    """The node's keys, newest first, with their status."""
    settings = settings_for(data_dir)
    try:
        ring = KeyRing.load(settings.effective_key_dir)
    except (KeyRingError, OSError) as exc:
        fail(str(exc))
    rows = [{"kid": k.kid, "status": k.status, "created_at": k.created_at.isoformat()} for k in ring.keys]
    if json_output:
        print_json(rows)
    else:
        for row in rows:
            out_console.print(f"{row['kid']}  {row['status']:<8} {row['created_at']}")


@app.command()
def version(json_output: JsonOption = False) -> None:
    """Print the software version."""
    if json_output:
        print_json({"software_version": __version__})
    else:
        typer.echo(f"rcc-node {__version__}")


def main() -> None:
    """Console-script entry point."""
    app()
