"""Worker threads for blocking work (database calls) awaited by tasks that may be cancelled.

Cancelling a task that awaits a worker thread does not stop the thread (not with ``run_in_threadpool``,
``anyio.to_thread`` or ``asyncio.to_thread``): the await ends at once and the thread runs on, abandoned. A
background loop cancelled at shutdown in the middle of a query would let shutdown go on while its thread still
held a pooled connection; the engine's owner disposes of the pool, and the connection comes back to a pool
nobody holds, open until the garbage collector finds it (psycopg's "deleted while still open" warning, raised
in whichever test ran then). Background loops therefore await their threads through :func:`run_to_completion`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def run_to_completion(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``run_in_threadpool`` that, if cancelled meanwhile, lets the thread finish before it is cancelled.

    The thread cannot be stopped, only abandoned; waiting for it means that once a cancelled loop has stopped,
    nothing it started still holds a database connection (see the module docstring). The cancelled task waits
    as long as the call takes, so this is for short calls: a query, a transaction.
    """
    work = asyncio.ensure_future(run_in_threadpool(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():  # a second cancel while waiting must not abandon the thread either
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # the caller gets the cancellation; the call's own failure is only marked as seen
        raise
