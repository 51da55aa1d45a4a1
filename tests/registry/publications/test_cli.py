"""``rcc-node publish`` and ``rcc-node publications …`` as an operator runs them, on the run's engine.

One publish runs as a real ``rcc-node`` process; the rest run the same
typer application in-process (starting the CLI costs seconds of imports per call, in-process costs none).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.cli.main import app as cli_app
from tests.registry.publications import documents
from tests.support.databases import fresh_database
from tests.support.jose import verify_detached
from tests.support.nodes import NodeSpec, free_port, run_cli

pytestmark = pytest.mark.postgres

NODE = "rcc-cli-test"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSpec]:
    """One node made by ``rcc-node init`` for the module (on PostgreSQL when the run targets it)."""
    base = tmp_path_factory.mktemp("cli")
    spec = NodeSpec(NODE, base / NODE, free_port())
    with fresh_database(base) as url, pytest.MonkeyPatch.context() as patch:
        # The CLI sets RCC_DATA_DIR when it is unset; setting it here keeps it from outliving the module.
        patch.setenv("RCC_DATA_DIR", str(spec.data_dir))
        args = ["init", "--data-dir", str(spec.data_dir), "--node-id", NODE, "--region-code", "E12000008"]
        if url.startswith("postgresql"):
            args += ["--database-url", url]
        result = CliRunner().invoke(cli_app, args)
        assert result.exit_code == 0, result.output
        yield spec


def cli(spec: NodeSpec, *args: str, check: bool = True) -> str:
    """Run ``rcc-node ARGS`` in-process; stdout if it succeeded (``check``), else stderr and a non-zero exit."""
    result = CliRunner().invoke(cli_app, [*args, "--data-dir", str(spec.data_dir)])
    if check:
        assert result.exit_code == 0, result.output
        return result.stdout
    assert result.exit_code != 0, result.output
    return result.stderr


class TestCli:
    def test_publish_update_show_diff_withdraw(self, spec: NodeSpec, tmp_path: Path) -> None:
        first, second = tmp_path / "v1.json", tmp_path / "v2.json"
        first.write_text(json.dumps(documents.fee_cap(NODE)))
        changed = documents.fee_cap(NODE)
        changed["caps"][0]["max_weekly_fee"] = 5600
        second.write_text(json.dumps(changed))

        as_process = run_cli(
            ["publish", "fee-cap", str(first), "--id", "caps", "--json", "--data-dir", str(spec.data_dir)]
        )
        published = json.loads(as_process.stdout)
        assert published["version"] == 1 and published["id"] == "caps"
        updated = json.loads(
            cli(spec, "publish", "fee-cap", str(second), "--id", "caps", "--if-match", published["etag"], "--json")
        )
        assert updated["version"] == 2
        stale = cli(
            spec, "publish", "fee-cap", str(second), "--id", "caps", "--if-match", published["etag"], check=False
        )
        assert "changed" in stale

        shown = json.loads(cli(spec, "publications", "show", "caps", "--version", "1"))
        assert shown["document"] == documents.fee_cap(NODE) and shown["verification"]["ok"] is True
        keyring = json.loads((spec.data_dir / "keys" / "keyring.json").read_text())
        jwks = {"keys": [{**k["jwk"], "kid": k["kid"]} for k in keyring["keys"]]}
        names = ["node_id", "id", "kind", "version", "state", "published_at", "schema", "document"]
        verify_detached({n: shown[n] for n in names}, shown["signature"], jwks, "rcc-publication+jws")

        patch = json.loads(cli(spec, "publications", "diff", "caps", "1", "2"))
        assert patch == [{"op": "replace", "path": "/caps/0/max_weekly_fee", "value": 5600}]

        withdrawn = json.loads(
            cli(spec, "publications", "withdraw", "caps", "--if-match", updated["etag"], "--reason", "test", "--json")
        )
        assert withdrawn["state"] == "withdrawn" and withdrawn["version"] == 3

    def test_an_invalid_file_is_refused_with_its_paths(self, spec: NodeSpec, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(documents.fee_cap(NODE) | {"currency": "EUR", "extra": 1}))
        errors = cli(spec, "publish", "fee-cap", str(bad), check=False)
        assert "/document/currency" in errors and "/document/extra" in errors
        (tmp_path / "nope.json").write_text("{nope")
        assert "not JSON" in cli(spec, "publish", "fee-cap", str(tmp_path / "nope.json"), check=False)

    def test_synth_publishes_a_region_once(self, spec: NodeSpec, tmp_path: Path) -> None:
        out = tmp_path / "docs"
        made = json.loads(
            cli(spec, "synth", "publications", "--region", "E12000008", "--publish", "--out", str(out), "--json")
        )
        assert [item["outcome"] for item in made] == ["published"] * 3
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{item['id']}.json" for item in made)
        again = json.loads(cli(spec, "synth", "publications", "--region", "E12000008", "--publish", "--json"))
        assert [item["outcome"] for item in again] == ["already published: skipped"] * 3
        listed = json.loads(cli(spec, "publications", "list", "--kind", "placement-protocol", "--json"))
        assert [item["id"] for item in listed] == [f"{NODE}-placement-protocol"]
