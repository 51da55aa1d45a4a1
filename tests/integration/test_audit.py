"""A real node with three uvicorn workers: concurrent requests give a gap-free, duplicate-free, signed log.

Runs on the run's engine (SQLite by default; PostgreSQL with RCC_TEST_ENGINE=postgres), so several worker
processes, each with its own writer and sequencer, share one database exactly as in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from registry.core.audit.log import ENTRY
from registry.core.db import make_engine
from registry.core.settings import load_settings
from schemas.vocabulary import Role
from tests.registry.core.audit import rfc9162
from tests.support import jose
from tests.support.databases import engine_name, fresh_database
from tests.support.nodes import ServedNode, init_node, invoke_cli, start_node, wait_for
from tests.support.tokens import access_token

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
CLIENTS, REQUESTS_EACH = 8, 30


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    tmp = tmp_path_factory.mktemp("audit")
    with fresh_database(tmp) as url:
        spec = init_node(tmp, "rcc-audit", database_url=url if engine_name() == "postgres" else None)
        served = start_node(spec, workers=3, timeout=120)
        try:
            yield served
        finally:
            served.stop()


@pytest.fixture(scope="module")
def gov(node: ServedNode) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(node, Role.governance, subject='dpo')}"}


def signed_head(http: httpx.Client, gov: dict[str, str], at_least: int) -> dict:
    """Poll until the signed tree head covers ``at_least`` entries (the sequencers run in the background)."""

    def covering() -> dict | None:
        body: dict = http.get("/v1/audit/tree-head", headers=gov).json()
        return body if body["tree_head"]["tree_size"] >= at_least else None

    head: dict = wait_for(covering, what=f"a signed tree head of {at_least} entries")
    return head


def all_entries(http: httpx.Client, gov: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    params: dict[str, object] = {"limit": 1000}
    while True:
        page = http.get("/v1/audit/entries", params=params, headers=gov).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


def test_concurrent_requests_on_three_workers_give_one_gap_free_signed_log(node: ServedNode, gov) -> None:
    def client(n: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=node.base_url, timeout=30) as http:
            for i in range(REQUESTS_EACH):
                request_id = f"c{n}-{i}"
                path = "/.well-known/jwks.json" if i % 2 else "/healthz"
                assert http.get(path, headers={"x-request-id": request_id}).status_code == 200
                ids.append(request_id)
        return ids

    with ThreadPoolExecutor(CLIENTS) as pool:
        sent = [rid for ids in pool.map(client, range(CLIENTS)) for rid in ids]

    with httpx.Client(base_url=node.base_url, timeout=30) as http:
        # Wait for a head that covers every request sent, not merely as many entries as were sent: the log also
        # holds the start-up probes, the token requests and these polls, so a head of len(sent) entries can
        # still leave some of the last requests waiting for the next sequencer run.
        def covering_all_sent() -> tuple[dict, list[dict]] | None:
            head: dict = http.get("/v1/audit/tree-head", headers=gov).json()
            items = [i for i in all_entries(http, gov) if i["index"] < head["tree_head"]["tree_size"]]
            recorded = {i["entry"]["request_id"] for i in items}
            return (head, items) if recorded >= set(sent) else None

        head, items = wait_for(covering_all_sent, what="a signed tree head covering every request sent")
        jwks = http.get("/.well-known/jwks.json").json()

    size = head["tree_head"]["tree_size"]
    assert [i["index"] for i in items] == list(range(size))  # gap-free, duplicate-free
    recorded = [i["entry"]["request_id"] for i in items]
    assert sorted(r for r in recorded if r in set(sent)) == sorted(sent)  # each request exactly once
    leaves = [rfc9162.leaf(i["entry"]) for i in items]
    assert [i["leaf_hash"] for i in items] == [leaf.hex() for leaf in leaves]
    assert rfc9162.root(leaves).hex() == head["tree_head"]["root_hash"]
    jose.verify_detached(head["tree_head"], head["signature"], jwks, "rcc-tree-head+jws")


def test_heads_stay_consistent_as_the_log_grows(node: ServedNode, gov) -> None:
    with httpx.Client(base_url=node.base_url, timeout=30) as http:
        first = signed_head(http, gov, 1)["tree_head"]
        for _ in range(10):
            http.get("/healthz")
        second = signed_head(http, gov, first["tree_size"] + 10)["tree_head"]
        proof = http.get(
            "/v1/audit/proof/consistency",
            params={"first": first["tree_size"], "second": second["tree_size"]},
            headers=gov,
        ).json()["proof"]
    assert rfc9162.verify_consistency(
        first["tree_size"],
        second["tree_size"],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        [bytes.fromhex(h) for h in proof],
    )


def test_cli_verifies_the_live_log_and_names_a_tampered_entry(node: ServedNode, gov) -> None:
    data_dir = str(node.spec.data_dir)
    with httpx.Client(base_url=node.base_url, timeout=30) as http:
        signed_head(http, gov, 1)
    result = invoke_cli(["audit", "verify", "--data-dir", data_dir, "--json"])
    report = json.loads(result.stdout)
    assert report["ok"] and report["tree_size"] >= CLIENTS * REQUESTS_EACH

    head = json.loads(invoke_cli(["audit", "tree-head", "--data-dir", data_dir, "--json"]).stdout)
    assert head["tree_head"]["node_id"] == "rcc-audit"

    settings = load_settings(data_dir=Path(data_dir))
    engine = make_engine(settings.effective_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(ENTRY).where(ENTRY.c.seq == 17).values(entry='{"edited":true}'))
    finally:
        engine.dispose()
    failed = invoke_cli(["audit", "verify", "--data-dir", data_dir], check=False)
    assert failed.returncode == 1
    assert "first bad index: 17" in failed.stderr
