"""``rcc-node audit flows``: the per-agreement report from the node's database, as a table or JSON, itself audited."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from registry.cli.main import app
from registry.core.audit.log import ENTRY, AuditLog
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from tests.agreements.conftest import GM, SE
from tests.support.flows import inbound, march, outbound, record, rows, vacancies_mou

runner = CliRunner()
MOU = "cli-flows-mou"


def rcc(*args: str | Path, code: int = 0) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An initialised SE node holding a draft agreement with GM, two inbound permits, a denial and an outbound call."""
    base = tmp_path_factory.mktemp("flows-cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RCC_DATA_DIR", str(base / "unused"))
        data_dir = base / SE
        rcc("init", "--data-dir", data_dir, "--node-id", SE, "--region-code", "E12000008")
        (base / "mou.json").write_text(json.dumps(vacancies_mou(MOU, SE, GM)))
        rcc("agreements", "draft", base / "mou.json", "--data-dir", data_dir)
        settings = load_settings(data_dir=data_dir)
        engine = make_engine(settings.effective_database_url)
        from_gm = functools.partial(inbound, SE, peer=GM, agreement=MOU)
        record(
            AuditLog(engine=engine, node_id=SE, keys=KeyRing.load(data_dir / "keys")),
            [
                from_gm(when=march(2), results=5),
                from_gm(when=march(4), results=6),
                from_gm(when=march(5), deny="purpose-not-granted"),
                outbound(SE, peer=GM, agreement=MOU, when=march(6)),
            ],
        )
        engine.dispose()
        yield data_dir


def flows_json(node: Path, *args: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(rcc("audit", "flows", MOU, "--data-dir", node, "--json", *args).stdout)
    return body


class TestAuditFlows:
    def test_json_gives_the_same_report_as_the_api(self, node: Path) -> None:
        body = flows_json(node)
        assert (body["agreement"], body["state"], body["parties"]) == (MOU, "draft", [SE, GM])
        assert rows(body, ("direction", "peer", "decision", "reason", "requests", "result_count")) == [
            ("inbound", GM, "deny", "purpose-not-granted", 1, None),
            ("inbound", GM, "permit", None, 2, 11),
            ("outbound", GM, "permit", None, 1, None),
        ]
        assert body["tree_size"] == body["signed_tree_head"]["tree_head"]["tree_size"] >= 4

    def test_since_and_until_without_an_offset_are_utc(self, node: Path) -> None:
        body = flows_json(node, "--since", "2026-03-03T00:00:00", "--until", "2026-03-06T00:00:00")
        assert rows(body, ("direction", "decision", "requests")) == [
            ("inbound", "deny", 1),
            ("inbound", "permit", 1),
        ]
        assert body["since"] == "2026-03-03T00:00:00Z"

    def test_the_table_names_each_peer_and_the_totals(self, node: Path) -> None:
        result = runner.invoke(app, ["audit", "flows", MOU, "--data-dir", str(node)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert MOU in out and GM in out and "purpose-not-granted" in out
        assert "4 requests (3 in, 1 out): 3 permitted, 1 denied, 0 undecided; 11 results." in " ".join(out.split())

    def test_an_unknown_agreement_or_a_reversed_window_fails_in_one_line(self, node: Path) -> None:
        assert "no agreement 'nope'" in rcc("audit", "flows", "nope", "--data-dir", node, code=1).output
        reversed_window = rcc(
            "audit", "flows", MOU, "--data-dir", node, "--since", "2026-03-05", "--until", "2026-03-01", code=1
        )
        assert "since must be before until" in reversed_window.output

    def test_every_run_is_recorded_in_the_log(self, node: Path) -> None:
        flows_json(node)
        rcc("audit", "flows", "nope", "--data-dir", node, code=1)
        engine = make_engine(load_settings(data_dir=node).effective_database_url)
        try:
            with engine.connect() as conn:
                recorded = [
                    json.loads(text)
                    for text in conn.execute(select(ENTRY.c.entry).where(ENTRY.c.action == "cli.audit.flows")).scalars()
                ]
        finally:
            engine.dispose()
        assert {(e["agreement"], e["decision"], e["actor_type"]) for e in recorded} >= {
            (MOU, None, "operator"),
            ("nope", "deny", "operator"),
        }
        assert any(e["agreement"] == MOU and e["result_count"] == 3 for e in recorded)
