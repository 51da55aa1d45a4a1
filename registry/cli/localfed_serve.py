"""The node processes of ``rcc-node federation up``: start, wait until ready, watch, stop — and signals.

Each node is an ``rcc-node serve`` subprocess in its own session, so a terminal's Ctrl-C reaches only the
command, which then stops the nodes one way: SIGTERM to each (uvicorn shuts down cleanly), SIGKILL to any
still running after a grace period, and a wait for every one. On Linux each node also asks the kernel for
SIGTERM when its parent dies, so not even a SIGKILLed ``federation up`` leaves a node behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from registry.cli.common import err_console, fail
from registry.cli.localfed_data import Member
from registry.core.keys import KeyRing
from registry.core.settings import Settings

READY_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 20.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1


class Stop(BaseException):
    """SIGINT or SIGTERM arrived: stop every node and exit.

    A ``BaseException``, like ``KeyboardInterrupt``: libraries may catch ``Exception`` on the way (SQLAlchemy's
    pool logs and drops one raised while it returns a connection), and a stop must never be swallowed.
    """


def raise_stop(signum: int, _frame: FrameType | None) -> None:
    """The signal handler while the federation runs: unwind to the code that stops the nodes."""
    raise Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold a stop signal until the block is done (an ``init`` cut short would leave a key but no node.toml)."""
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise_stop(held[0], None)


@dataclass
class LocalNode:
    """One member of the local federation: its folder, port, process, and what was loaded or made for it."""

    member: Member
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    settings: Settings | None = None
    ring: KeyRing | None = None
    clients: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints for this node (``client_id``/``client_secret``: the commissioner client)."""
        commissioner = self.clients.get("commissioner", {})
        return {
            "node_id": self.member.node_id,
            "name": self.member.name,
            "kind": self.member.kind,
            "region_code": self.member.region_code,
            "base_url": self.base_url,
            "docs_url": f"{self.base_url}/docs",
            "ui_url": f"{self.base_url}/ui/",
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "pid": self.process.pid if self.process is not None else None,
            "client_id": commissioner.get("client_id"),
            "client_secret": commissioner.get("client_secret"),
            "clients": self.clients,
        }


def start(node: LocalNode) -> None:
    """``rcc-node serve`` for the node, in its own session, logging to ``serve.log`` in its folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCC_")}
    with node.log_path.open("ab") as log:
        node.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "registry.cli", "serve", "--data-dir", str(node.data_dir), "--port", str(node.port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    err_console.print(f"{node.member.folder}: serving on {node.base_url} (pid {node.process.pid}, log {node.log_path})")


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, have the kernel SIGTERM a node if this process dies without stopping it (no orphans)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: go now
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def wait_ready(nodes: list[LocalNode]) -> None:
    """Poll each node's ``/readyz`` until it answers 200; fail naming the node (and its log) otherwise."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    pending = list(nodes)
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while pending:
            for node in list(pending):
                check_alive(node)
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{node.base_url}/readyz").status_code == 200:
                        pending.remove(node)
                        continue
                if time.monotonic() > deadline:
                    fail(f"{node.member.folder} was not ready after {READY_TIMEOUT_SECONDS:.0f} s; see {node.log_path}")
            if pending:
                time.sleep(0.1)


def check_alive(node: LocalNode) -> None:
    """Fail, showing the end of its log, if the node's process has exited."""
    if node.process is not None and node.process.poll() is not None:
        tail = node.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        err_console.print("\n".join(tail), markup=False)
        fail(f"{node.member.folder} stopped (exit {node.process.returncode}); its log is {node.log_path}")


def stop_all(nodes: list[LocalNode]) -> None:
    """SIGTERM every node still running, wait, SIGKILL what is left; further signals wait until this is done."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        running = [(n, n.process) for n in nodes if n.process is not None and n.process.poll() is None]
        for _, process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for node, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                err_console.print(f"{node.member.folder} did not stop in {STOP_GRACE_SECONDS:.0f} s: killed")
        if running:
            err_console.print(f"stopped {len(running)} node(s)")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
