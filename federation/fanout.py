"""Fan-out: ask many peers at once under one overall deadline, and say honestly what each one did.

Every call starts at once and shares one absolute deadline; a call still waiting when it passes is cut off
and reported as ``timeout``, so one dead or hung region never stalls the answer. The result holds every
answer that arrived in time, plus each peer's outcome and latency, in the order the calls were given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from federation.client import FederationClient
from federation.models import FanoutResult, PeerResult
from registry.core.audit.context import AuditContext
from schemas.vocabulary import PeerOutcome


@dataclass(frozen=True)
class PeerCall:
    """One call of a fan-out."""

    peer: str
    path: str
    purpose: str
    method: str = "GET"
    json_body: Any = None
    agreement: str | None = None
    dataset: str | None = None
    parse: bool = True  # False: a 2xx answer stays bytes (``PeerResult.content``), see FederationClient.call


async def fanout(
    client: FederationClient,
    calls: Sequence[PeerCall],
    *,
    deadline_seconds: float,
    retries: int = 1,
    request_id: str | None = None,
    context: AuditContext | None = None,
    on_result: Callable[[PeerResult], None] | None = None,
) -> FanoutResult:
    """Make every call concurrently; return by the deadline with each peer's result (never raises for a peer).

    ``on_result`` is called with each peer's result as soon as it is in, while the other calls are still out:
    reading one region's answer then overlaps the wait for the slowest instead of following it.
    """
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    deadline = loop.time() + deadline_seconds

    async def one(call: PeerCall) -> PeerResult:
        result = await client.call(
            call.peer,
            call.method,
            call.path,
            purpose=call.purpose,
            json_body=call.json_body,
            agreement=call.agreement,
            dataset=call.dataset,
            retries=retries,
            deadline=deadline,
            request_id=request_id,
            context=context,
            parse=call.parse,
        )
        if on_result is not None:
            on_result(result)
        return result

    outcomes = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    results: list[PeerResult] = []
    for call, outcome in zip(calls, outcomes, strict=True):
        if isinstance(outcome, PeerResult):
            results.append(outcome)
        elif isinstance(outcome, Exception):  # a bug, not a peer's doing: still one peer's result, not a crash
            results.append(PeerResult(call.peer, PeerOutcome.error, 0.0, detail=f"{type(outcome).__name__}"))
        else:
            raise outcome
    return FanoutResult(results, (time.perf_counter() - started) * 1000)
