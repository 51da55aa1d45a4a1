"""``rcc-node agreements``: the README's worked example (two nodes exchanging bundle files), and offline verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from registry.cli.main import app
from registry.core.keys import KeyRing
from registry.core.signing import TYP_DIRECTORY, sign_detached
from tests.agreements.conftest import document, grant

SE, GM = "rcc-south-east", "rcc-greater-manchester"
runner = CliRunner()


def rcc(*args: str | Path, code: int = 0) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def as_json(*args: str | Path) -> Any:
    return json.loads(rcc(*args, "--json").stdout)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two initialised nodes (data folders); RCC_DATA_DIR is pinned so commands only use --data-dir."""
    base = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RCC_DATA_DIR", str(base / "unused"))
        dirs = {}
        for node_id, region in ((SE, "E12000008"), (GM, "E12000002")):
            dirs[node_id] = base / node_id
            rcc("init", "--data-dir", dirs[node_id], "--node-id", node_id, "--region-code", region)
        yield dirs


@pytest.fixture(scope="module")
def exchanged(nodes: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The worked example: SE drafts and signs, GM imports and countersigns, SE imports GM's bundle."""
    work = tmp_path_factory.mktemp("exchange")
    mou = document(
        "se-gm-mou",
        [SE, GM],
        [
            grant(SE, [GM], ["capacity.vacancies"], ["placement-search"]),
            grant(GM, [SE], ["capacity.vacancies"], ["placement-search"]),
        ],
        valid_from="2026-01-01",
        valid_until="2036-12-31",
        review_by="2035-12-31",  # the CLI runs on the real clock
    )
    (work / "mou.json").write_text(json.dumps(mou))
    keys = {node_id: KeyRing.load(path / "keys").jwks() for node_id, path in nodes.items()}
    (work / "keys.json").write_text(json.dumps(keys))
    se, gm = nodes[SE], nodes[GM]
    assert as_json("agreements", "draft", work / "mou.json", "--data-dir", se)["state"] == "draft"
    assert as_json("agreements", "sign", "se-gm-mou", "--data-dir", se)["state"] == "proposed"
    rcc("agreements", "bundle", "se-gm-mou", "--data-dir", se, "-o", work / "from-se.json")
    rcc("agreements", "import", work / "from-se.json", "--directory", work / "keys.json", "--data-dir", gm)
    assert as_json("agreements", "sign", "se-gm-mou", "--data-dir", gm)["state"] == "active"
    rcc("agreements", "bundle", "se-gm-mou", "--data-dir", gm, "-o", work / "from-gm.json")
    rcc("agreements", "import", work / "from-gm.json", "--directory", work / "keys.json", "--data-dir", se)
    return {"work": work, "bundle": work / "from-gm.json", "keys": work / "keys.json", "se": se, "gm": gm}


class TestWorkedExample:
    def test_both_nodes_hold_the_active_agreement(self, exchanged: dict[str, Path]) -> None:
        for node in ("se", "gm"):
            shown = as_json("agreements", "show", "se-gm-mou", "--data-dir", exchanged[node])
            assert (shown["state"], [s["node_id"] for s in shown["signatures"]]) == ("active", [SE, GM])
        listed = as_json("agreements", "list", "--data-dir", exchanged["se"], "--state", "active")
        assert [a["agreement"] for a in listed] == ["se-gm-mou"]
        assert "se-gm-mou" in rcc("agreements", "show", "se-gm-mou", "--data-dir", exchanged["se"]).stdout

    def test_errors_are_one_line_and_exit_non_zero(self, exchanged: dict[str, Path]) -> None:
        bad = exchanged["work"] / "bad.json"
        bad.write_text(json.dumps({"id": "x"}))
        result = rcc("agreements", "draft", bad, "--data-dir", exchanged["se"], code=1)
        assert "agreement-invalid" in result.output and "/version" in result.output
        assert "agreement-not-found" in rcc("agreements", "show", "nope", "--data-dir", exchanged["se"], code=1).output


class TestOfflineVerify:
    def test_a_good_bundle_verifies_against_a_jwks_mapping(self, exchanged: dict[str, Path]) -> None:
        report = json.loads(
            rcc("agreements", "verify", exchanged["bundle"], "--directory", exchanged["keys"], "--json").stdout
        )
        assert report["valid"]
        assert [(s["node_id"], s["valid"]) for s in report["versions"][0]["signatures"]] == [(SE, True), (GM, True)]
        assert (
            "bundle verifies"
            in rcc("agreements", "verify", exchanged["bundle"], "--directory", exchanged["keys"]).stdout
        )

    def test_a_tampered_bundle_fails(self, exchanged: dict[str, Path]) -> None:
        tampered = json.loads(exchanged["bundle"].read_text())
        tampered["versions"][0]["document"]["retention"] = "P2Y"
        path = exchanged["work"] / "tampered.json"
        path.write_text(json.dumps(tampered))
        result = rcc("agreements", "verify", path, "--directory", exchanged["keys"], code=1)
        assert "bad-signature" in result.stdout and "does NOT verify" in result.stdout

    def test_a_signature_by_a_key_the_directory_does_not_hold_fails(self, exchanged: dict[str, Path]) -> None:
        keys = json.loads(exchanged["keys"].read_text())
        keys[GM] = KeyRing.generate().jwks()
        path = exchanged["work"] / "other-keys.json"
        path.write_text(json.dumps(keys))
        assert "unknown-key" in rcc("agreements", "verify", exchanged["bundle"], "--directory", path, code=1).stdout

    def test_a_signed_directory_is_checked_and_its_keys_used(self, exchanged: dict[str, Path]) -> None:
        operator = KeyRing.generate()
        keys = json.loads(exchanged["keys"].read_text())
        directory = {
            "serial": 3,
            "issued_at": "2025-05-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z",
            "operator": "rcc-national",
            "nodes": [
                _entry("rcc-national", "national", None, operator.jwks()),
                _entry(SE, "regional", "E12000008", keys[SE]),
                _entry(GM, "regional", "E12000002", keys[GM]),
            ],
        }
        path = exchanged["work"] / "directory.json"
        path.write_text(
            json.dumps(
                {"directory": directory, "signature": sign_detached(directory, operator.active, typ=TYP_DIRECTORY)}
            )
        )
        out = rcc("agreements", "verify", exchanged["bundle"], "--directory", path).stdout
        assert "directory serial 3" in out and "bundle verifies" in out
        pin = exchanged["work"] / "operator.json"
        pin.write_text(json.dumps(operator.jwks()))
        assert (
            "pinned operator key"
            in rcc("agreements", "verify", exchanged["bundle"], "--directory", path, "--operator-jwks", pin).stdout
        )
        pin.write_text(json.dumps(KeyRing.generate().jwks()))
        assert (
            "directory refused"
            in rcc(
                "agreements", "verify", exchanged["bundle"], "--directory", path, "--operator-jwks", pin, code=1
            ).output
        )
        forged = json.loads(path.read_text())
        forged["directory"]["nodes"][2]["keys"] = KeyRing.generate().jwks()["keys"]
        path.write_text(json.dumps(forged))
        assert "does not verify" in rcc("agreements", "verify", exchanged["bundle"], "--directory", path, code=1).output


def _entry(node_id: str, kind: str, region: str | None, jwks: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "name": node_id,
        "kind": kind,
        "region_code": region,
        "base_url": f"https://{node_id}.example",
        "keys": jwks["keys"],
        "neighbours": [],
    }
