"""``rcc-node audit``: verify the log offline, print the signed tree head, export entries, report an agreement's flows.

These commands work on the node's database and key ring directly (no running node needed), so a governance
officer or an auditor can check a copy of the database. ``verify`` exits 0 only if everything matches and
otherwise names the first bad index; ``export`` is itself recorded in the log (actor type ``operator``).
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlmodel import Session

from agreements import flows as agreement_flows
from agreements.runtime import AgreementsRuntime
from registry.cli.common import (
    ConfigOption,
    DataDirOption,
    JsonOption,
    err_console,
    fail,
    keys_for,
    out_console,
    print_json,
)
from registry.cli.common import settings_for as _settings_for
from registry.core.audit.context import AuditContext
from registry.core.audit.entry import build_entry, format_time
from registry.core.audit.errors import AuditStoreError
from registry.core.audit.log import AuditLog, read_head, signed_head_of
from registry.core.audit.service import EntryFilters, export_lines
from registry.core.audit.verify import verify_log
from registry.core.db import make_engine
from registry.core.errors import NodeError

audit_app = typer.Typer(help="The node's tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Also check canonical form and the indexed columns of every entry.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Recompute every leaf and the whole tree; compare with the stored hashes and the signed tree head."""
    settings = _settings_for(data_dir, config)
    jwks = keys_for(settings).jwks()
    engine = make_engine(settings.effective_database_url)
    try:
        with Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=json_output,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done, total=total)

            report = verify_log(engine, jwks=jwks, node_id=settings.node_id, deep=deep, progress=progress)
    except AuditStoreError as exc:
        fail(str(exc))
    except Exception as exc:  # a driver error: say what, not a traceback
        fail(f"cannot read the audit log: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        engine.dispose()
    if json_output:
        print_json(report.as_dict())
    elif report.ok:
        out_console.print(
            f"[green]OK[/]: {report.tree_size} entries and {report.nodes_checked} tree nodes match the signed tree "
            f"head (root {report.root_hash}); {report.pending} pending, {report.newer} newer."
        )
    else:
        for problem in report.as_dict()["problems"]:
            where = f"index {problem['index']}" if problem["index"] is not None else "log"
            err_console.print(f"[bold red]{problem['kind']}[/] at {where}: {problem['detail']}")
    if not report.ok:
        first = report.first_bad_index
        message = f"first bad index: {first}" if first is not None else "the log does not match its signed tree head"
        err_console.print(f"[bold red]FAILED[/]: {message}")
        raise typer.Exit(1)


@audit_app.command("tree-head")
def tree_head(
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    sequence: Annotated[
        bool, typer.Option("--sequence", help="First sequence pending entries and sign a fresh tree head.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Print the latest signed tree head (size, root hash, time, signature)."""
    settings = _settings_for(data_dir, config)
    engine = make_engine(settings.effective_database_url)
    try:
        if sequence:
            AuditLog(engine=engine, node_id=settings.node_id, keys=keys_for(settings)).sign_now()
        with engine.connect() as conn:
            head = signed_head_of(read_head(conn))
    except AuditStoreError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    if head is None:
        fail("no tree head has been signed yet (start the node, or run with --sequence)")
    if json_output:
        print_json(head.model_dump())
    else:
        th = head.tree_head
        out_console.print(f"node       {th.node_id}\ntree_size  {th.tree_size}\nroot_hash  {th.root_hash}")
        out_console.print(f"timestamp  {th.timestamp}\nsignature  {head.signature}")


@audit_app.command("export")
def export(
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Entries at or after this time (UTC if no offset).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Entries before this time (UTC if no offset).")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor id.")] = None,
    peer: Annotated[str | None, typer.Option(help="Peer node id.")] = None,
    agreement: Annotated[str | None, typer.Option(help="Agreement id.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Purpose.")] = None,
    decision: Annotated[str | None, typer.Option(help="permit or deny.")] = None,
    action: Annotated[str | None, typer.Option(help="Route name, e.g. capacity.search.")] = None,
) -> None:
    """Export sequenced entries (filters as the API's) as CSV or JSON lines; the export itself is audited."""
    if fmt not in ("csv", "jsonl"):
        fail("--format must be csv or jsonl")
    chosen: Literal["csv", "jsonl"] = "csv" if fmt == "csv" else "jsonl"
    settings = _settings_for(data_dir, config)
    try:
        filters = EntryFilters(
            since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
            until=until.replace(tzinfo=until.tzinfo or UTC) if until else None,
            actor=actor,
            peer=peer,
            agreement=agreement,
            dataset=dataset,
            purpose=purpose,
            decision=decision,  # validated by the model
            action=action,
        )
    except ValueError as exc:
        fail(f"invalid filter: {_reasons(exc)}")
    engine = make_engine(settings.effective_database_url)
    log = AuditLog(engine=engine, node_id=settings.node_id, keys=keys_for(settings))
    context = AuditContext(actor_type="operator", actor_id=_operator())
    try:
        log.insert_now(
            [build_entry(node_id=settings.node_id, direction="inbound", action="cli.audit.export", context=context)]
        )
        sink = output.open("wb") if output is not None else sys.stdout.buffer
        try:
            for chunk in export_lines(log, filters=filters, fmt=chosen, context=context):
                sink.write(chunk)
        finally:
            if output is not None:
                sink.close()
            else:
                sink.flush()
    except AuditStoreError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    if output is not None:
        err_console.print(f"Exported {context.result_count or 0} entries to {output}.")


@audit_app.command("flows")
def flows(
    agreement_id: Annotated[str, typer.Argument(help="The agreement's id.")],
    data_dir: DataDirOption = Path(".rcc"),
    config: ConfigOption = None,
    since: Annotated[datetime | None, typer.Option(help="Entries at or after this time (UTC if no offset).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Entries before this time (UTC if no offset).")] = None,
    json_output: JsonOption = False,
) -> None:
    """What flowed to whom under an agreement, from the log (as GET /v1/agreements/ID/flows); itself audited."""
    try:
        window = agreement_flows.FlowWindow(
            since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
            until=until.replace(tzinfo=until.tzinfo or UTC) if until else None,
        )
    except ValidationError as exc:
        fail(f"invalid window: {_reasons(exc)}")
    settings = _settings_for(data_dir, config)
    keys = keys_for(settings)
    engine = make_engine(settings.effective_database_url)
    log = AuditLog(engine=engine, node_id=settings.node_id, keys=keys)
    runtime = AgreementsRuntime.standalone(node_id=settings.node_id, keys=keys, engine=engine)
    context = AuditContext(actor_type="operator", actor_id=_operator(), agreement=agreement_id)
    try:
        with Session(engine) as session:
            report = agreement_flows.report(
                session, runtime=runtime, log=log, agreement_id=agreement_id, window=window, context=context
            )
    except NodeError as exc:
        context.deny(exc.code)
        fail(exc.detail)
    except AuditStoreError as exc:
        fail(str(exc))
    finally:
        # Recorded before anything is printed (and refusals too): a report that cannot be audited is not shown.
        try:
            entry = build_entry(
                node_id=settings.node_id, direction="inbound", action="cli.audit.flows", context=context
            )
            log.insert_now([entry])
        finally:
            engine.dispose()
    if json_output:
        print_json(report.model_dump(mode="json"))
        return
    _print_flows(report)


def _print_flows(report: agreement_flows.AgreementFlows) -> None:
    out_console.print(
        f"[bold]{report.agreement}[/] v{report.version}  {report.title}  ({report.state}); "
        f"parties {', '.join(report.parties)}"
    )
    since = format_time(report.since) if report.since else "the first entry"
    until = format_time(report.until) if report.until else "the last"
    window = f"{since} to {until}"
    out_console.print(f"Audit entries 0 to {report.tree_size - 1} of the signed tree head, {window}.")
    table = Table(
        "Direction", "Peer", "Dataset", "Purpose", "Decision", "Reason", "Requests", "Results", "First", "Last"
    )
    for row in report.rows:
        table.add_row(
            row.direction,
            row.peer or "(this node's users)",
            row.dataset or "",
            row.purpose or "",
            row.decision or "",
            row.reason or "",
            str(row.requests),
            "" if row.result_count is None else str(row.result_count),
            format_time(row.first),
            format_time(row.last),
        )
    out_console.print(table)
    totals = report.totals
    out_console.print(
        f"{totals.requests} requests ({totals.inbound} in, {totals.outbound} out): {totals.permitted} permitted, "
        f"{totals.denied} denied, {totals.undecided} undecided; {totals.result_count} results."
    )


def _operator() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def _reasons(exc: ValueError) -> str:
    """What was wrong with the options, without pydantic's documentation links."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors())
    return str(exc)
