"""Real nodes for integration tests: ``rcc-node init`` (in this process), ``rcc-node serve`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from registry.cli.common import own_environment
from registry.cli.main import app as cli_app

CLI = [sys.executable, "-m", "registry.cli"]
_IN_PROCESS_CLI = threading.Lock()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy (a node's state over HTTP, a file, a process); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``rcc-node ARGS`` as a user would; return the completed process."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"rcc-node {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def invoke_cli(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``rcc-node ARGS`` through the CLI's own typer app in this process; the outcome as :func:`run_cli` gives it.

    For tests about what a command does, not about the process: a fresh interpreter importing the whole product
    cost 3.7-5 s on this machine. One command at a time (alembic keeps its migration context in module globals),
    and nothing it sets in the environment outlives it. An exception the command let escape is a traceback on
    stderr and exit status 1, as from a process of its own.
    """
    with _IN_PROCESS_CLI, own_environment():
        result = CliRunner().invoke(cli_app, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    done = subprocess.CompletedProcess([*CLI, *args], result.exit_code, result.stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"rcc-node {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


@dataclass
class NodeSpec:
    """What a test node is: identity and where it lives."""

    node_id: str
    data_dir: Path
    port: int
    kind: str = "regional"
    region_code: str | None = "E12000008"
    name: str = ""
    database_url: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def init_node(
    tmp_path: Path,
    node_id: str,
    *,
    kind: str = "regional",
    region_code: str | None = "E12000008",
    database_url: str | None = None,
    name: str | None = None,
    as_process: bool = False,
) -> NodeSpec:
    """``rcc-node init`` a node in ``tmp_path/node_id`` on a free port.

    The command runs in this process (:func:`invoke_cli`; 36 times a run); the node it creates is then served
    by a real ``rcc-node serve`` process. ``as_process``: a process of its own, as a user runs it.
    """
    spec = NodeSpec(node_id, tmp_path / node_id, free_port(), kind, region_code, name or node_id, database_url)
    args = [
        "init",
        "--data-dir",
        str(spec.data_dir),
        "--node-id",
        node_id,
        "--name",
        spec.name,
        "--kind",
        kind,
        "--base-url",
        spec.base_url,
        "--port",
        str(spec.port),
    ]
    if region_code:
        args += ["--region-code", region_code]
    if database_url:
        args += ["--database-url", database_url]
    (run_cli if as_process else invoke_cli)(args)
    return spec


@dataclass
class ServedNode:
    """A running ``rcc-node serve`` process."""

    spec: NodeSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_node(
    spec: NodeSpec, *, workers: int = 1, env: dict[str, str] | None = None, timeout: float = 30
) -> ServedNode:
    """Start ``rcc-node serve`` for ``spec`` and wait until it answers ``/healthz``."""
    log_path = spec.data_dir / f"serve-{spec.port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--data-dir",
                str(spec.data_dir),
                "--port",
                str(spec.port),
                "--workers",
                str(workers),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    node = ServedNode(spec, process, log_path)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"node {spec.node_id} exited ({process.returncode}):\n{node.log()}")
            try:
                if client.get(f"{spec.base_url}/healthz").status_code == 200:
                    return node
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                node.stop()
                raise AssertionError(f"node {spec.node_id} did not start in {timeout}s:\n{node.log()}")
            time.sleep(0.05)


@contextmanager
def served(spec: NodeSpec, **kwargs: object) -> Iterator[ServedNode]:
    """Run a node for the duration of a ``with`` block."""
    node = start_node(spec, **kwargs)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.stop()
