"""Local users and roles: who may call this node, and with which roles.

Machine clients get short-lived access tokens from the node's OAuth 2.0 token endpoint (client credentials,
``client_secret_basic`` or ``private_key_jwt``, built on authlib's server components); people come with tokens
from a trusted external OpenID Connect issuer whose claim is mapped to roles. Either way a request becomes
a :class:`~registry.core.auth.principal.Principal`, and every route declares the roles it admits with
:func:`~registry.core.auth.deps.require` (default deny, checked by a test over every route).

Modules: ``principal`` (the caller), ``models`` (clients table and views), ``service`` (clients, secrets,
lock-out, used assertion ids), ``tokens`` (node-issued JWTs), ``oidc`` (external issuers), ``jwks`` (which
algorithms a public key may use), ``server`` (authlib adapted to Starlette), ``deps`` (the FastAPI
dependencies, role types and the route walk), ``errors`` (401/403 with RFC 6750 challenges), ``api``
(``/oauth/token``, ``/v1/whoami``, :func:`~registry.core.auth.api.install`).

Part of ``registry.core``: imports only other core modules, ``schemas`` and third-party packages.
"""
