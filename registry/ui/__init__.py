"""Web pages at ``/ui/`` for the people who do not use the API: commissioners, governance officers, analysts.

Server-rendered HTML (Jinja2 templates, a small hand-written stylesheet in GOV.UK Design System conventions,
no build step) over the *same* service functions the API routes call: the pages hold no logic of their own,
so a page can never show something the API would not. People sign in with the node's trusted OpenID Connect
issuer (or, on a local federation only, a development sign-in); the session cookie is HttpOnly, SameSite=Lax
and Secure on https, every form carries a CSRF token, and every page view or action is audited like an API call.

Modules: ``session`` (who is signed in, role checks for pages, CSRF), ``oidc`` (authorization code + PKCE with
authlib), ``render`` (templates, HTML error pages), ``chart`` (server-rendered SVG), one module of routes per
area (``signin``, ``capacity``, ``agreements``, ``audit``, ``feecaps``, ``assets``) and ``install``.

Part of the top (composition) layer with ``registry.app`` and ``registry.cli``: it may import every package.
"""
