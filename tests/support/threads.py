"""A worker-thread call a test can hold, and cancelling a task while the call is held (registry.core.threads)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest


class Gate:
    """A call that blocks its worker thread until released; says whether it started and whether it finished."""

    def __init__(self, outcome: Callable[[], Any] = lambda: "read") -> None:
        self.outcome = outcome
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = False

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        self.entered.set()
        self.release.wait()
        self.finished = True
        return self.outcome()


async def cancel_mid_call(gate: Gate, work: Coroutine[Any, Any, Any], *, cancels: int = 1) -> bool:
    """Cancel ``work`` (``cancels`` times) while ``gate`` blocks its thread; whether it was still running then."""
    task = asyncio.ensure_future(work)
    try:
        while not gate.entered.is_set():  # the thread has not reached the gate yet
            if task.done():
                raise AssertionError(f"the call ended before reaching the gate: {task.exception()!r}")
            await asyncio.sleep(0.001)
        for _ in range(cancels):
            task.cancel()
            for _ in range(5):  # turns of the loop enough for an abandoned await to have ended
                await asyncio.sleep(0)
        still_running = not task.done()
    finally:
        gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    return still_running


def boom() -> str:
    raise RuntimeError("the query failed")
