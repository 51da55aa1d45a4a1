"""A real ``rcc-node`` on 127.0.0.1: identity, errors and key rotation as a peer or operator sees them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support import jose
from tests.support.nodes import init_node, invoke_cli, run_cli, served

pytestmark = pytest.mark.integration


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["x-request-id"]


class TestServedNode:
    def test_descriptor_verifies_and_errors_are_problem_json(self, tmp_path: Path) -> None:
        spec = init_node(tmp_path, "rcc-se", name="South East RCC", as_process=True)  # init as a user runs it
        with served(spec) as node, httpx.Client(base_url=node.base_url) as http:
            body = http.get("/.well-known/rcc-node").json()
            jwks = http.get("/.well-known/jwks.json").json()
            jose.verify_detached(body["descriptor"], body["signature"], jwks, "rcc-node+jws")
            assert body["descriptor"]["base_url"] == spec.base_url
            assert body["descriptor"]["name"] == "South East RCC"
            assert http.get("/readyz").status_code == 200

            assert_problem(http.get("/no/such/route"), 404, "not-found")
            assert_problem(http.post("/healthz", json={}), 405, "method-not-allowed")
            assert_problem(
                http.post("/healthz", content=b"x" * (1024 * 1024 + 1), headers={"content-type": "application/json"}),
                413,
                "payload-too-large",
            )
            assert_problem(
                http.post("/healthz", content=b"<x/>", headers={"content-type": "application/xml"}),
                415,
                "unsupported-media-type",
            )
            assert http.get("/healthz", headers={"x-request-id": "trace-1"}).headers["x-request-id"] == "trace-1"
            assert http.get("/docs").status_code == 200

    def test_rotated_key_is_published_retired_and_new_key_signs(self, tmp_path: Path) -> None:
        spec = init_node(tmp_path, "rcc-gm", region_code="E12000002")
        with served(spec) as node:
            old = httpx.get(f"{node.base_url}/.well-known/rcc-node").json()
        invoke_cli(["keys", "rotate", "--data-dir", str(spec.data_dir)])
        with served(spec) as node:
            new = httpx.get(f"{node.base_url}/.well-known/rcc-node").json()
        jwks = new["descriptor"]["jwks"]
        statuses = sorted(k["status"] for k in jwks["keys"])
        assert statuses == ["active", "retired"]
        old_header = jose.verify_detached(old["descriptor"], old["signature"], jwks, "rcc-node+jws")
        new_header = jose.verify_detached(new["descriptor"], new["signature"], jwks, "rcc-node+jws")
        assert old_header["kid"] != new_header["kid"]
        assert {k["kid"]: k["status"] for k in jwks["keys"]}[old_header["kid"]] == "retired"


class TestCli:
    def test_init_refuses_to_overwrite_a_node(self, tmp_path: Path) -> None:
        spec = init_node(tmp_path, "rcc-ldn", region_code="E12000007")
        again = run_cli(["init", "--data-dir", str(spec.data_dir), "--node-id", "rcc-ldn"], check=False)
        assert again.returncode != 0
        assert "refusing to overwrite" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1

    def test_invalid_setting_is_one_clear_line(self, tmp_path: Path) -> None:
        result = run_cli(["init", "--data-dir", str(tmp_path / "x"), "--node-id", "Bad Id"], check=False)
        assert result.returncode != 0
        assert result.stderr.strip().startswith("error: setting node_id:")
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "x" / "node.toml").exists()

    def test_serve_without_init_says_what_to_do(self, tmp_path: Path) -> None:
        result = run_cli(["serve", "--data-dir", str(tmp_path / "none")], check=False)
        assert result.returncode != 0
        assert "rcc-node init" in result.stderr

    def test_version_and_keys_list_print_json(self, tmp_path: Path) -> None:
        assert json.loads(run_cli(["version", "--json"]).stdout)["software_version"]
        spec = init_node(tmp_path, "rcc-nat", kind="national", region_code=None)
        keys = json.loads(run_cli(["keys", "list", "--data-dir", str(spec.data_dir), "--json"]).stdout)
        assert [k["status"] for k in keys] == ["active"]
        toml = (spec.data_dir / "node.toml").read_text()
        assert 'kind = "national"' in toml and "region_code" not in toml
