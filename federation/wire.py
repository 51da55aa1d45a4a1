"""The HTTP layer under the outbound client: one pooled keep-alive connection pool per node.

aiohttp is the production wire, chosen by measurement (``bench/bench_federation.py``): a 10-peer fan-out
costs ~0.23 ms client CPU per peer with aiohttp against ~2.2 ms with httpx on this stack, and the federation
budget is 1 ms per peer including the signatures. An httpx transport can still be injected
(``create_app(transport=...)``): tests route one node's calls into another node's ASGI app in-process with
``httpx.ASGITransport``, or into an ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # imported when a node with the federation starts (Wire.prepare), not by this module
    import aiohttp
    import httpx

FailureKind = Literal["timeout", "unreachable", "error"]


@dataclass(frozen=True)
class WireResponse:
    """A complete HTTP response: status, lower-cased headers, the exact body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class WireError(Exception):
    """The call produced no HTTP response; ``kind`` says why (timeout, unreachable, or a broken response)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(detail)


class Wire(Protocol):
    """What the outbound client needs from an HTTP library."""

    async def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> WireResponse: ...

    async def prepare(self) -> None:
        """Load what the first call would need (libraries, TLS contexts, the pool): called as the node starts,
        before it serves anything, so that the first call does not stall the event loop mid-service."""

    async def aclose(self) -> None: ...


class AiohttpWire:
    """Pooled keep-alive aiohttp sessions, one per event loop that uses the wire.

    A node serves on one loop; an app started twice at once (two test clients on one app) has two, and each
    closes its own pool as it stops. A pool can only be used, and closed, on the loop it was opened on.
    """

    def __init__(self, *, limit: int = 200, limit_per_host: int = 20, max_body_bytes: int = 16 * 1024 * 1024) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.max_body_bytes = max_body_bytes
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    async def prepare(self) -> None:
        """Import aiohttp and open the pool on this loop now.

        Importing aiohttp builds its TLS contexts (loading the system's CA certificates): 0.2-0.3 s on the
        development machine. Left to the first call, that stalled every request the node was serving: in a
        national search, each region's first answer after it started took 130-175 ms instead of 10-20 ms.
        """
        self._session_for_loop()

    def _session_for_loop(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit, limit_per_host=self.limit_per_host, ttl_dns_cache=300, keepalive_timeout=30
            )
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, raise_for_status=False, trust_env=False
            )
        return session

    async def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> WireResponse:
        """One request; the body is read whole (bounded) because its hash is signed."""
        import aiohttp

        session = self._session_for_loop()
        try:
            async with session.request(
                method,
                url,
                headers=dict(headers),
                data=body or None,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                content = await self._read_body(response)
                return WireResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, content)
        except TimeoutError:
            raise WireError("timeout", f"no answer within {timeout:.3f} s") from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            raise WireError("unreachable", f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:
            raise WireError("error", f"{type(exc).__name__}: {exc}") from None

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused past ``max_body_bytes``.

        ``StreamReader.read(n)`` returns whatever has arrived so far, not ``n`` bytes: a body that comes in
        several TCP segments would be cut short and then fail its signed digest. So read to the end.
        """
        declared = response.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise WireError("error", f"response body over {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise WireError("error", f"response body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        """Close this loop's pool."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()


class HttpxWire:
    """An injected httpx transport (in-process ASGI apps, mock transports) behind the same interface."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        import httpx

        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)

    async def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> WireResponse:
        """One request through the injected transport."""
        import httpx

        try:
            response = await self._client.request(method, url, headers=dict(headers), content=body, timeout=timeout)
        except httpx.TimeoutException:
            raise WireError("timeout", f"no answer within {timeout:.3f} s") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise WireError("unreachable", f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise WireError("error", f"{type(exc).__name__}: {exc}") from None
        return WireResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    async def prepare(self) -> None:
        """Nothing to load: the transport was built by the caller."""

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()


def make_wire(transport: Any = None) -> Wire:
    """The wire for ``create_app(transport=...)``: aiohttp by default, an httpx transport or a ready Wire if given."""
    if transport is None:
        return AiohttpWire()
    import httpx

    if isinstance(transport, httpx.AsyncBaseTransport):
        return HttpxWire(transport)
    if all(hasattr(transport, name) for name in ("send", "prepare", "aclose")):
        wire: Wire = transport
        return wire
    raise TypeError(f"transport must be an httpx.AsyncBaseTransport or a federation Wire, not {type(transport)!r}")
