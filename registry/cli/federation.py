"""``rcc-node directory`` (build, sign, load, show) and ``rcc-node peers check``.

The operator builds the directory from a list of member nodes (each one's signed descriptor is fetched and
checked), signs it with its node key, and publishes it; every node loads it from a file or fetches it from the
operator. ``peers check`` calls ``/federation/v1/ping`` on every other member with a signed request and prints
each outcome, latency and the key id the peer answered with.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from federation.directory import format_time
from federation.errors import DirectoryRejected, DirectoryUnavailable
from federation.fanout import PeerCall, fanout
from federation.operator import build_directory, sign_directory
from federation.runtime import Federation
from registry.cli.common import (
    ConfigOption,
    DataDirOption,
    JsonOption,
    fail,
    keys_for,
    node_federation,
    out_console,
    print_json,
    settings_for,
)
from registry.core.db import utcnow
from schemas.vocabulary import Purpose

directory_app = typer.Typer(help="The federation directory: build, sign, load, show.", no_args_is_help=True)
peers_app = typer.Typer(help="The other nodes of the federation.", no_args_is_help=True)

OutOption = Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output.")]
PING_PATH = "/federation/v1/ping"


def _write(document: Any, out: Path | None) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:
        fail(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}")


def _rejected(exc: DirectoryRejected) -> str:
    errors = "; ".join(f"{e['path'] or '/'} {e['message']}" for e in exc.errors or [])
    return f"directory refused ({exc.reason}): {exc.detail}" + (f" [{errors}]" if errors else "")


@directory_app.command("build")
def directory_build(
    nodes_file: Annotated[Path, typer.Argument(help="TOML or JSON: operator, nodes = [{base_url, node_id?, kid?}].")],
    out: OutOption = None,
    serial: Annotated[int | None, typer.Option(help="Serial number (default: from the file, else Unix time).")] = None,
    valid_days: Annotated[float | None, typer.Option(help="Days until it expires (default 7).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node's descriptor.")] = 10.0,
) -> None:
    """Build an unsigned directory, fetching and checking each member's signed descriptor."""
    spec = _read_json(nodes_file)
    if not isinstance(spec, dict):
        fail(f"{nodes_file} must hold an object with 'operator' and 'nodes'")
    with httpx.Client(timeout=timeout, trust_env=False) as http:

        def fetch(base_url: str) -> Any:
            try:
                response = http.get(base_url.rstrip("/") + "/.well-known/rcc-node")
                response.raise_for_status()
                return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise DirectoryRejected("bad-descriptor", f"cannot fetch {base_url}: {exc}") from None

        try:
            document = build_directory(spec, fetch=fetch, now=utcnow(), serial=serial, valid_days=valid_days)
        except DirectoryRejected as exc:
            fail(_rejected(exc))
    _write(document, out)


@directory_app.command("sign")
def directory_sign(
    file: Annotated[Path, typer.Argument(help="The unsigned directory (JSON) to sign.")],
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    out: OutOption = None,
) -> None:
    """Sign a directory with this (operator) node's active key; prints the signed envelope."""
    settings = settings_for(data_dir, config)
    document = _read_json(file)
    if isinstance(document, dict) and "directory" in document and "signature" in document:
        document = document["directory"]  # re-signing a signed one: sign its document afresh
    if not isinstance(document, dict):
        fail(f"{file} does not hold a directory object")
    if document.get("operator") != settings.node_id:
        fail(f"the directory names operator {document.get('operator')!r}, but this node is {settings.node_id!r}")
    keys = keys_for(settings)
    try:
        envelope = sign_directory(document, keys)
    except DirectoryRejected as exc:
        fail(_rejected(exc))
    _write(envelope, out)


@directory_app.command("load")
def directory_load(
    file: Annotated[Path, typer.Argument(help="A signed directory (JSON envelope).")],
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Verify a signed directory against the pinned operator key and hold it (refused if older than the one held)."""
    with node_federation(settings_for(data_dir, config)) as federation:
        try:
            directory = federation.store.accept(_read_json(file), source="cli")
        except DirectoryRejected as exc:
            fail(_rejected(exc))
    summary = {
        "serial": directory.serial,
        "expires_at": format_time(directory.expires_at),
        "nodes": len(directory.nodes),
    }
    if json_output:
        print_json(summary)
    else:
        out_console.print(f"Holding directory serial {directory.serial} ({len(directory.nodes)} nodes).")


@directory_app.command("show")
def directory_show(
    data_dir: DataDirOption = Path(".rcc"), config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """The directory this node holds: serial, age, expiry and members."""
    with node_federation(settings_for(data_dir, config)) as federation:
        federation.start()
        directory, last_error = federation.store.current, federation.store.last_error
    if directory is None:
        fail(f"this node holds no directory ({last_error or 'none loaded'})")
    now = utcnow()
    summary: dict[str, Any] = {
        "serial": directory.serial,
        "operator": directory.operator,
        "issued_at": format_time(directory.issued_at),
        "expires_at": format_time(directory.expires_at),
        "age_seconds": int(directory.age(now).total_seconds()),
        "expired": directory.expired(now),
        "nodes": [
            {
                "node_id": n.node_id,
                "name": n.name,
                "kind": n.kind,
                "region_code": n.region_code,
                "base_url": n.base_url,
                "active_kids": n.active_kids,
            }
            for n in directory.nodes.values()
        ],
    }
    if json_output:
        print_json(summary)
        return
    state = "EXPIRED" if summary["expired"] else f"expires {summary['expires_at']}"
    out_console.print(
        f"Directory serial {directory.serial} by {directory.operator}, issued {summary['issued_at']}, {state}"
    )
    for node in summary["nodes"]:
        out_console.print(
            f"  {node['node_id']:<24} {node['kind']:<9} {node['region_code'] or '-':<10} {node['base_url']}"
        )


@peers_app.command("check")
def peers_check(
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    json_output: JsonOption = False,
    timeout: Annotated[float, typer.Option(help="Overall deadline in seconds.")] = 5.0,
    purpose: Annotated[Purpose, typer.Option(help="Purpose claimed in the request tokens.")] = Purpose.audit_witnessing,
) -> None:
    """Ping every other node in the directory with a signed request; print outcome, latency and key id."""
    with node_federation(settings_for(data_dir, config)) as federation:
        federation.start()
        try:
            directory = federation.store.require()
        except DirectoryUnavailable as exc:
            fail(exc.detail)
        calls = [PeerCall(peer, PING_PATH, purpose.value) for peer in directory.nodes if peer != federation.node_id]
        rows = asyncio.run(_check(federation, calls, timeout))
    if json_output:
        print_json(rows)
        return
    out_console.print(f"{'node':<24} {'outcome':<14} {'latency':>9}  key id")
    for row in rows:
        latency = f"{row['latency_ms']:.1f} ms"
        out_console.print(
            f"{row['node_id']:<24} {row['outcome']:<14} {latency:>9}  {row['kid'] or '-'}  {row['detail'] or ''}"
        )


async def _check(federation: Federation, calls: list[PeerCall], timeout: float) -> list[dict[str, Any]]:
    try:
        result = await fanout(federation.client, calls, deadline_seconds=timeout)
    finally:
        await federation.aclose()
    return [
        {
            "node_id": r.peer,
            "outcome": r.outcome.value,
            "status": r.status,
            "latency_ms": round(r.latency_ms, 2),
            "kid": r.kid,
            "detail": r.detail,
        }
        for r in result.results
    ]
