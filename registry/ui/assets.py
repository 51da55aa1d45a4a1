"""The pages' own stylesheet and script, served from the package (hand-written; no third-party build output).

A route per file name rather than a static mount: each fetch is a named, audited route like any other, and
only the files listed here can ever be served (no path is joined from the request).
"""

from __future__ import annotations

import functools
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from registry.core.errors import NotFound

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

STATIC = FilePath(__file__).parent / "static"
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
ASSETS = ("ui.css", "proof.js")


@functools.cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@router.get("/static/{name}", name="ui.static")
def asset(name: Annotated[str, Path(max_length=40)]) -> Response:
    """One of the pages' assets (public: the sign-in page needs the stylesheet before anyone is signed in)."""
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r}")
    return Response(
        _read(name),
        media_type=MEDIA_TYPES[FilePath(name).suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
