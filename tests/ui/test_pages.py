"""The web pages in-process (fast): sign-in, the session cookie's flags, CSRF, role checks, audit, error pages.

The browser tests (``test_browser.py``) cover the pages end to end against a real federation; these pin the
security properties one request at a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.core.audit.recording import sequence_pending
from registry.core.db import claim_database, make_engine
from registry.core.keys import KeyRing
from registry.core.settings import Settings, SettingsError, load_settings
from registry.ui.capacity import resolve_la
from registry.ui.oidc import EXTENSION, OidcSignIn
from registry.ui.signin import safe_next
from tests.support.tokens import bearer, ed25519_pair, write_jwks
from tests.ui.conftest import csrf_of, dev_sign_in


def _cookie_header(response: httpx.Response) -> str:
    return "; ".join(v for k, v in response.headers.multi_items() if k.lower() == "set-cookie")


class TestDevSignIn:
    def test_signs_in_with_the_role_picked_and_goes_on_to_the_page_asked_for(self, browser_client: TestClient) -> None:
        token = csrf_of(browser_client.get("/ui/sign-in").text)
        response = browser_client.post(
            "/ui/sign-in/dev", data={"csrf_token": token, "role": "governance", "next": "/ui/audit"}
        )
        assert (response.status_code, response.headers["location"]) == (303, "/ui/audit")
        home = browser_client.get("/ui/")
        assert home.status_code == 200
        assert "dev-governance" in home.text and 'href="/ui/audit"' in home.text
        assert 'href="/ui/search"' not in home.text  # a commissioner's page is not offered

    @pytest.mark.parametrize(
        "next_page", ["https://evil.example/", "//evil.example/ui/", "/v1/whoami", "/ui/../v1/x//y", "javascript:x"]
    )
    def test_never_sends_the_person_to_another_site_or_the_api(self, next_page: str) -> None:
        assert safe_next(next_page) == "/ui/"

    def test_a_page_of_the_service_is_kept_as_the_next_page(self) -> None:
        assert safe_next("/ui/agreements?state=active") == "/ui/agreements?state=active"

    def test_needs_a_role(self, browser_client: TestClient) -> None:
        token = csrf_of(browser_client.get("/ui/sign-in").text)
        response = browser_client.post("/ui/sign-in/dev", data={"csrf_token": token})
        assert response.status_code == 422
        assert "Select the role to sign in with" in response.text

    def test_is_not_there_when_the_setting_is_off(self, app: FastAPI) -> None:
        with TestClient(app, follow_redirects=False) as client:
            page = client.get("/ui/sign-in")
            assert "Development sign-in" not in page.text
            # No form, so no token to send: refused either way, and nobody is signed in.
            response = client.post("/ui/sign-in/dev", data={"csrf_token": "guess", "role": "node-admin"})
            assert response.status_code in (403, 404)
            assert response.headers["content-type"].startswith("text/html")
            assert client.get("/ui/agreements").status_code == 401

    @pytest.mark.parametrize("base_url", ["https://rcc.example.org", "http://10.0.0.5:8000", "http://192.168.1.2"])
    def test_settings_refuse_it_unless_the_base_url_is_loopback(self, tmp_path: Path, base_url: str) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings(data_dir=tmp_path, base_url=base_url, ui_dev_signin=True)
        assert "ui_dev_signin" in caught.value.problems

    @pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "http://localhost:8001", "http://[::1]:8002"])
    def test_settings_allow_it_on_loopback(self, tmp_path: Path, base_url: str) -> None:
        assert load_settings(data_dir=tmp_path, base_url=base_url, ui_dev_signin=True).ui_dev_signin


class TestSessionCookie:
    def test_is_http_only_same_site_lax_for_the_pages_only_and_not_secure_on_http(
        self, browser_client: TestClient
    ) -> None:
        cookie = _cookie_header(browser_client.get("/ui/sign-in")).lower()
        assert cookie.startswith("rcc_ui_session=")
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/ui" in cookie
        assert "secure" not in cookie

    def test_is_secure_when_the_node_is_served_over_https(
        self, tmp_path: Path, migrated_db_url: str, keys: KeyRing
    ) -> None:
        settings = load_settings(
            data_dir=tmp_path, node_id="rcc-test", database_url=migrated_db_url, base_url="https://rcc.example.org"
        )
        engine = make_engine(settings.effective_database_url)
        claim_database(engine, settings.node_id)
        try:
            with TestClient(create_app(settings, keys=keys, engine=engine)) as client:
                cookie = _cookie_header(client.get("/ui/sign-in")).lower()
        finally:
            engine.dispose()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie

    def test_a_cookie_signed_by_another_node_is_worthless(
        self, browser_client: TestClient, ui_settings: Settings
    ) -> None:
        dev_sign_in(browser_client, "governance")
        cookie = browser_client.cookies.get("rcc_ui_session")
        other_engine = make_engine(ui_settings.effective_database_url)
        try:
            other = create_app(ui_settings, keys=KeyRing.generate(), engine=other_engine)
            with TestClient(other, follow_redirects=False) as client:
                client.cookies.set("rcc_ui_session", cookie or "", path="/ui")
                assert client.get("/ui/audit").status_code == 401
        finally:
            other_engine.dispose()

    def test_pages_carry_security_headers(self, browser_client: TestClient) -> None:
        headers = browser_client.get("/ui/sign-in").headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"


class TestCsrf:
    def test_a_form_posted_without_the_token_is_refused(self, browser_client: TestClient) -> None:
        dev_sign_in(browser_client, "commissioner")
        response = browser_client.post("/ui/search", data={"age": "14", "sex": "female", "home_la": "E10000016"})
        assert response.status_code == 403
        assert "This form has expired" in response.text

    def test_a_wrong_token_is_refused(self, browser_client: TestClient) -> None:
        dev_sign_in(browser_client, "commissioner")
        response = browser_client.post("/ui/search", data={"csrf_token": "x" * 43, "age": "14"})
        assert response.status_code == 403

    def test_the_token_of_another_session_is_refused(self, browser_client: TestClient, ui_app: FastAPI) -> None:
        with TestClient(ui_app, follow_redirects=False) as attacker:
            dev_sign_in(attacker, "commissioner")
            stolen = csrf_of(attacker.get("/ui/search").text)
        dev_sign_in(browser_client, "commissioner")
        assert browser_client.post("/ui/search", data={"csrf_token": stolen, "age": "14"}).status_code == 403

    def test_sign_out_needs_the_token_and_then_ends_the_session(self, browser_client: TestClient) -> None:
        dev_sign_in(browser_client, "governance")
        assert browser_client.post("/ui/sign-out", data={}).status_code == 403
        assert browser_client.get("/ui/audit").status_code == 200  # still signed in
        token = csrf_of(browser_client.get("/ui/audit").text)
        assert browser_client.post("/ui/sign-out", data={"csrf_token": token}).status_code == 200
        assert browser_client.get("/ui/audit").status_code == 401

    def test_signing_in_renews_the_token(self, browser_client: TestClient) -> None:
        before = csrf_of(browser_client.get("/ui/sign-in").text)
        dev_sign_in(browser_client, "governance")
        assert csrf_of(browser_client.get("/ui/audit").text) != before


class TestRoles:
    def test_a_page_asks_a_person_who_is_not_signed_in_to_sign_in(self, browser_client: TestClient) -> None:
        response = browser_client.get("/ui/agreements")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert 'href="/ui/sign-in?next=/ui/agreements"' in response.text

    @pytest.mark.parametrize(
        ("role", "path", "status"),
        [
            ("commissioner", "/ui/search", 200),
            ("commissioner", "/ui/audit", 403),
            ("commissioner", "/ui/agreements", 403),
            ("analyst", "/ui/secure-beds?scope=region", 200),
            ("analyst", "/ui/search", 403),
            ("governance", "/ui/audit", 200),
            ("governance", "/ui/agreements", 200),
            ("governance", "/ui/secure-beds", 403),
            ("node-admin", "/ui/agreements", 200),
            ("node-admin", "/ui/audit", 403),
            ("publisher", "/ui/fee-caps", 200),
            ("provider", "/ui/search", 403),
        ],
    )
    def test_each_page_opens_for_its_roles_only(
        self, browser_client: TestClient, role: str, path: str, status: int
    ) -> None:
        dev_sign_in(browser_client, role)
        response = browser_client.get(path)
        assert response.status_code == status, response.text
        if status == 403:
            assert "Your role does not open this page" in response.text

    def test_an_api_token_does_not_open_a_page(self, browser_client: TestClient, ui_app: FastAPI) -> None:
        assert browser_client.get("/ui/audit", headers=bearer(ui_app, "governance")).status_code == 401

    def test_every_page_view_is_audited_with_the_person_and_the_page(
        self, browser_client: TestClient, ui_app: FastAPI
    ) -> None:
        dev_sign_in(browser_client, "governance")
        browser_client.get("/ui/fee-caps", headers={"x-request-id": "ui-audit-1"})
        browser_client.get("/ui/search", headers={"x-request-id": "ui-audit-2"})
        sequence_pending(ui_app.state.node)
        with TestClient(ui_app) as api:
            items = api.get("/v1/audit/entries", params={"limit": 1000}, headers=bearer(ui_app, "governance")).json()
        entries = {i["entry"]["request_id"]: i["entry"] for i in items["items"]}
        viewed, refused = entries["ui-audit-1"], entries["ui-audit-2"]
        assert (viewed["action"], viewed["actor_type"], viewed["actor_id"]) == ("ui.fee_caps", "user", "dev-governance")
        assert viewed["roles"] == ["governance"] and viewed["status"] == 200
        assert viewed["issuer"] == "http://127.0.0.1:8000#dev-sign-in"
        assert (refused["action"], refused["status"], refused["decision"]) == ("ui.search", 403, "deny")
        assert refused["reason"] == "missing-role"


class TestSearch:
    @pytest.mark.parametrize(
        ("typed", "code"),
        [("Kent (E10000016)", "E10000016"), ("kent", "E10000016"), ("E10000016", "E10000016"), ("Atlantis", None)],
    )
    def test_the_home_la_is_found_by_name_or_code(self, typed: str, code: str | None) -> None:
        assert resolve_la(typed) == code

    def test_a_search_answers_with_each_region_asked(self, browser_client: TestClient) -> None:
        dev_sign_in(browser_client, "commissioner")
        token = csrf_of(browser_client.get("/ui/search").text)
        form = {
            "csrf_token": token,
            "age": "14",
            "sex": "female",
            "home_la": "Kent (E10000016)",
            "needs": ["self-harm", "cse-risk"],
            "needed_by": "2030-01-01",
            "reach": "region",
            "purpose": "placement-search",
        }
        response = browser_client.post("/ui/search", data=form, headers={"x-request-id": "ui-search-1"})
        assert response.status_code == 200, response.text
        assert 'data-node="rcc-test" data-outcome="Answered"' in response.text
        assert "0 places found" in response.text
        assert 'value="self-harm" checked' in response.text  # the form keeps what was asked

    def test_the_search_criteria_stay_out_of_the_audit_entry(self, browser_client: TestClient, ui_app: FastAPI) -> None:
        self.test_a_search_answers_with_each_region_asked(browser_client)
        sequence_pending(ui_app.state.node)
        with TestClient(ui_app) as api:
            items = api.get("/v1/audit/entries", params={"limit": 1000}, headers=bearer(ui_app, "governance")).json()
        entry = next(i["entry"] for i in items["items"] if i["entry"]["request_id"] == "ui-search-1")
        assert (entry["action"], entry["dataset"], entry["purpose"]) == (
            "ui.search_results",
            "capacity.vacancies",
            "placement-search",
        )
        assert entry["query_sha256"] is None  # posted, never in the URL
        text = json.dumps(entry)
        assert "self-harm" not in text and "E10000016" not in text and "female" not in text


class TestErrorPages:
    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/ui/agreements/no-such-agreement", 404),
            ("/ui/agreements/bad%20id", 422),
            ("/ui/audit/entries/999999", 422),
            ("/ui/audit/entries/-1", 422),
            ("/ui/audit?since=yesterday", 422),
            ("/ui/audit?decision=maybe", 422),
            ("/ui/audit?cursor=not-ours", 422),
            ("/ui/fee-caps?setting_type=castle", 422),
            ("/ui/secure-beds?scope=galaxy", 403),
            ("/ui/no-such-page", 404),
            ("/ui/static/app.py", 404),
            ("/ui/static/..%2F..%2Fapp.py", 404),
        ],
    )
    def test_bad_input_is_an_html_page_never_a_server_error(
        self, browser_client: TestClient, path: str, status: int
    ) -> None:
        dev_sign_in(browser_client, "governance")
        response = browser_client.get(path)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("text/html")

    def test_a_bad_search_shows_what_to_correct(self, browser_client: TestClient) -> None:
        dev_sign_in(browser_client, "commissioner")
        token = csrf_of(browser_client.get("/ui/search").text)
        response = browser_client.post(
            "/ui/search",
            data={"csrf_token": token, "age": "fourteen", "home_la": "Atlantis", "max_weekly_fee": "lots"},
        )
        assert response.status_code == 422
        for message in ("Enter the child&#39;s age", "home local authority", "Select the child&#39;s sex"):
            assert message in response.text
        assert 'value="fourteen"' in response.text  # what was typed is kept

    def test_api_errors_stay_problem_json(self, browser_client: TestClient) -> None:
        response = browser_client.get("/v1/whoami")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


# ------------------------------------------------------------------------------------------- OpenID Connect

ISSUER = "https://idp.example.org"
CLIENT_ID = "rcc-pages"


class FakeIdentityProvider:
    """An OpenID Connect provider behind an httpx MockTransport: discovery, and a token endpoint that checks PKCE."""

    def __init__(self, tmp_path: Path) -> None:
        self.key = ed25519_pair("idp-1")
        self.jwks_file = write_jwks(tmp_path / "idp-jwks.json", self.key)
        self.codes: dict[str, dict[str, str]] = {}
        self.nonce_override: str | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def authorize(self, url: str, *, groups: list[str]) -> tuple[str, str]:
        """What the provider does after the person signs in there: a code bound to the PKCE challenge."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256" and query["scope"] == "openid"
        code = f"code-{len(self.codes)}"
        self.codes[code] = {**query, "groups": json.dumps(groups)}
        return code, query["state"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                },
            )
        if request.url.path == "/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest())
            if challenge.rstrip(b"=").decode() != grant["code_challenge"]:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "PKCE"})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "aud": CLIENT_ID,
                "sub": "alice@council.example",
                "iat": now,
                "exp": now + 300,
                "nonce": self.nonce_override or grant["nonce"],
                "groups": json.loads(grant["groups"]),
            }
            id_token = jwt.encode(claims, self.key.private, algorithm="EdDSA", headers={"kid": "idp-1"})
            return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer", "id_token": id_token})
        return httpx.Response(404)


@pytest.fixture
def idp(tmp_path: Path) -> FakeIdentityProvider:
    return FakeIdentityProvider(tmp_path)


@pytest.fixture
def oidc_client(tmp_path: Path, migrated_db_url: str, keys: KeyRing, idp: FakeIdentityProvider):
    settings = load_settings(
        data_dir=tmp_path,
        node_id="rcc-test",
        database_url=migrated_db_url,
        base_url="http://127.0.0.1:8000",
        oidc_issuers=[
            {
                "issuer": ISSUER,
                "audience": CLIENT_ID,
                "jwks_file": str(idp.jwks_file),
                "roles_claim": "groups",
                "role_map": {"rcc-governance": ["governance"]},
            }
        ],
    )
    engine = make_engine(settings.effective_database_url)
    claim_database(engine, settings.node_id)
    app = create_app(settings, keys=keys, engine=engine)
    node = app.state.node
    node.extensions[EXTENSION] = OidcSignIn(node, client_kwargs={"transport": idp.transport()})
    with TestClient(app, follow_redirects=False) as client:
        yield client
    engine.dispose()


class TestOidcSignIn:
    def _start(self, client: TestClient) -> str:
        page = client.get("/ui/sign-in")
        assert f"Sign in with {ISSUER}" in page.text
        response = client.get("/ui/sign-in/oidc/0", params={"next": "/ui/audit"})
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(f"{ISSUER}/authorize?")
        return location

    def test_authorization_code_with_pkce_signs_in_with_the_mapped_roles(
        self, oidc_client: TestClient, idp: FakeIdentityProvider
    ) -> None:
        code, state = idp.authorize(self._start(oidc_client), groups=["rcc-governance", "unmapped"])
        response = oidc_client.get("/ui/sign-in/callback", params={"code": code, "state": state})
        assert (response.status_code, response.headers["location"]) == (303, "/ui/audit")
        page = oidc_client.get("/ui/audit")
        assert page.status_code == 200
        assert "alice@council.example" in page.text and "(governance)" in page.text

    def test_a_callback_with_another_state_is_refused(self, oidc_client: TestClient, idp: FakeIdentityProvider) -> None:
        code, _ = idp.authorize(self._start(oidc_client), groups=["rcc-governance"])
        response = oidc_client.get("/ui/sign-in/callback", params={"code": code, "state": "forged"})
        assert response.status_code == 400
        assert oidc_client.get("/ui/audit").status_code == 401

    def test_an_id_token_for_another_sign_in_is_refused(
        self, oidc_client: TestClient, idp: FakeIdentityProvider
    ) -> None:
        code, state = idp.authorize(self._start(oidc_client), groups=["rcc-governance"])
        idp.nonce_override = "replayed"
        response = oidc_client.get("/ui/sign-in/callback", params={"code": code, "state": state})
        assert response.status_code == 400
        assert "Sign-in failed" in response.text

    def test_a_person_without_a_mapped_role_gets_no_page(
        self, oidc_client: TestClient, idp: FakeIdentityProvider
    ) -> None:
        code, state = idp.authorize(self._start(oidc_client), groups=["someone-else"])
        response = oidc_client.get("/ui/sign-in/callback", params={"code": code, "state": state})
        assert response.status_code == 403
        assert oidc_client.get("/ui/fee-caps").status_code == 403

    def test_no_such_issuer_is_a_404_page(self, oidc_client: TestClient) -> None:
        assert oidc_client.get("/ui/sign-in/oidc/7").status_code == 404

    def test_a_callback_nobody_started_is_refused(self, browser_client: TestClient) -> None:
        response = browser_client.get("/ui/sign-in/callback", params={"code": "x", "state": "y"})
        assert response.status_code == 400
