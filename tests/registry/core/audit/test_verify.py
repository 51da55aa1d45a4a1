"""Offline verification: tampering with the database is found, at the right index; the CLI reports it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from registry.cli import app as cli
from registry.core.audit.log import ENTRY, HEAD, NODE, AuditLog
from registry.core.audit.verify import verify_log
from registry.core.db import make_engine, utcnow
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from tests.registry.core.audit import rfc9162
from tests.registry.core.audit.conftest import fill, sample_entry

pytestmark = pytest.mark.postgres
SIZE = 20


@pytest.fixture
def log(audit) -> AuditLog:
    fill(audit, SIZE)
    audit.sequence_pending()
    return audit


def verify(log: AuditLog, **kwargs):
    return verify_log(log.engine, jwks=log.keys.jwks(), node_id="rcc-test", **kwargs)


def execute(log: AuditLog, *statements) -> None:
    with log.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def entry_text(log: AuditLog, seq: int) -> str:
    with log.engine.connect() as conn:
        return conn.execute(select(ENTRY.c.entry).where(ENTRY.c.seq == seq)).scalar_one()


class TestTamperIsFound:
    def test_an_untouched_log_verifies(self, log) -> None:
        report = verify(log, deep=True)
        assert report.ok, report.problems
        assert (report.tree_size, report.entries_checked) == (SIZE, SIZE)
        assert report.nodes_checked == sum(SIZE >> level for level in range(SIZE.bit_length()))

    def test_an_edited_field_names_its_entry(self, log) -> None:
        edited = entry_text(log, 7).replace('"decision":"permit"', '"decision":"deny"')
        execute(log, update(ENTRY).where(ENTRY.c.seq == 7).values(entry=edited))
        report = verify(log)
        assert report.first_bad_index == 7 and "entry-edited" in {p.kind for p in report.problems}

    def test_an_edit_with_a_recomputed_leaf_hash_is_caught_by_the_stored_tree(self, log) -> None:
        edited = entry_text(log, 7).replace('"status":200', '"status":404')
        leaf = rfc9162.sha256(b"\x00" + edited.encode())
        execute(log, update(ENTRY).where(ENTRY.c.seq == 7).values(entry=edited, leaf_hash=leaf))
        report = verify(log)
        assert report.first_bad_index == 7 and not report.ok

    def test_a_deleted_row_names_its_index(self, log) -> None:
        execute(log, delete(ENTRY).where(ENTRY.c.seq == 11))
        report = verify(log)
        assert report.first_bad_index == 11
        assert "missing-entry" in {p.kind for p in report.problems}

    def test_the_last_row_deleted_is_found(self, log) -> None:
        execute(log, delete(ENTRY).where(ENTRY.c.seq == SIZE - 1))
        assert verify(log).first_bad_index == SIZE - 1

    def test_two_swapped_rows_name_the_first(self, log) -> None:
        execute(
            log,
            update(ENTRY).where(ENTRY.c.seq == 5).values(seq=-1),
            update(ENTRY).where(ENTRY.c.seq == 12).values(seq=5),
            update(ENTRY).where(ENTRY.c.seq == -1).values(seq=12),
        )
        report = verify(log)
        assert report.first_bad_index == 5

    def test_an_insertion_in_the_middle_names_its_index(self, log) -> None:
        forged = sample_entry(999)
        execute(
            log,
            update(ENTRY).where(ENTRY.c.seq >= 9).values(seq=-(ENTRY.c.seq + 1)),
            update(ENTRY).where(ENTRY.c.seq < 0).values(seq=-ENTRY.c.seq),
            insert(ENTRY).values(seq=9, **forged.row()),
        )
        assert verify(log).first_bad_index == 9

    def test_an_unsigned_row_appended_at_the_end_is_found(self, log) -> None:
        execute(log, insert(ENTRY).values(seq=SIZE, **sample_entry(999).row()))
        report = verify(log)
        assert report.first_bad_index == SIZE
        assert "entry-beyond-head" in {p.kind for p in report.problems}

    def test_an_edited_stored_node_is_found(self, log) -> None:
        execute(log, update(NODE).where(NODE.c.level == 3, NODE.c.idx == 1).values(digest=b"\x01" * 32))
        report = verify(log)
        assert report.first_bad_index == 8 and "node-mismatch" in {p.kind for p in report.problems}

    def test_a_forged_tree_head_fails_its_signature(self, log) -> None:
        execute(log, update(HEAD).values(root_hash="ab" * 32))
        kinds = {p.kind for p in verify(log).problems}
        assert {"bad-head-signature", "root-mismatch"} <= kinds

    def test_a_head_signed_by_another_key_is_refused(self, log) -> None:
        report = verify_log(log.engine, jwks=KeyRing.generate().jwks(), node_id="rcc-test")
        assert "bad-head-signature" in {p.kind for p in report.problems}

    def test_a_consistent_rewrite_still_breaks_the_signed_root(self, log) -> None:
        edited = entry_text(log, 3).replace('"status":200', '"status":201')
        with log.engine.connect() as conn:
            texts = [r.entry for r in conn.execute(select(ENTRY.c.entry).order_by(ENTRY.c.seq))]
        texts[3] = edited
        leaves = [rfc9162.sha256(b"\x00" + t.encode()) for t in texts]
        nodes = [
            {"level": level, "idx": i, "digest": rfc9162.root(leaves[i << level : (i + 1) << level])}
            for level in range(SIZE.bit_length())
            for i in range(SIZE >> level)
        ]
        execute(
            log,
            update(ENTRY).where(ENTRY.c.seq == 3).values(entry=edited, leaf_hash=leaves[3]),
            delete(NODE),
            insert(NODE).values(nodes),
        )
        report = verify(log)
        assert not report.ok and [p.kind for p in report.problems] == ["root-mismatch"]

    def test_deep_mode_finds_a_doctored_filter_column(self, log) -> None:
        execute(log, update(ENTRY).where(ENTRY.c.seq == 4).values(actor_id="someone-else"))
        assert verify(log).ok  # the hashed entry is intact…
        report = verify(log, deep=True)  # …but governance queries would miss it
        assert report.first_bad_index == 4 and {p.kind for p in report.problems} == {"column-mismatch"}

    def test_entries_sequenced_after_the_scan_began_are_not_tampering(self, log) -> None:
        fill(log, 3, start=SIZE)
        report = verify(log)
        assert report.ok and report.pending == 3


class TestCli:
    @pytest.fixture
    def node_dir(self, tmp_path: Path, db_url: str, monkeypatch) -> Path:
        data_dir = tmp_path / "node"
        monkeypatch.setenv("RCC_DATA_DIR", str(data_dir))
        runner = CliRunner()
        result = runner.invoke(
            cli,
            [
                "init",
                "--data-dir",
                str(data_dir),
                "--node-id",
                "rcc-cli",
                "--region-code",
                "E12000008",
                "--database-url",
                db_url,
            ],
        )
        assert result.exit_code == 0, result.output
        settings = load_settings(data_dir=data_dir)
        engine = make_engine(settings.effective_database_url)
        log = AuditLog(engine=engine, node_id="rcc-cli", keys=KeyRing.load(settings.effective_key_dir))
        log.insert_now([sample_entry(i, node_id="rcc-cli") for i in range(12)])
        log.sequence_pending()
        engine.dispose()
        return data_dir

    def test_verify_tree_head_and_export(self, node_dir: Path, tmp_path: Path) -> None:
        runner = CliRunner()
        ok = runner.invoke(cli, ["audit", "verify", "--data-dir", str(node_dir), "--json"])
        assert ok.exit_code == 0, ok.output
        summary = json.loads(ok.stdout)
        assert summary["ok"] and summary["tree_size"] == 12

        head = runner.invoke(cli, ["audit", "tree-head", "--data-dir", str(node_dir), "--json"])
        assert head.exit_code == 0 and json.loads(head.stdout)["tree_head"]["tree_size"] == 12

        out = tmp_path / "export.csv"
        exported = runner.invoke(
            cli,
            ["audit", "export", "--data-dir", str(node_dir), "--format", "csv", "-o", str(out), "--decision", "deny"],
        )
        assert exported.exit_code == 0, exported.output
        lines = out.read_text().splitlines()
        assert lines[0].startswith("index,leaf_hash,v,time") and len(lines) == 1 + 3  # entries 0, 5, 10 deny

        jsonl = runner.invoke(cli, ["audit", "export", "--data-dir", str(node_dir), "--action", "test.action1"])
        assert jsonl.exit_code == 0 and len(jsonl.stdout.splitlines()) == 6

        # The export was itself recorded (by the operator) and the log still verifies once it is sequenced.
        sequenced = runner.invoke(cli, ["audit", "tree-head", "--data-dir", str(node_dir), "--sequence", "--json"])
        assert json.loads(sequenced.stdout)["tree_head"]["tree_size"] == 14
        assert runner.invoke(cli, ["audit", "verify", "--data-dir", str(node_dir)]).exit_code == 0

    def test_export_refuses_a_bad_filter_naming_the_option(self, node_dir: Path) -> None:
        result = CliRunner().invoke(cli, ["audit", "export", "--data-dir", str(node_dir), "--decision", "maybe"])
        assert result.exit_code != 0
        assert "invalid filter: decision:" in result.stderr
        assert "errors.pydantic.dev" not in result.output and "Traceback" not in result.output

    def test_verify_names_the_first_bad_index_and_fails(self, node_dir: Path) -> None:
        settings = load_settings(data_dir=node_dir)
        engine = make_engine(settings.effective_database_url)
        with engine.begin() as conn:
            conn.execute(delete(ENTRY).where(ENTRY.c.seq == 6))
            conn.execute(update(ENTRY).where(ENTRY.c.seq == 9).values(ts=utcnow(), entry="{}"))
        engine.dispose()
        result = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(node_dir)])
        assert result.exit_code == 1
        assert "first bad index: 6" in result.stderr
        assert "Traceback" not in result.output
