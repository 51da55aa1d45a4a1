"""Options and helpers shared by every ``rcc-node`` command."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from federation.runtime import Federation
from registry.core.audit.recording import close_audit_log
from registry.core.db import make_engine
from registry.core.keys import KeyRing, KeyRingError
from registry.core.node import Node
from registry.core.settings import DEFAULT_DATA_DIR, Settings, SettingsError, load_settings

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

DataDirOption = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RCC_DATA_DIR", help="The node's data folder (settings, keys, SQLite file)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", envvar="RCC_CONFIG", help="A node.toml to read instead of DATA_DIR/node.toml."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DEFAULT_DIR = DEFAULT_DATA_DIR


@contextlib.contextmanager
def own_environment() -> Iterator[None]:
    """Run a command in this process without what it sets in ``RCC_*`` outliving it.

    Commands pin ``RCC_DATA_DIR`` for themselves; one node's must not leak into the next node's command.
    """
    before = {k: v for k, v in os.environ.items() if k.startswith("RCC_")}
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("RCC_") and k not in before]:
            del os.environ[name]
        os.environ.update(before)


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def settings_for(data_dir: Path, config: Path | None = None, **overrides: Any) -> Settings:
    """Load the node's settings for a command, failing with one line naming the bad setting."""
    os.environ.setdefault("RCC_DATA_DIR", str(data_dir))
    try:
        return load_settings(config=config, data_dir=data_dir if config is None else None, **overrides)
    except SettingsError as exc:
        fail(str(exc))


def keys_for(settings: Settings) -> KeyRing:
    """The node's key ring, failing with one line when it is missing or unreadable."""
    try:
        return KeyRing.load(settings.effective_key_dir)
    except (KeyRingError, OSError) as exc:
        fail(str(exc))


@contextlib.contextmanager
def node_federation(settings: Settings) -> Iterator[Federation]:
    """The node's federation side for one command; afterwards everything it opened is closed: the replay writer,
    the audit log of the calls it made (whose writer flushes first) and the database connections.

    A process would drop them on exit, but a command also runs inside another program's process (the tests',
    ``federation up``'s), where whatever it left open would outlive it.
    """
    keys = keys_for(settings)
    node = Node(settings=settings, engine=make_engine(settings.effective_database_url), keys=keys, head_revisions=set())
    try:
        try:
            federation = Federation(node)
        except SettingsError as exc:
            fail(str(exc))
        try:
            yield federation
        finally:
            federation.replay.close()
            close_audit_log(node)
    finally:
        node.engine.dispose()


def print_json(value: Any) -> None:
    """JSON on stdout, one document, for scripts."""
    typer.echo(json.dumps(value, indent=2, default=str))
