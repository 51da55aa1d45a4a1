"""The aiohttp wire against a real socket: a peer's body arrives whole, however the peer's bytes are split.

A peer's answer is only trusted when its signed digest matches the body, so a body cut short by the client
would turn a good answer into ``bad-signature``. These servers write their answers in pieces, with pauses in
between, the way a large answer crosses a loaded network.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from federation.wire import AiohttpWire, WireError
from registry.app import create_app
from registry.core.keys import KeyRing
from registry.core.settings import Settings

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _serve_once(write: Writer, call: Callable[[str], Awaitable[object]]) -> object:
    """Serve each connection with ``write`` (after reading the request head) while ``call`` runs."""

    handlers: list[asyncio.Task[None]] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await write(writer)
        except ConnectionError:
            pass  # the client hung up first (a refused body)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await respond(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await call(f"http://127.0.0.1:{port}/federation/v1/ping")
    finally:
        server.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def _send(wire: AiohttpWire) -> Callable[[str], Awaitable[object]]:
    async def call(url: str) -> object:
        try:
            return await wire.send("GET", url, headers={}, body=b"", timeout=5.0)
        finally:
            await wire.aclose()

    return call


BODY = b'{"results": [' + b",".join(b'{"n": %d}' % i for i in range(5_000)) + b"]}"


async def _in_pieces(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)  # each piece its own segment(s): the client sees them arrive separately


class TestWholeBody:
    def test_a_body_sent_in_pieces_with_a_content_length_arrives_whole(self) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)
        thirds = [BODY[: len(BODY) // 3], BODY[len(BODY) // 3 : 2 * len(BODY) // 3], BODY[2 * len(BODY) // 3 :]]

        async def write(writer: asyncio.StreamWriter) -> None:
            await _in_pieces(writer, [head, *thirds])

        response = asyncio.run(_serve_once(write, _send(AiohttpWire())))
        assert response.body == BODY  # type: ignore[attr-defined]

    def test_a_chunked_body_arrives_whole(self) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        halves = [BODY[: len(BODY) // 2], BODY[len(BODY) // 2 :]]
        chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in halves] + [b"0\r\n\r\n"]

        async def write(writer: asyncio.StreamWriter) -> None:
            await _in_pieces(writer, [head, *chunks])

        response = asyncio.run(_serve_once(write, _send(AiohttpWire())))
        assert response.body == BODY  # type: ignore[attr-defined]


class TestBodyLimit:
    def test_a_declared_length_over_the_limit_is_refused(self) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY)

        async def write(writer: asyncio.StreamWriter) -> None:
            await _in_pieces(writer, [head, BODY])

        with pytest.raises(WireError) as refused:
            asyncio.run(_serve_once(write, _send(AiohttpWire(max_body_bytes=1_000))))
        assert refused.value.kind == "error" and "over 1000 bytes" in refused.value.detail

    def test_an_undeclared_body_over_the_limit_is_refused_as_it_arrives(self) -> None:
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        chunks = [b"%x\r\n%s\r\n" % (len(BODY), BODY), b"0\r\n\r\n"]

        async def write(writer: asyncio.StreamWriter) -> None:
            await _in_pieces(writer, [head, *chunks])

        with pytest.raises(WireError) as refused:
            asyncio.run(_serve_once(write, _send(AiohttpWire(max_body_bytes=1_000))))
        assert refused.value.kind == "error"


class TestPrepare:
    def test_a_prepared_wire_calls_out_as_before(self) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)

        async def write(writer: asyncio.StreamWriter) -> None:
            await _in_pieces(writer, [head, BODY])

        async def prepared_then_call(url: str) -> object:
            wire = AiohttpWire()
            await wire.prepare()
            return await _send(wire)(url)

        response = asyncio.run(_serve_once(write, prepared_then_call))
        assert response.body == BODY  # type: ignore[attr-defined]

    def test_a_node_readies_its_wire_as_it_starts_before_serving_anything(self, settings: Settings) -> None:
        wire = RecordingWire()
        app = create_app(settings, keys=KeyRing.generate(), transport=wire)
        assert wire.calls == []
        with TestClient(app) as client:
            assert wire.calls == ["prepare"]
            assert client.get("/healthz").status_code == 200
        assert wire.calls == ["prepare", "aclose"]

    def test_an_app_started_twice_at_once_closes_each_of_its_pools(self, settings: Settings) -> None:
        app = create_app(settings, keys=KeyRing.generate())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with TestClient(app) as first, TestClient(app) as second:  # two lifespans, two event loops
                assert first.get("/healthz").status_code == second.get("/healthz").status_code == 200
            gc.collect()
        assert [str(w.message) for w in caught if "Unclosed" in str(w.message)] == []


class RecordingWire:
    """A wire that only records what the node asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def send(self, method: str, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float) -> Any:
        self.calls.append("send")
        raise WireError("unreachable", "nothing is reachable from this test")

    async def prepare(self) -> None:
        self.calls.append("prepare")

    async def aclose(self) -> None:
        self.calls.append("aclose")
