"""``rcc-node federation up`` as a user runs it: four real nodes from one command, ready to search, stopped by Ctrl-C.

One federation is started for the module (it costs seconds: four ``rcc-node serve`` processes); the tests read
the one line of JSON it prints and talk to the nodes over HTTP. Signatures are checked with the independent
verifier in ``tests.support.jose``. The last test stops it with SIGINT, checks no node outlives it, and starts
it again on the same folder, which must reuse what the first run made.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from registry.cli.main import app
from schemas.vocabulary import PeerOutcome
from tests.support import jose

pytestmark = pytest.mark.integration

SE, GM, LDN, NAT = "rcc-south-east", "rcc-greater-manchester", "rcc-london", "rcc-national"
START_TIMEOUT = 300.0  # a loaded 2-core CI machine; typically 15-25 s
STOP_TIMEOUT = 60.0


@dataclass
class Running:
    """A running ``federation up``: its process, the JSON it printed, where its stderr goes."""

    process: subprocess.Popen[str]
    info: dict[str, Any]
    stderr: Path

    def node(self, node_id: str) -> dict[str, Any]:
        return next(n for n in self.info["nodes"] if n["node_id"] == node_id)

    def pids(self) -> list[int]:
        return [int(n["pid"]) for n in self.info["nodes"]]

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the command to exit; its exit status."""
        self.process.send_signal(sig)
        status = self.process.wait(timeout=STOP_TIMEOUT)
        self.close()
        return status

    def close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()


def launch(folder: Path, *extra: str) -> Running:
    """Start ``rcc-node federation up --json`` and wait for its line of JSON (or fail with its stderr)."""
    stderr = folder.with_name(f"{folder.name}-{len(list(folder.parent.glob(folder.name + '-*')))}.stderr")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCC_")}
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "federation", "up", "--dir", str(folder), "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        process.kill()
        process.wait()
        process.stdout.close()
        pytest.fail(f"federation up printed nothing in {START_TIMEOUT} s:\n{stderr.read_text()}")
    if not line:
        process.wait(timeout=STOP_TIMEOUT)
        process.stdout.close()
        pytest.fail(f"federation up exited ({process.returncode}) before it was ready:\n{stderr.read_text()}")
    return Running(process, json.loads(line), stderr)


def cleanup(running: Running) -> None:
    """Whatever a failed test left: stop the command, then make sure no node survives it."""
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
    running.close()
    for pid in running.pids():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def token(http: httpx.Client, node: dict[str, Any], client_id: str, secret: str) -> dict[str, str]:
    response = http.post(
        f"{node['base_url']}/oauth/token", auth=(client_id, secret), data={"grant_type": "client_credentials"}
    )
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def governance_client(data_dir: str) -> tuple[str, str]:
    """``rcc-node clients add … --role governance`` on a node's folder, as its administrator would."""
    return client_with_role(data_dir, "governance")


def client_with_role(data_dir: str, role: str) -> tuple[str, str]:
    """``rcc-node clients add … --role ROLE`` on a node's folder, as its administrator would."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RCC_DATA_DIR", data_dir)  # the command pins it for itself; keep that out of other tests
        result = CliRunner().invoke(
            app, ["clients", "add", f"Test {role}", "--role", role, "--data-dir", data_dir, "--json"]
        )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    return made["client_id"], made["client_secret"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("localfed") / "federation"


@pytest.fixture(scope="module")
def federation(folder: Path) -> Iterator[Running]:
    running = launch(folder, "--base-port", "0")
    try:
        yield running
    finally:
        cleanup(running)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        yield client


class TestFederationUp:
    def test_prints_every_node_with_its_commissioner_client_once_all_are_ready(
        self, federation: Running, http: httpx.Client
    ) -> None:
        nodes = {n["node_id"]: n for n in federation.info["nodes"]}
        assert {k: (n["kind"], n["region_code"]) for k, n in nodes.items()} == {
            SE: ("regional", "E12000008"),
            GM: ("regional", "E12000002"),
            LDN: ("regional", "E12000007"),
            NAT: ("national", None),
        }
        assert len({n["base_url"] for n in nodes.values()}) == 4
        for node in nodes.values():
            assert Path(node["data_dir"], "node.toml").is_file()
            assert node["client_id"] and node["client_secret"]
            assert http.get(f"{node['base_url']}/readyz").status_code == 200
            assert http.get(f"{node['base_url']}/docs").status_code == 200
        assert set(nodes[NAT]["clients"]) == {"commissioner", "analyst"}

    def test_the_national_node_serves_the_directory_every_node_holds(
        self, federation: Running, http: httpx.Client
    ) -> None:
        national = federation.node(NAT)
        envelope = http.get(f"{national['base_url']}/federation/v1/directory").json()
        operator_keys = http.get(f"{national['base_url']}/.well-known/jwks.json").json()
        jose.verify_detached(envelope["directory"], envelope["signature"], operator_keys, "rcc-directory+jws")
        listed = {n["node_id"]: n["base_url"] for n in envelope["directory"]["nodes"]}
        assert listed == {n["node_id"]: n["base_url"] for n in federation.info["nodes"]}
        for node in federation.info["nodes"]:
            checks = http.get(f"{node['base_url']}/readyz").json()["checks"]
            assert checks["directory"]["detail"]["serial"] == federation.info["directory_serial"]

    def test_signed_agreements_are_active_on_both_parties(self, federation: Running, http: httpx.Client) -> None:
        expected = {
            SE: {"se-london-mou", "se-gm-mou", "south-east-national-dsa"},
            LDN: {"se-london-mou", "london-national-dsa"},
        }
        keys = {
            n["node_id"]: http.get(f"{n['base_url']}/.well-known/jwks.json").json() for n in federation.info["nodes"]
        }
        for node_id, agreements in expected.items():
            node = federation.node(node_id)
            headers = token(http, node, *governance_client(node["data_dir"]))
            listed = http.get(f"{node['base_url']}/v1/agreements", params={"state": "active"}, headers=headers)
            assert listed.status_code == 200, listed.text
            assert {a["agreement"] for a in listed.json()} >= agreements
            mou = http.get(f"{node['base_url']}/v1/agreements/se-london-mou", headers=headers).json()
            assert sorted(s["node_id"] for s in mou["signatures"]) == [LDN, SE]
            for signature in mou["signatures"]:
                jose.verify_detached(mou["document"], signature["jws"], keys[signature["node_id"]], "rcc-agreement+jws")
        assert {a["id"]: a["state"] for a in federation.info["agreements"]} == {
            "se-london-mou": "active",
            "se-gm-mou": "active",
            "south-east-national-dsa": "active",
            "greater-manchester-national-dsa": "active",
            "london-national-dsa": "active",
        }

    def test_a_commissioner_search_on_south_east_answers(self, federation: Running, http: httpx.Client) -> None:
        se = federation.node(SE)
        headers = token(http, se, se["client_id"], se["client_secret"])
        request = {
            "age": 14,
            "sex": "female",
            "needs": [],
            "home_la": "E10000016",
            "needed_by": (date.today() + timedelta(days=30)).isoformat(),
            "reach": "national",
            "purpose": "placement-search",
        }
        response = http.post(f"{se['base_url']}/v1/capacity/search", json=request, headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        members = {n["node_id"] for n in federation.info["nodes"]}
        assert answer["results"]
        assert {r["node_id"] for r in answer["results"]} <= members
        assert SE in {r["node_id"] for r in answer["results"]}
        # Peers are asked once the capacity fan-out is wired; each one asked must be accounted for, and the
        # regions South East has an MoU with must answer.
        outcomes = {p["node_id"]: p["outcome"] for p in answer["peers"]}
        assert set(outcomes.values()) <= {o.value for o in PeerOutcome}
        for peer in (LDN, GM):
            if peer in outcomes:
                assert outcomes[peer] == "ok", answer["peers"]

    def test_the_national_analyst_client_gets_its_role(self, federation: Running, http: httpx.Client) -> None:
        national = federation.node(NAT)
        analyst = national["clients"]["analyst"]
        headers = token(http, national, analyst["client_id"], analyst["client_secret"])
        assert http.get(f"{national['base_url']}/v1/whoami", headers=headers).json()["roles"] == ["analyst"]


class TestStatistics:
    """Each regional node starts with a signed release of synthetic episodes; the national node combines them."""

    TABLE = "cla-placement-group"
    PUBLISHED = ("E12000008", "E12000007")  # South East and London: whole regions, so their totals are published
    PARTIAL = ("E12000002",)  # GM's ten boroughs only: the rest of the North West is missing, so its totals are x

    def test_a_region_serves_its_own_table(self, federation: Running, http: httpx.Client) -> None:
        se = federation.node(SE)
        headers = token(http, se, *client_with_role(se["data_dir"], "analyst"))
        response = http.get(f"{se['base_url']}/v1/statistics/{self.TABLE}", headers=headers)
        assert response.status_code == 200, response.text
        table = response.json()
        assert table["release_version"] == 1
        regional = {r["placement_group"]: r["number"] for r in table["rows"] if r["geographic_level"] == "Regional"}
        assert regional["Total"].isdigit() and int(regional["Total"]) > 0, regional

    def test_the_national_node_serves_the_england_table_from_every_regions_signed_release(
        self, federation: Running, http: httpx.Client
    ) -> None:
        national = federation.node(NAT)
        analyst = national["clients"]["analyst"]
        headers = token(http, national, analyst["client_id"], analyst["client_secret"])
        response = http.get(
            f"{national['base_url']}/v1/statistics/{self.TABLE}", params={"scope": "national"}, headers=headers
        )
        assert response.status_code == 200, response.text
        table = response.json()
        assert table["scope"] == "national"
        assert {p["peer"]: (p["outcome"], p["verified"]) for p in table["peers"]} == {
            SE: ("ok", True),
            GM: ("ok", True),
            LDN: ("ok", True),
        }
        assert not {*self.PUBLISHED, *self.PARTIAL} & set(table["missing_regions"])
        assert table["suppressed_regions"] == list(self.PARTIAL)
        totals = {
            r["region_code"]: r["number"]
            for r in table["rows"]
            if r["geographic_level"] == "Regional" and r["placement_group"] == "Total"
        }
        assert all(totals[region].isdigit() for region in self.PUBLISHED), totals
        assert totals["E12000002"] == "x"
        # Six regions run no node here: England cannot be summed, and says so rather than guess.
        england = [r for r in table["rows"] if r["geographic_level"] == "National"]
        assert england and {r["number"] for r in england} == {"x"}


class TestStopAndRerun:
    """Runs last: it stops the module's federation."""

    def test_ctrl_c_stops_every_node_and_a_second_run_reuses_the_folder(
        self, federation: Running, folder: Path, http: httpx.Client
    ) -> None:
        assert federation.stop(signal.SIGINT) == 0
        assert [pid for pid in federation.pids() if alive(pid)] == []
        for node in federation.info["nodes"]:
            with pytest.raises(httpx.TransportError):
                http.get(f"{node['base_url']}/healthz")

        again = launch(folder)  # the ports and everything else as the first run left them
        try:
            assert [n["base_url"] for n in again.info["nodes"]] == [n["base_url"] for n in federation.info["nodes"]]
            assert [n["client_id"] for n in again.info["nodes"]] == [n["client_id"] for n in federation.info["nodes"]]
            assert again.info["agreements"] == federation.info["agreements"]  # kept, not signed again
            assert again.info["directory_serial"] > federation.info["directory_serial"]
            se = again.node(SE)
            headers = token(http, se, se["client_id"], se["client_secret"])
            assert http.get(f"{se['base_url']}/v1/whoami", headers=headers).status_code == 200
            assert again.stop(signal.SIGTERM) == 0
            assert [pid for pid in again.pids() if alive(pid)] == []
        finally:
            cleanup(again)
