"""Scheduled witnessing between real nodes: nobody calls ``POST /v1/audit/witness`` in this module.

South East and Greater Manchester (two uvicorn workers on one database) witness every second; the national
node, the directory operator, has the schedule off (``witness_interval_seconds = 0``). One agreement lets each
of the three witness the other two. Every check reads what the nodes did by themselves: the heads they keep,
their last round (``GET /v1/audit/witness``) and their audit logs. The test that stops a node runs last.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from registry.core.keys import KeyRing
from tests.agreements.conftest import document, grant
from tests.support.agreements import in_parallel
from tests.support.databases import engine_name, fresh_database
from tests.support.federation import configure, directory, sign, spec_entry, write_json
from tests.support.nodes import NodeSpec, ServedNode, init_node, run_cli, start_node, wait_for
from tests.support.tokens import bearer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SE, GM, NAT = "rcc-south-east", "rcc-greater-manchester", "rcc-national"
INTERVAL = 1  # the shortest the setting allows: rounds come quickly, the schedule's logic is the production one
GM_WORKERS = 2
START_TIMEOUT = 120.0  # a loaded 2-core machine can take many seconds to import the app
WAIT = 120.0
AGREEMENT = "witnessing-all"
ROUND = "audit.witness_round"
TREE_HEAD_CALL = "GET /federation/v1/audit/tree-head"
SETTLED = {"first", "consistent", "unchanged"}


@dataclass
class Witnesses:
    """The running nodes and a governance officer's and an admin's headers on each."""

    specs: dict[str, NodeSpec]
    nodes: dict[str, ServedNode]
    governance: dict[str, dict[str, str]] = field(default_factory=dict)
    admin: dict[str, dict[str, str]] = field(default_factory=dict)
    active_from_round: dict[str, int] = field(default_factory=dict)

    def get(self, node_id: str, path: str, **params: str) -> Any:
        url = self.specs[node_id].base_url + path
        response = httpx.get(url, params=params, headers=self.governance[node_id], timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def state(self, node_id: str) -> dict[str, Any]:
        """``GET /v1/audit/witness`` on the node."""
        state: dict[str, Any] = self.get(node_id, "/v1/audit/witness")
        return state

    def kept(self, node_id: str) -> dict[str, dict[str, Any]]:
        """The last head the node keeps of each peer."""
        return {head["peer"]: head for head in self.state(node_id)["latest"]}

    def entries(self, node_id: str, **filters: str) -> list[dict[str, Any]]:
        body = self.get(node_id, "/v1/audit/entries", limit="1000", **filters)
        return [item["entry"] for item in body["items"]]

    def admin_call(self, node_id: str, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        url = self.specs[node_id].base_url + path
        response = httpx.request(method, url, json=body, headers=self.admin[node_id], timeout=30)
        assert response.status_code == expect, f"{method} {path} on {node_id}: {response.text}"
        return response.json()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnesses]:
    tmp = tmp_path_factory.mktemp("witness-schedule")
    with ExitStack() as stack:
        urls = {
            node_id: stack.enter_context(fresh_database(tmp / f"{node_id}-db")) if engine_name() == "postgres" else None
            for node_id in (SE, GM, NAT)
        }
        se, gm, nat = in_parallel(
            lambda: init_node(tmp, SE, region_code="E12000008", database_url=urls[SE]),
            lambda: init_node(tmp, GM, region_code="E12000002", database_url=urls[GM]),
            lambda: init_node(tmp, NAT, kind="national", region_code=None, database_url=urls[NAT]),
        )
        operator = KeyRing.load(nat.data_dir / "keys")
        jwks = write_json(tmp / "operator.jwks.json", operator.jwks())
        path = write_json(
            tmp / "directory.json", sign(directory([spec_entry(s) for s in (se, gm, nat)], operator=NAT), operator)
        )
        for spec, interval in ((se, INTERVAL), (gm, INTERVAL), (nat, 0)):
            configure(
                spec,
                operator_jwks=jwks,
                directory_file=path,
                directory_refresh_seconds=0.5,
                directory_operator=spec is nat,
                witness_interval_seconds=interval,
            )
        started = in_parallel(
            lambda: start_node(se, timeout=START_TIMEOUT),
            lambda: start_node(gm, workers=GM_WORKERS, timeout=START_TIMEOUT),
            lambda: start_node(nat, timeout=START_TIMEOUT),
        )
        fed = Witnesses({s.node_id: s for s in (se, gm, nat)}, {n.spec.node_id: n for n in started})
        stack.callback(lambda: [node.stop() for node in fed.nodes.values()])  # restarted nodes too
        for node_id, spec in fed.specs.items():
            fed.governance[node_id] = bearer(spec, "governance", subject="witness-dpo")
            fed.admin[node_id] = bearer(spec, "node-admin", subject="witness-admin")
        _make_active(fed)
        for node_id in (SE, GM):  # rounds numbered above this started once every party held the agreement
            fed.active_from_round[node_id] = (fed.state(node_id)["last_round"] or {}).get("round", 0)
        yield fed


def _make_active(fed: Witnesses) -> None:
    """One agreement: each node may witness the other two. Drafted on SE, countersigned by GM and NAT."""
    parties = [SE, GM, NAT]
    grants = [grant(p, [q for q in parties if q != p], ["audit.tree-heads"], ["audit-witnessing"]) for p in parties]
    doc = document(
        AGREEMENT, parties, grants, valid_from="2026-01-01", valid_until="2030-12-31", review_by="2029-12-31"
    )
    fed.admin_call(SE, "POST", "/v1/agreements", doc, expect=201)
    fed.admin_call(SE, "POST", f"/v1/agreements/{AGREEMENT}/propose")
    fed.admin_call(GM, "POST", f"/v1/agreements/{AGREEMENT}/sign")
    last = fed.admin_call(NAT, "POST", f"/v1/agreements/{AGREEMENT}/sign")
    assert last["state"] == "active", last


def rounds(fed: Witnesses, node_id: str) -> list[dict[str, Any]]:
    """The node's scheduled rounds since the agreement was active everywhere, as its audit log records them."""
    recorded = [
        e for e in fed.entries(node_id, action=ROUND) if e["extra"]["witness_round"] > fed.active_from_round[node_id]
    ]
    return sorted(recorded, key=lambda e: int(e["extra"]["witness_round"]))


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def last_round_with(fed: Witnesses, node_id: str, peer: str, verdicts: set[str], after: int = 0) -> Any:
    """The node's last round if it has finished, is numbered above ``after`` and judged ``peer`` one of ``verdicts``."""
    last = fed.state(node_id)["last_round"]
    if not last or last["finished_at"] is None or last["round"] <= after:
        return None
    judged = {report["peer"]: report["verdict"] for report in last["reports"]}
    return last if judged.get(peer) in verdicts else None


class TestScheduledRounds:
    def test_a_node_keeps_its_peers_heads_and_they_advance_with_no_manual_round(self, fed: Witnesses) -> None:
        first = wait_for(lambda: fed.kept(GM).get(SE), timeout=WAIT, what="GM to keep a head of SE by itself")
        # Every round GM runs is a request on SE, so SE's log grows and GM's next head of it must extend the last.
        later = wait_for(
            lambda: (head := fed.kept(GM).get(SE)) is not None and head["tree_size"] > first["tree_size"] and head,
            timeout=WAIT,
            what="GM's head of SE to advance",
        )
        assert later["verdict"] == "consistent", later
        assert set(fed.kept(GM)) == {SE, NAT}
        wait_for(lambda: set(fed.kept(SE)) == {GM, NAT}, timeout=WAIT, what="SE to keep heads of GM and NAT")

        state = fed.state(GM)
        assert state["interval_seconds"] == INTERVAL
        assert state["inconsistencies"] == []
        last = state["last_round"]
        assert last["trigger"] == "schedule"
        assert stamp(state["next_due_at"]) == stamp(last["started_at"]) + timedelta(seconds=INTERVAL)

    def test_scheduled_rounds_are_audited_as_the_node_with_no_request_id(self, fed: Witnesses) -> None:
        recorded = wait_for(lambda: rounds(fed, GM), timeout=WAIT, what="a scheduled round in GM's audit log")
        for entry in recorded:
            assert (entry["actor_type"], entry["actor_id"], entry["request_id"]) == ("node", GM, None), entry
            assert (entry["direction"], entry["extra"]["trigger"]) == ("outbound", "schedule"), entry
        calls = fed.entries(GM, action=TREE_HEAD_CALL, peer=SE)
        assert calls, "GM's calls to SE are audited"
        numbers = {entry["extra"]["witness_round"] for entry in recorded}
        for call in calls:
            assert (call["actor_type"], call["actor_id"], call["request_id"]) == ("node", GM, None), call
            assert (call["dataset"], call["purpose"], call["agreement"]) == (
                "audit.tree-heads",
                "audit-witnessing",
                AGREEMENT,
            )
        assert numbers & {call["extra"]["witness_round"] for call in calls}  # the calls name their round
        # No person ran a round: the only round entries are the node's own.
        assert {entry["actor_type"] for entry in fed.entries(GM, action=ROUND)} == {"node"}

    def test_a_node_whose_interval_is_zero_runs_no_round(self, fed: Witnesses) -> None:
        # By the time GM has run a few rounds the national node would have run some too, were its schedule on.
        wait_for(lambda: len(rounds(fed, GM)) >= 3, timeout=WAIT, what="GM to run three rounds")
        state = fed.state(NAT)
        assert (state["interval_seconds"], state["last_round"], state["next_due_at"]) == (0, None, None)
        assert state["latest"] == []
        assert fed.entries(NAT, action=ROUND) == []
        assert fed.entries(NAT, action=TREE_HEAD_CALL) == []
        # It is still witnessed: its peers keep its heads.
        assert NAT in fed.kept(GM)

    def test_two_workers_run_one_round_at_a_time_and_none_fails(self, fed: Witnesses) -> None:
        def by_both_workers() -> list[dict[str, Any]] | None:
            recorded = rounds(fed, GM)
            return recorded if len({entry["extra"]["worker"] for entry in recorded}) >= GM_WORKERS else None

        # Each worker wakes at a random point of the jitter window: both win rounds soon enough.
        recorded = wait_for(by_both_workers, timeout=WAIT, what="rounds won by each of GM's two workers")
        numbers = [int(entry["extra"]["witness_round"]) for entry in recorded]
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), numbers  # none lost, none twice
        starts = [stamp(entry["extra"]["started_at"]) for entry in recorded]
        gaps = [later - earlier for earlier, later in pairwise(starts)]
        assert min(gaps) >= timedelta(seconds=INTERVAL), gaps  # never two rounds inside one interval
        for entry in recorded:
            # (A call may time out on a loaded machine: "unreachable" is an outcome, not a failed round.)
            assert not set(entry["extra"]["verdicts"]) & {"inconsistent", "unverified"}, entry
            assert entry["result_count"] == 2, entry  # SE and NAT, each asked once per round
        assert fed.state(GM)["inconsistencies"] == []
        assert "witnessing round failed" not in fed.nodes[GM].log()


class TestSetting:
    def test_a_bad_interval_refuses_to_start_the_node(self, fed: Witnesses) -> None:
        spec = fed.specs[NAT]
        env = {"RCC_WITNESS_INTERVAL_SECONDS": "0.2"}
        result = run_cli(["serve", "--data-dir", str(spec.data_dir), "--port", "1"], env=env, check=False)
        assert result.returncode != 0
        assert "witness_interval_seconds" in result.stderr + result.stdout


class TestOutage:
    """Stops and restarts a node: keep it last in the module."""

    def test_a_peer_that_is_down_is_unreachable_and_witnessed_again_once_back(self, fed: Witnesses) -> None:
        before = fed.kept(GM)[SE]
        fed.nodes[SE].stop()
        down = wait_for(
            lambda: last_round_with(fed, GM, SE, {"unreachable"}),
            timeout=WAIT,
            what="a round of GM that finds SE unreachable",
        )
        # The loop goes on: later rounds run while SE is still down, and NAT is still witnessed in them.
        still = wait_for(
            lambda: last_round_with(fed, GM, NAT, SETTLED, after=down["round"]),
            timeout=WAIT,
            what="a later round of GM",
        )
        assert {r["peer"]: r["verdict"] for r in still["reports"]}[SE] == "unreachable"
        unreachable = [c for c in fed.entries(GM, action=TREE_HEAD_CALL, peer=SE) if c["outcome"] == "unreachable"]
        assert unreachable and all(c["actor_type"] == "node" for c in unreachable)

        fed.nodes[SE] = start_node(fed.specs[SE], timeout=START_TIMEOUT)
        back = wait_for(
            lambda: last_round_with(fed, GM, SE, {"consistent"}, after=still["round"]),
            timeout=WAIT,
            what="GM to witness SE again",
        )
        assert back["error"] is None
        assert fed.kept(GM)[SE]["tree_size"] > before["tree_size"]
        assert fed.state(GM)["inconsistencies"] == []
