"""Default deny, proven over the assembled app: every route either declares the roles it admits or stands on
the explicit public allow-list. A new route that forgets ``require(...)`` fails this test."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from registry.app import create_app
from registry.core.auth.deps import RouteDeclaration, routes_of
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.settings import Settings

# The only routes anyone may call without a token, and why:
PUBLIC = [
    r"/\.well-known/.*",  # a node's keys and descriptor: peers need them before any agreement exists
    r"/healthz",
    r"/readyz",  # orchestrator probes
    r"/oauth/token",  # where a token is obtained (client authentication guards it)
    r"/docs",
    r"/docs/oauth2-redirect",
    r"/redoc",
    r"/openapi\.json",  # API documentation
    r"/federation/.*",  # node-to-node calls: guarded by signed request tokens, not local roles
    # Web pages: signing in (nobody is signed in yet; the identity provider's callback arrives unauthenticated),
    # signing out (ends whatever session the browser holds; CSRF-checked), and the pages' own stylesheet and
    # script (the sign-in page needs them). Every other /ui/ page declares its roles.
    r"/ui/sign-in(/dev|/oidc/\{number\}|/callback)?",
    r"/ui/sign-out",
    r"/ui/static/\{name\}",
]
_PUBLIC = re.compile("|".join(f"(?:{pattern})" for pattern in PUBLIC))


@pytest.fixture
def app(settings: Settings, keys: KeyRing) -> Iterator[FastAPI]:
    """A freshly assembled node of its own: these tests add routes to it."""
    engine = make_engine(settings.effective_database_url)
    yield create_app(settings, keys=keys, engine=engine)
    engine.dispose()


def undeclared(app: FastAPI) -> list[RouteDeclaration]:
    return [r for r in routes_of(app) if r.roles is None and not _PUBLIC.fullmatch(r.path)]


class TestDefaultDeny:
    def test_every_route_declares_roles_or_is_public(self, app: FastAPI) -> None:
        offenders = undeclared(app)
        assert not offenders, "routes with neither roles nor a place on the public allow-list:\n" + "\n".join(
            f"  {sorted(r.methods)} {r.path} ({r.name})" for r in offenders
        )

    def test_public_routes_are_only_the_allow_list(self, app: FastAPI) -> None:
        public = {r.path for r in routes_of(app) if r.roles is None}
        assert {"/healthz", "/readyz", "/oauth/token", "/openapi.json"} <= public
        assert "/v1/whoami" not in public

    def test_walk_sees_routes_inside_included_routers(self, app: FastAPI) -> None:
        paths = {r.path for r in routes_of(app)}
        assert {"/v1/whoami", "/oauth/token", "/.well-known/jwks.json"} <= paths

    def test_a_route_without_roles_is_caught(self, app: FastAPI) -> None:
        @app.get("/v1/forgot-to-declare")
        async def forgot() -> dict[str, str]:
            return {}

        assert [r.path for r in undeclared(app)] == ["/v1/forgot-to-declare"]

    def test_a_route_smuggled_under_a_public_prefix_lookalike_is_caught(self, app: FastAPI) -> None:
        @app.get("/v1/healthz")
        async def lookalike() -> dict[str, str]:
            return {}

        assert "/v1/healthz" in [r.path for r in undeclared(app)]
