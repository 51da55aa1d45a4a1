"""Every route of the assembled app leaves an audit entry, whoever calls it and however it answers."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from registry.core.audit.recording import sequence_pending
from schemas.vocabulary import Role
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def test_every_route_produces_an_audit_entry(app, client) -> None:
    sent: dict[str, tuple[str, str, int, bool]] = {}
    for route in iter_route_contexts(app.routes):  # FastAPI's view of every route, included routers flattened
        path = route.path or ""
        is_mount = isinstance(route.original_route, Mount)
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        for method in methods:
            if method == "HEAD" and "GET" in methods:
                continue
            url = re.sub(r"\{[^}]+\}", "0", path) + ("/" if is_mount else "")
            request_id = f"walk-{len(sent)}"
            kwargs = {"json": {}} if method in _BODY_METHODS else {}
            response = client.request(method, url, headers={"x-request-id": request_id}, **kwargs)
            assert response.status_code < 500, (method, url, response.text)
            sent[request_id] = (route.name or "", method, response.status_code, is_mount)
    assert len(sent) >= 10

    sequence_pending(app.state.node)
    gov = bearer(app, Role.governance, subject="walker")
    recorded: dict[str, dict] = {}
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/audit/entries", params=params, headers=gov).json()
        recorded.update({item["entry"]["request_id"]: item["entry"] for item in page["items"]})
        if (cursor := page["next_cursor"]) is None:
            break
    for request_id, (name, method, status, is_mount) in sent.items():
        entry = recorded.get(request_id)
        assert entry is not None, f"{method} {name}: no audit entry"
        assert (entry["method"], entry["status"]) == (method, status), name
        if is_mount:
            assert entry["action"] != "unmatched", name
        else:
            assert entry["action"] == name, (name, entry["action"])
