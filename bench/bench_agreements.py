"""Agreements between real nodes: what the policy check adds to a federated data request, and how long a proposal
or a revocation takes to reach the other party.

Run: ``.venv/bin/python bench/bench_agreements.py [--requests N]`` (about 40-60 s, most of it starting three
``rcc-node serve`` processes on 127.0.0.1 with SQLite; nothing else is contacted).

Measured side by side in one run, against the same node (South East), one request at a time over keep-alive:

1. ``GET /federation/v1/ping``: a signed, verified, replay-checked, audited call that serves no data.
2. ``GET /federation/v1/audit/tree-head`` permitted: the same plus the policy decision (``enforce_request``)
   and reading the signed tree head — what every data-serving federation route pays.
3. The same route refused (``no-agreement``): the policy decision and a 403 problem+json, no data read.
4. ``GET /v1/audit/tree-head`` locally with a governance token: what reading the signed tree head costs by itself.
5. ``POST /federation/v1/agreements/inbox`` re-sending a message already held (the idempotent path).
6. ``POST /v1/agreements/{id}/propose`` on SE until GM has acknowledged it (sign, commit, deliver, GM verifies
   and stores), and ``POST …/revoke`` likewise: the time for a change to take effect on both nodes.

Judged by: what the policy check adds to a federated call — refused (3) over ping (1), aim under 10% — the ratio
permitted data route / ping throughput (the rest is the tree-head read, compare 4), and the propose / revoke
round trips in ms. Latencies include the client making one Ed25519 request token per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.agreements.conftest import document, grant  # noqa: E402
from tests.support.agreements import GM, LDN, SE, AgreementNodes, agreement_nodes  # noqa: E402
from tests.support.federation import bearer, token  # noqa: E402

PING = "/federation/v1/ping"
TREE_HEAD = "/federation/v1/audit/tree-head"
INBOX = "/federation/v1/agreements/inbox"


def witnessing(agreement_id: str) -> dict[str, Any]:
    return document(
        agreement_id,
        [SE, GM],
        [
            grant(SE, [GM], ["audit.tree-heads"], ["audit-witnessing"]),
            grant(GM, [SE], ["audit.tree-heads"], ["audit-witnessing"]),
        ],
        valid_from="2026-01-01",
        valid_until="2030-12-31",
        review_by="2029-12-31",
    )


def timed(label: str, count: int, call: Callable[[int], int], expect: int) -> list[float]:
    """Run ``call(i)`` ``count`` times (after a short warm-up); every status must be ``expect``; ms per call."""
    for i in range(min(20, count)):
        call(-1 - i)
    samples: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        status = call(i)
        samples.append((time.perf_counter() - started) * 1000)
        if status != expect:
            raise SystemExit(f"{label}: HTTP {status}, expected {expect}")
    return samples


def federated(client: httpx.Client, fed: AgreementNodes, caller: str, path: str, **claims: Any) -> Callable[[int], int]:
    url = fed.url(SE, path)
    key = fed.key(caller)

    def call(_: int) -> int:
        value, _jti = token(key, iss=caller, aud=SE, url=url, purpose="audit-witnessing", **claims)
        return client.get(url, headers=bearer(value)).status_code

    return call


def report(rows: dict[str, list[float]]) -> None:
    print(f"{'operation':<46} {'median ms':>10} {'p90 ms':>9} {'n':>5}")
    for label, samples in rows.items():
        ordered = sorted(samples)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{label:<46} {statistics.median(samples):>10.2f} {p90:>9.2f} {len(samples):>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per federated operation")
    parser.add_argument("--changes", type=int, default=20, help="agreements proposed and revoked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rcc-bench-agreements-") as tmp, agreement_nodes(Path(tmp)) as fed:
        fed.api(SE, "POST", "/v1/agreements", witnessing("bench-witnessing"), expect=201)
        fed.api(SE, "POST", "/v1/agreements/bench-witnessing/propose")
        fed.api(GM, "POST", "/v1/agreements/bench-witnessing/sign")
        bundle = httpx.get(fed.url(GM, "/v1/agreements/bench-witnessing/bundle"), headers=fed.governance[GM]).json()
        held = bundle["versions"][0]
        message = {
            "agreement": "bench-witnessing",
            "version": 1,
            **{k: held[k] for k in ("document", "signatures", "events")},
        }

        rows: dict[str, list[float]] = {}
        with httpx.Client(timeout=30) as client:
            rows["ping (authenticated, no data)"] = timed("ping", args.requests, federated(client, fed, GM, PING), 200)
            rows["tree-head permitted (policy + data)"] = timed(
                "tree-head", args.requests, federated(client, fed, GM, TREE_HEAD, agreement="bench-witnessing"), 200
            )
            rows["tree-head refused (no-agreement)"] = timed(
                "refused", args.requests, federated(client, fed, LDN, TREE_HEAD), 403
            )
            local = fed.url(SE, "/v1/audit/tree-head")
            rows["local /v1/audit/tree-head (governance)"] = timed(
                "local", args.requests, lambda _: client.get(local, headers=fed.governance[SE]).status_code, 200
            )

            def resend(_: int) -> int:
                body = httpx.Request("POST", "http://x", json=message).content
                url = fed.url(SE, INBOX)
                value, _jti = token(
                    fed.key(GM), iss=GM, aud=SE, url=url, method="POST", body=body, purpose="audit-witnessing"
                )
                headers = {**bearer(value), "content-type": "application/json"}
                return client.post(url, content=body, headers=headers).status_code

            rows["inbox re-send of a held message"] = timed("inbox", max(args.requests // 3, 10), resend, 200)

            for i in range(args.changes):
                fed.api(SE, "POST", "/v1/agreements", witnessing(f"bench-change-{i}"), expect=201)

            def change(kind: str) -> Callable[[int], int]:
                def call(i: int) -> int:
                    if i < 0:
                        return 200  # no warm-up: each agreement can be proposed and revoked once
                    path = f"/v1/agreements/bench-change-{i}/{kind}"
                    body = {"reason": "bench"} if kind == "revoke" else None
                    answer = client.post(fed.url(SE, path), json=body, headers=fed.admin[SE])
                    states = {d["node_id"]: d["state"] for d in answer.json().get("deliveries", [])}
                    return answer.status_code if states == {GM: "delivered"} else 599

                return call

            rows["propose, until GM has stored it"] = timed("propose", args.changes, change("propose"), 200)
            rows["revoke, until GM has stored it"] = timed("revoke", args.changes, change("revoke"), 200)
        report(rows)
        ping = statistics.median(rows["ping (authenticated, no data)"])
        data = statistics.median(rows["tree-head permitted (policy + data)"])
        refused = statistics.median(rows["tree-head refused (no-agreement)"])
        added = refused - ping
        print(f"\npolicy check adds {added:.2f} ms to a federated call ({added / ping:.0%} of a ping; aim < 10%)")
        print(f"ratio permitted data route / ping throughput: {ping / data:.2f}x (the rest is the tree-head read)")


if __name__ == "__main__":
    main()
