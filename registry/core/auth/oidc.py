"""Tokens from trusted external OpenID Connect issuers (a council's identity provider), checked with PyJWT.

For each issuer in ``Settings.oidc_issuers``: the token's ``iss`` must be the issuer exactly, its ``aud``
must include the configured audience, ``exp``/``nbf``/``iat`` are checked with at most 60 s of clock skew,
and the signature must verify with a key from the issuer's JWKS under an *asymmetric* algorithm that key
declares (or, if it declares none, one its key type implies) — never ``none``, never HMAC, so a public key
can never be abused as an HMAC secret. The JWKS is loaded on first use and reloaded when a token names an
unknown ``kid``, at most once per :data:`REFRESH_INTERVAL` per issuer, so a flood of made-up kids cannot
make the node hammer the identity provider.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from registry.core.auth.errors import TokenInvalid
from registry.core.auth.jwks import ASYMMETRIC_ALGORITHMS, key_algorithms
from registry.core.auth.principal import Principal
from registry.core.errors import ServiceUnavailable
from registry.core.settings import OidcIssuer
from registry.core.signing import jwt_refusal

REFRESH_INTERVAL = 30.0
MAX_SKEW_SECONDS = 60
log = logging.getLogger("rcc.auth.oidc")

JwksFetcher = Callable[[str], dict[str, Any]]


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWKS document (short timeout: a slow identity provider must not hold requests for long)."""
    response = httpx.get(url, timeout=5.0, follow_redirects=False, headers={"Accept": "application/json"})
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    return document


@dataclass(frozen=True)
class _Key:
    kid: str | None
    algorithms: tuple[str, ...]
    key: Any


def _parse_jwks(document: dict[str, Any]) -> list[_Key]:
    keys: list[_Key] = []
    for jwk in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        algorithms = key_algorithms(jwk)
        if not algorithms:
            continue  # symmetric, unknown or ill-declared keys are never trusted
        try:
            parsed = jwt.PyJWK(jwk, algorithm=algorithms[0]).key
        except jwt.PyJWTError:
            continue
        kid = jwk.get("kid")
        keys.append(_Key(kid if isinstance(kid, str) else None, algorithms, parsed))
    return keys


@dataclass
class _IssuerKeys:
    config: OidcIssuer
    keys: list[_Key] = field(default_factory=list)
    loaded_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def map_roles(config: OidcIssuer, claims: dict[str, Any]) -> frozenset[str]:
    """The node roles an external token's roles claim maps to (unknown values grant nothing)."""
    raw = _claim(claims, config.roles_claim)
    values = (
        raw.split() if isinstance(raw, str) else [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else []
    )
    granted: set[str] = set()
    for value in values:
        granted.update(role.value for role in config.role_map.get(value, []))
    return frozenset(granted)


class OidcVerifier:
    """Validates tokens of the configured external issuers; one per node, safe to share across threads."""

    def __init__(self, issuers: list[OidcIssuer], *, fetch: JwksFetcher = fetch_jwks) -> None:
        self._issuers = {issuer.issuer: _IssuerKeys(issuer) for issuer in issuers}
        self._fetch = fetch

    def trusts(self, issuer: str) -> bool:
        """True if ``issuer`` is one of the configured external issuers."""
        return issuer in self._issuers

    def _load(self, entry: _IssuerKeys, *, force: bool) -> None:
        with entry.lock:
            now = time.monotonic()
            if entry.loaded_at is not None and (not force or now - entry.loaded_at < REFRESH_INTERVAL):
                return
            config = entry.config
            try:
                if config.jwks_file is not None:
                    document = json.loads(config.jwks_file.read_text(encoding="utf-8"))
                else:
                    assert config.jwks_url is not None  # noqa: S101 - settings require one of the two
                    document = self._fetch(config.jwks_url)
                keys = _parse_jwks(document if isinstance(document, dict) else {})
            except (OSError, ValueError, httpx.HTTPError) as exc:
                log.warning("cannot load the JWKS of issuer %s: %s", config.issuer, exc)
                entry.loaded_at = now  # throttle retries as well
                return
            entry.keys, entry.loaded_at = keys, now

    def _candidates(self, entry: _IssuerKeys, kid: str | None) -> list[_Key]:
        if kid is None:
            return entry.keys if len(entry.keys) == 1 else []
        return [key for key in entry.keys if key.kid == kid]

    def verify(self, token: str, issuer: str) -> Principal:
        """The principal an external token stands for, or :class:`TokenInvalid` naming the failed check.

        May fetch the issuer's JWKS (blocking, bounded by a short timeout): call it off the event loop.
        """
        entry = self._issuers.get(issuer)
        if entry is None:
            raise TokenInvalid("unknown-issuer", "tokens from this issuer are not trusted here")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed", "token is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenInvalid("bad-algorithm", f"algorithm {alg!r} is not accepted")
        kid = kid if isinstance(kid, str) else None
        self._load(entry, force=False)
        candidates = self._candidates(entry, kid)
        if not candidates:
            self._load(entry, force=True)
            candidates = self._candidates(entry, kid)
        if not candidates:
            if not entry.keys:
                raise ServiceUnavailable(f"the keys of issuer {issuer} cannot be loaded now", issuer=issuer)
            raise TokenInvalid("unknown-key", "no key of the issuer matches the token's kid")
        key = candidates[0]
        if alg not in key.algorithms:
            raise TokenInvalid("bad-algorithm", f"algorithm {alg!r} is not declared for this key")
        config = entry.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                leeway=MAX_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(*jwt_refusal(exc, immature="not-yet-valid")) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenInvalid("malformed", "token's sub is not a string")
        jti = claims.get("jti")
        return Principal(
            subject=subject,
            actor_type="user",
            roles=map_roles(config, claims),
            issuer=config.issuer,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            token_id=jti if isinstance(jti, str) else None,
        )
