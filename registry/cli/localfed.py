"""``rcc-node federation up``: a whole federation on one machine, for trying rcc-registry out (``make run``).

Four nodes — South East, Greater Manchester (its ten boroughs), London and a national node that operates the
directory — each in its own folder under ``--dir`` with its own SQLite database, key and port. Everything is
done with the same code the single-node commands run (``init``, ``directory build|sign``, ``clients add``,
``synth capacity``, ``synth publications --publish``, ``agreements draft|sign|bundle|import``), in this process
rather than as a dozen ``rcc-node`` sub-commands, because importing the node costs seconds per process.
The nodes themselves are ``rcc-node serve`` subprocesses; they are started as soon as their settings are in
place, so their start-up overlaps the data set-up. A second run on the same folder initialises only what is
missing, re-signs the directory (a higher serial), refreshes the synthetic capacity, and reuses the clients
(their secrets are kept, 0600, in ``DIR/clients.json``: this is a demo folder, not a production node).

Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL after a grace period) before the command exits;
on Linux each node also gets SIGTERM from the kernel if this process dies without cleaning up, so no node
outlives it. Agreements and the synthetic data are made by :mod:`registry.cli.localfed_data`, the node
processes are handled by :mod:`registry.cli.localfed_serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from federation.errors import DirectoryRejected
from federation.operator import build_directory, sign_directory
from registry.cli import localfed_data as data
from registry.cli.common import err_console, fail, out_console
from registry.cli.localfed_serve import (
    STOP_SIGNALS,
    LocalNode,
    Stop,
    check_alive,
    raise_stop,
    start,
    stop_all,
    uninterrupted,
    wait_ready,
)
from registry.core.db import utcnow
from registry.core.keys import KeyRing, KeyRingError
from registry.core.settings import CONFIG_FILE_NAME, Settings, SettingsError, load_settings, write_config

federation_app = typer.Typer(
    help="A local federation on this machine, for trying rcc-registry out.", no_args_is_help=True
)

DEFAULT_BASE_PORT = 8000
WITNESS_INTERVAL_SECONDS = 30
"""How often each local node witnesses its peers: short, so someone trying it out sees rounds happen."""
DIRECTORY_VALID_DAYS = 7
RESIGN_EVERY = timedelta(days=1)


@federation_app.callback()
def federation() -> None:
    """A local federation on this machine, for trying rcc-registry out."""


@federation_app.command("up")
def up(
    folder: Annotated[
        Path, typer.Option("--dir", help="Folder of the nodes: created on the first run, reused on later ones.")
    ] = Path(".rcc/federation"),
    base_port: Annotated[
        int | None,
        typer.Option(
            "--base-port",
            min=0,
            max=65532,
            help="South East listens here and the others on the next three ports; 0 picks free ports. "
            f"Default: the ports the nodes already have, else {DEFAULT_BASE_PORT}.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic capacity and publications.")] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one line of JSON once every node is ready (progress: stderr).")
    ] = False,
) -> None:
    """Start South East, Greater Manchester, London and a national node on this machine; Ctrl-C stops them all."""
    started = time.monotonic()
    root = folder.resolve()
    _scrub_environment()
    root.mkdir(parents=True, exist_ok=True)
    previous = {sig: signal.signal(sig, raise_stop) for sig in STOP_SIGNALS}
    nodes: list[LocalNode] = []
    with _pid_file(root):
        try:
            with uninterrupted():  # node folders and settings are written whole or not at all
                nodes = _prepare(root, base_port)
                serial = _publish_directory(root, nodes)
            for node in nodes:
                start(node)
            report = data.provision(
                [data.Target(n.member, n.data_dir, _settings(n), _ring(n)) for n in nodes], root=root, seed=seed
            )
            for node in nodes:
                node.clients = report.clients[node.member.node_id]
            wait_ready(nodes)
            elapsed = time.monotonic() - started
            if json_output:
                _print_json(nodes, report, serial, root, elapsed)
            else:
                _print_banner(nodes, report, root, elapsed)
            _watch(root, nodes)
        except Stop as stop:
            err_console.print(f"{stop}: stopping the federation")
        finally:
            stop_all(nodes)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------- preparing


def _scrub_environment() -> None:
    """Drop ``RCC_*`` variables: one meant for a single node (a database URL, a data dir) would hit all four."""
    for name in sorted(n for n in os.environ if n.startswith("RCC_")):
        err_console.print(f"[yellow]note:[/] ignoring {name} (each local node has its own settings)")
        del os.environ[name]


@contextlib.contextmanager
def _pid_file(root: Path) -> Iterator[None]:
    """Refuse a second ``federation up`` on the same folder while one is running."""
    path = root / "federation.pid"
    with contextlib.suppress(OSError, ValueError):
        other = int(path.read_text(encoding="utf-8").strip())
        if other != os.getpid() and _alive(other):
            fail(f"a federation is already running from {root} (pid {other}); stop it first (or delete {path})")
    path.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare(root: Path, base_port: int | None) -> list[LocalNode]:
    """Pick each node's port, check it is free, then ``init`` the nodes that do not exist yet."""
    from registry.cli.main import init  # the module that registers this one

    nodes: list[LocalNode] = []
    taken: set[int] = set()
    for member in data.MEMBERS:
        data_dir = root / member.folder
        stored = _stored_config(data_dir)
        if stored and stored.get("node_id") != member.node_id:
            fail(f"{data_dir / CONFIG_FILE_NAME} is node {stored.get('node_id')!r}, not {member.node_id}")
        if base_port == 0:
            port = _free_port(taken)
        elif base_port is not None:
            port = base_port + member.offset
        else:
            port = int(stored.get("port", DEFAULT_BASE_PORT + member.offset))
        taken.add(port)
        nodes.append(LocalNode(member, data_dir, port))
    busy = [n for n in nodes if not _port_free(n.port)]
    if busy:
        ports = ", ".join(f"{n.port} ({n.member.folder})" for n in busy)
        fail(f"port(s) in use: {ports}. Stop what holds them, or pass --base-port (0 picks free ports)")
    for node in nodes:
        if _stored_config(node.data_dir):
            _configure(node, port=node.port, base_url=node.base_url)
            continue
        member = node.member
        with contextlib.redirect_stdout(sys.stderr):
            init(
                data_dir=node.data_dir,
                node_id=member.node_id,
                name=member.name,
                kind=member.kind,
                region_code=member.region_code,
                base_url=node.base_url,
                database_url=None,
                port=node.port,
                json_output=False,
            )
    for node in nodes:
        # The web pages' development sign-in (pick a role, no identity provider): loopback base URLs only.
        # Witnessing every half minute rather than every five (the production default).
        _configure(node, ui_dev_signin=True, witness_interval_seconds=WITNESS_INTERVAL_SECONDS)
    return nodes


def _stored_config(data_dir: Path) -> dict[str, Any]:
    path = data_dir / CONFIG_FILE_NAME
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")


def _configure(node: LocalNode, **values: Any) -> None:
    """Set some of a node's settings in its node.toml, keeping the rest; rewritten only if something changed."""
    current = _stored_config(node.data_dir)
    wanted = {**current, **values}
    if wanted == current:
        return
    odd = sorted(k for k, v in wanted.items() if not isinstance(v, str | int | float | bool))
    if odd:
        fail(f"{node.data_dir / CONFIG_FILE_NAME}: cannot rewrite settings {', '.join(odd)}; edit it by hand")
    write_config(node.data_dir / CONFIG_FILE_NAME, wanted)


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: a port left in TIME_WAIT by the last run is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _settings(node: LocalNode) -> Settings:
    if node.settings is None:
        try:
            node.settings = load_settings(data_dir=node.data_dir)
        except SettingsError as exc:
            fail(f"{node.member.folder}: {exc}")
    return node.settings


def _ring(node: LocalNode) -> KeyRing:
    if node.ring is None:
        try:
            node.ring = KeyRing.load(_settings(node).effective_key_dir)
        except (KeyRingError, OSError) as exc:
            fail(f"{node.member.folder}: {exc}")
    return node.ring


# ------------------------------------------------------------------------------------------------ directory


def _publish_directory(root: Path, nodes: list[LocalNode]) -> int:
    """Build and sign the directory with the national node's key; point every node at it. Returns the serial.

    Members are given in full (keys read from each node's key ring on this machine), so the directory is
    ready before any node serves. The serial is the Unix time, and always above the one written last.
    """
    operator = next(n for n in nodes if n.member.kind == "national")
    path = root / "directory.json"
    serial = int(utcnow().timestamp())
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        serial = max(serial, int(json.loads(path.read_text(encoding="utf-8"))["directory"]["serial"]) + 1)
    spec = {
        "operator": operator.member.node_id,
        "valid_days": DIRECTORY_VALID_DAYS,
        "nodes": [
            {
                "node_id": n.member.node_id,
                "name": n.member.name,
                "kind": n.member.kind,
                "region_code": n.member.region_code,
                "base_url": n.base_url,
                "keys": _ring(n).jwks()["keys"],
            }
            for n in nodes
        ],
    }

    def offline(base_url: str) -> Any:  # every member is given in full: nothing to fetch
        raise DirectoryRejected("bad-descriptor", f"no descriptor fetched for {base_url}")

    try:
        document = build_directory(spec, fetch=offline, now=utcnow(), serial=serial)
        envelope = sign_directory(document, _ring(operator))
    except DirectoryRejected as exc:
        fail(f"cannot build the directory ({exc.reason}): {exc.detail}")
    _write_atomic(path, json.dumps(envelope, indent=2) + "\n")
    jwks_path = root / "operator-jwks.json"
    _write_atomic(jwks_path, json.dumps(_ring(operator).jwks(), indent=2) + "\n")
    for node in nodes:
        _configure(
            node,
            operator_jwks=str(jwks_path),
            directory_file=str(path),
            directory_operator=node is operator,
        )
        node.settings = None  # read again: the federation settings just changed
    return serial


def _write_atomic(path: Path, text: str) -> None:
    """Write a file a running node may be reading: a new file moved into place, never a half-written one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _watch(root: Path, nodes: list[LocalNode]) -> None:
    """Run until a signal arrives; re-sign the directory daily so a long-running demo never lets it expire."""
    resign_at = time.monotonic() + RESIGN_EVERY.total_seconds()
    while True:
        for node in nodes:
            check_alive(node)
        if time.monotonic() >= resign_at:
            with uninterrupted():
                serial = _publish_directory(root, nodes)
            err_console.print(f"re-signed the directory (serial {serial}); nodes pick it up at their next refresh")
            resign_at = time.monotonic() + RESIGN_EVERY.total_seconds()
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------------- printing


def _print_json(nodes: list[LocalNode], report: data.Report, serial: int, root: Path, elapsed: float) -> None:
    document = {
        "dir": str(root),
        "operator": next(n.member.node_id for n in nodes if n.member.kind == "national"),
        "directory_serial": serial,
        "nodes": [n.summary() for n in nodes],
        "agreements": report.agreements,
        "startup_seconds": round(elapsed, 1),
    }
    typer.echo(json.dumps(document))
    sys.stdout.flush()


def search_commands(node: LocalNode) -> str:
    """Shell lines that get a commissioner token from ``node`` and run the example search there."""
    credentials = node.clients["commissioner"]
    body = json.dumps(data.example_search(), separators=(", ", ": "))
    return (
        f"BASE={node.base_url}\n"
        f"TOKEN=$(curl -s -u '{credentials['client_id']}:{credentials['client_secret']}' "
        "-d grant_type=client_credentials $BASE/oauth/token \\\n"
        "    | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        'curl -s -X POST $BASE/v1/capacity/search -H "Authorization: Bearer $TOKEN" '
        "-H 'content-type: application/json' \\\n"
        f"    -d '{body}' | python3 -m json.tool\n"
    )


def _print_banner(nodes: list[LocalNode], report: data.Report, root: Path, elapsed: float) -> None:
    say = out_console.print
    say(f"\n[bold]Local federation up[/] in {elapsed:.1f} s: {len(nodes)} nodes, data and logs in {root}\n")
    for node in nodes:
        say(f"  [bold]{node.member.name}[/] ({node.member.node_id})")
        say(f"      {node.base_url}    API docs: {node.base_url}/docs")
        say(f"      web pages: {node.base_url}/ui/ (development sign-in: pick a role)")
        if node.member.kind == "national":
            say(f"      the signed directory: {node.base_url}/federation/v1/directory")
        for role, credentials in node.clients.items():
            say(f"      {role:<13} client_id {credentials['client_id']}  client_secret {credentials['client_secret']}")
    active = [a["id"] for a in report.agreements if a["state"] == "active"]
    say(f"\n  Signed, active agreements: {', '.join(active) or 'none'}")
    say(
        f"  The nodes witness each other's audit logs every {WITNESS_INTERVAL_SECONDS} s: "
        "GET /v1/audit/witness on any node (governance role) shows the heads kept and the last round.\n"
    )
    se = nodes[0]
    say(f"Search for a placement through {se.member.name} (paste into a shell):\n")
    out_console.print(search_commands(se), markup=False, highlight=False)
    say("Press Ctrl-C to stop every node.")
