"""Real nodes that hold agreements: South East, Greater Manchester and the national node (the directory operator),
each an ``rcc-node serve`` process on the run's database engine, with a signed directory that also lists London —
a member whose keys the test holds (an active and a retired one) and that runs no node.

Federated requests and agreement signatures made *by the test* use `cryptography` directly (``tests.support``),
never the product's signing code, so every happy path is also an independent check of the wire format.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.core.keys import KeyRing
from tests.support import jose
from tests.support.databases import engine_name, fresh_database
from tests.support.federation import (
    PeerIdentity,
    bearer,
    configure,
    directory,
    jwk_of,
    sign,
    spec_entry,
    token,
    write_json,
)
from tests.support.nodes import NodeSpec, ServedNode, free_port, init_node, start_node
from tests.support.tokens import bearer as admin_bearer

SE, GM, NAT, LDN = "rcc-south-east", "rcc-greater-manchester", "rcc-national", "rcc-london"
START_TIMEOUT = 120.0  # a loaded 2-core CI machine can take many seconds to import the app
AGREEMENT_TYP = "rcc-agreement+jws"


def in_parallel(*jobs: Callable[[], Any]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


@dataclass
class AgreementNodes:
    """The running federation and what the test needs to act as each member."""

    tmp: Path
    specs: dict[str, NodeSpec]
    nodes: dict[str, ServedNode]
    london: PeerIdentity
    directory_path: Path
    admin: dict[str, dict[str, str]] = field(default_factory=dict)
    governance: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, node_id: str, path: str) -> str:
        return self.specs[node_id].base_url + path

    def key(self, node_id: str) -> Ed25519PrivateKey:
        """The member's active signing key (London's is held by the test; the others' are read from disk)."""
        if node_id == LDN:
            return self.london.active
        private = KeyRing.load(self.specs[node_id].data_dir / "keys").active.private
        assert private is not None
        return private

    def jwks(self, node_id: str) -> dict[str, Any]:
        if node_id == LDN:
            return {"keys": [self.london.jwk(self.london.active, "active")]}
        jwks: dict[str, Any] = httpx.get(self.url(node_id, "/.well-known/jwks.json")).json()
        return jwks

    # --- the local API, as each node's admin -----------------------------------------------------------

    def api(self, node_id: str, method: str, path: str, body: Any = None, *, expect: int | None = 200) -> Any:
        response = httpx.request(method, self.url(node_id, path), json=body, headers=self.admin[node_id], timeout=30)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path} on {node_id}: {response.text}"
        return response.json()

    def state(self, node_id: str, agreement_id: str) -> str | None:
        response = httpx.get(self.url(node_id, f"/v1/agreements/{agreement_id}"), headers=self.admin[node_id])
        return response.json()["state"] if response.status_code == 200 else None

    # --- the federation API, as one member calling another -------------------------------------------

    def federated(
        self,
        caller: str,
        target: str,
        path: str,
        *,
        purpose: str = "audit-witnessing",
        agreement: str | None = None,
        method: str = "GET",
        body: Any = None,
    ) -> httpx.Response:
        """A request from ``caller`` to ``target`` signed with the caller's own key (made by the test)."""
        url = self.url(target, path)
        raw = b"" if body is None else json.dumps(body).encode()
        value, _ = token(
            self.key(caller),
            iss=caller,
            aud=target,
            url=url,
            method=method,
            body=raw,
            purpose=purpose,
            agreement=agreement,
        )
        headers = {**bearer(value), "content-type": "application/json"}
        return httpx.request(method, url, headers=headers, content=raw, timeout=30)

    def restart(self, node_id: str) -> ServedNode:
        self.nodes[node_id].stop()
        self.nodes[node_id] = start_node(self.specs[node_id], timeout=START_TIMEOUT)
        return self.nodes[node_id]


def sign_document(document: dict[str, Any], key: Ed25519PrivateKey, typ: str = AGREEMENT_TYP) -> str:
    """An RFC 7515 Appendix F detached JWS over JCS(document), made with `cryptography` (never the product)."""
    header = {"alg": "EdDSA", "kid": jwk_of(key)["kid"], "typ": typ}
    head = jose.b64e(json.dumps(header).encode())
    signature = key.sign(f"{head}.{jose.b64e(jose.jcs(document))}".encode())
    return f"{head}..{jose.b64e(signature)}"


@contextmanager
def agreement_nodes(tmp: Path) -> Iterator[AgreementNodes]:
    """Start SE, GM and the national node with a directory signed by the national node's key; stop them after."""
    with ExitStack() as stack:
        urls = {
            node_id: stack.enter_context(fresh_database(tmp / f"{node_id}-db")) if engine_name() == "postgres" else None
            for node_id in (SE, GM, NAT)
        }
        se, gm, nat = in_parallel(
            lambda: init_node(tmp, SE, region_code="E12000008", database_url=urls[SE], name="South East RCC"),
            lambda: init_node(tmp, GM, region_code="E12000002", database_url=urls[GM], name="Greater Manchester RCC"),
            lambda: init_node(tmp, NAT, kind="national", region_code=None, database_url=urls[NAT], name="National"),
        )
        specs = {s.node_id: s for s in (se, gm, nat)}
        london = PeerIdentity(
            LDN,
            base_url=f"http://127.0.0.1:{free_port()}",
            region_code="E12000007",
            retired=[Ed25519PrivateKey.generate()],
        )
        operator = KeyRing.load(nat.data_dir / "keys")
        operator_jwks = write_json(tmp / "operator.jwks.json", operator.jwks())
        directory_path = write_json(
            tmp / "directory.json",
            sign(directory([*(spec_entry(s) for s in (se, gm, nat)), london.entry()], operator=NAT), operator),
        )
        for spec in (se, gm, nat):
            configure(
                spec,
                operator_jwks=operator_jwks,
                directory_file=directory_path,
                directory_refresh_seconds=0.5,
                directory_operator=spec is nat,
            )
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(start_node, s, timeout=START_TIMEOUT) for s in (se, gm, nat)]
        for future in futures:  # stop every node that did start, even if another one failed
            if future.exception() is None:
                stack.callback(future.result().stop)
        fed = AgreementNodes(tmp, specs, {f.result().spec.node_id: f.result() for f in futures}, london, directory_path)
        try:
            for node_id, spec in specs.items():
                fed.admin[node_id] = admin_bearer(spec, "node-admin", subject="agreements-admin")
                fed.governance[node_id] = admin_bearer(spec, "governance", subject="agreements-dpo")
            yield fed
        finally:
            for node in fed.nodes.values():  # a restarted node is a new process: stop that one too
                node.stop()
