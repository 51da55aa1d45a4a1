"""Direct routes: served by their own ASGI function, found without the router's walk, and otherwise like any
route (named for the audit, documented, refusals as problem+json, behind a path prefix the router's)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from federation.direct import DirectDispatch, DirectRoute, install_direct, send_json
from registry.core.errors import Forbidden, install_error_handlers


async def hello() -> dict[str, str]:
    """Documented from this signature."""
    return {"hello": "world"}


def app_with_direct(seen: list[tuple[str, Any, str]]) -> FastAPI:
    """An app with one direct route whose ASGI function records who served it and the route it was given."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.query_params.get("refuse"):
            raise Forbidden("not for you")
        seen.append(("direct", scope.get("route"), scope.get("root_path", "")))
        await send_json(send, b'{"hello":"direct"}')

    app = FastAPI()
    install_error_handlers(app)
    install_direct(app, DirectRoute("/x/hello", hello, serve=serve, methods=["GET"], name="x.hello"))
    return app


class TestDirectDispatch:
    def test_the_exact_method_and_path_are_served_directly_with_the_route_set(self) -> None:
        seen: list[tuple[str, Any, str]] = []
        app = app_with_direct(seen)
        assert isinstance(app.router.middleware_stack, DirectDispatch)
        response = TestClient(app).get("/x/hello")
        assert (response.status_code, response.json()) == (200, {"hello": "direct"})
        [(_, route, _)] = seen
        assert isinstance(route, DirectRoute) and route.name == "x.hello"

    def test_a_refusal_is_the_apps_problem_json(self) -> None:
        response = TestClient(app_with_direct([])).get("/x/hello", params={"refuse": "1"})
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"

    def test_other_methods_and_paths_go_to_the_router(self) -> None:
        client = TestClient(app_with_direct([]))
        assert client.post("/x/hello").status_code == 405
        assert client.get("/x/hello/", follow_redirects=False).status_code == 307  # the router's slash redirect
        assert client.get("/nowhere").status_code == 404

    def test_behind_a_path_prefix_the_router_serves_it_with_the_same_function(self) -> None:
        seen: list[tuple[str, Any, str]] = []
        response = TestClient(app_with_direct(seen), root_path="/rcc").get("/x/hello")
        assert response.status_code == 200
        assert seen[0][2] == "/rcc"

    def test_it_is_documented_from_the_endpoints_signature(self) -> None:
        operation = TestClient(app_with_direct([])).get("/openapi.json").json()["paths"]["/x/hello"]["get"]
        assert operation["description"] == "Documented from this signature."
