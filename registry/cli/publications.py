"""``rcc-node publish`` and ``rcc-node publications …``: the register from the node's own machine.

These commands work on the node's data folder directly (settings, key ring, database), like ``init`` and
``keys rotate``: they sign with the node's active key and run the same service functions as the API, in one
transaction each, with an audit entry (actor type ``operator``) committed alongside every change.
``synth publications`` makes a realistic, labelled-synthetic fee cap, protocol and framework for a region.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlmodel import Session

from registry.cli.common import (
    DataDirOption,
    JsonOption,
    err_console,
    fail,
    keys_for,
    out_console,
    print_json,
    settings_for,
)
from registry.core.audit.context import AuditContext
from registry.core.audit.entry import build_entry
from registry.core.audit.log import append_in
from registry.core.db import make_engine
from registry.core.errors import NodeError, ValidationFailed
from registry.core.keys import KeyRing
from registry.core.settings import Settings
from registry.publications import service, signatures
from registry.publications.errors import PublicationNotFound
from registry.publications.kinds import Kind
from registry.publications.synth import default_owner, synth_publications

publications_app = typer.Typer(
    help="The publications register: frameworks, placement protocols, fee caps.", no_args_is_help=True
)

KindArgument = Annotated[Kind, typer.Argument(help="framework, placement-protocol or fee-cap.")]
IdArgument = Annotated[str, typer.Argument(help="The publication's id.")]


@dataclass
class _Opened:
    settings: Settings
    keys: KeyRing
    engine: Engine

    @property
    def signer(self) -> signatures.Signer:
        return signatures.Signer(self.settings.node_id, self.settings.region_code, self.keys.active)

    @property
    def verifier(self) -> signatures.Keys:
        return signatures.own_keys(self.settings.node_id, self.keys)


@contextmanager
def _node(data_dir: Path) -> Iterator[_Opened]:
    settings = settings_for(data_dir)
    keys = keys_for(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        yield _Opened(settings, keys, engine)
    finally:
        engine.dispose()


def _operator() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def _audit(session: Session, opened: _Opened, action: str, kind: Kind) -> None:
    context = AuditContext(actor_type="operator", actor_id=_operator(), dataset=kind.dataset.value, result_count=1)
    context.permit()
    append_in(
        session, build_entry(node_id=opened.settings.node_id, direction="inbound", action=action, context=context)
    )


def _explain(exc: NodeError) -> None:
    """A refusal on stderr: the detail, then each failing path."""
    err_console.print(f"[bold red]error:[/] {exc.detail}")
    for error in exc.errors or []:
        err_console.print(f"  {error['path'] or '/'}: {error['message']}")
    raise typer.Exit(1)


def _read_document(file: Path) -> dict[str, Any]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except ValueError as exc:
        fail(f"{file} is not JSON: {exc}")
    if not isinstance(document, dict):
        fail(f"{file} must hold one JSON object (the document)")
    return document


def _summary(held: service.Held) -> dict[str, Any]:
    item = service.to_public(held)
    return {
        "id": item.id,
        "kind": item.kind,
        "version": item.version,
        "state": item.state,
        "sha256": item.sha256,
        "etag": item.etag,
        "effective_from": item.effective_from.isoformat(),
        "effective_to": item.effective_to.isoformat() if item.effective_to else None,
        "title": item.document.get("title"),
    }


def publish(
    kind: KindArgument,
    file: Annotated[Path, typer.Argument(help="A JSON file holding the document.")],
    data_dir: DataDirOption = Path(".rcc"),
    publication_id: Annotated[
        str | None, typer.Option("--id", help="The id to publish under (default: made up).")
    ] = None,
    if_match: Annotated[
        str | None, typer.Option("--if-match", help="Publish the next version of --id; the ETag of its latest version.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Publish a document as a new signed publication (or, with --id and --if-match, its next version)."""
    document = _read_document(file)
    if if_match is not None and publication_id is None:
        fail("--if-match updates an existing publication: name it with --id")
    with _node(data_dir) as opened, Session(opened.engine) as session:
        try:
            if if_match is None:
                held = service.publish(
                    session,
                    signer=opened.signer,
                    kind=kind,
                    document=document,
                    publication_id=publication_id,
                    actor=_operator(),
                )
            else:
                assert publication_id is not None  # noqa: S101 - checked above
                held = service.update(
                    session,
                    signer=opened.signer,
                    publication_id=publication_id,
                    document=document,
                    if_match=if_match,
                    kind=kind,
                    actor=_operator(),
                )
            _audit(session, opened, "cli.publications.publish", kind)
            session.commit()
        except NodeError as exc:
            _explain(exc)
        summary = _summary(held)
    if json_output:
        print_json(summary)
    else:
        out_console.print(
            f"Published {summary['kind']} [bold]{summary['id']}[/] version {summary['version']} {summary['etag']}"
        )


@publications_app.command("list")
def list_command(
    data_dir: DataDirOption = Path(".rcc"),
    kind: Annotated[Kind | None, typer.Option(help="Only this kind.")] = None,
    effective_on: Annotated[str | None, typer.Option(help="Only documents in force on this date (YYYY-MM-DD).")] = None,
    json_output: JsonOption = False,
) -> None:
    """This node's publications: the latest version of each."""
    on = _date(effective_on, "--effective-on") if effective_on else None
    with _node(data_dir) as opened, Session(opened.engine) as session:
        rows, _ = service.list_latest(
            session, node_ids=[opened.settings.node_id], kind=kind, effective_on=on, limit=None
        )
        summaries = [_summary(held) for held in rows]
    if json_output:
        print_json(summaries)
        return
    if not summaries:
        out_console.print("No publications.")
    for item in summaries:
        until = item["effective_to"] or "…"
        out_console.print(
            f"{item['id']:<40} {item['kind']:<19} v{item['version']:<3} {item['state']:<9} "
            f"{item['effective_from']} to {until}  {item['title']}"
        )


@publications_app.command("show")
def show_command(
    publication_id: IdArgument,
    data_dir: DataDirOption = Path(".rcc"),
    version: Annotated[int | None, typer.Option(min=1, help="This version (default: the latest).")] = None,
) -> None:
    """One publication version as JSON, with its signature checked."""
    with _node(data_dir) as opened, Session(opened.engine) as session:
        try:
            node_id = opened.settings.node_id
            held = (
                service.get_version(session, publication_id, version, node_id=node_id)
                if version is not None
                else service.get_latest(session, publication_id, node_id=node_id)
            )
        except NodeError as exc:
            _explain(exc)
        item = service.to_public(held, verification=signatures.verify_version(held.version, keys=opened.verifier))
    print_json(item.model_dump(mode="json", by_alias=True))
    if item.verification is not None and not item.verification.ok:
        err_console.print(f"[bold red]signature check failed:[/] {item.verification.reason}")
        raise typer.Exit(1)


@publications_app.command("diff")
def diff_command(
    publication_id: IdArgument,
    source: Annotated[int, typer.Argument(min=1, help="From this version.")],
    target: Annotated[int, typer.Argument(min=1, help="To this version.")],
    data_dir: DataDirOption = Path(".rcc"),
) -> None:
    """What changed between two versions, as an RFC 6902 JSON Patch."""
    with _node(data_dir) as opened, Session(opened.engine) as session:
        try:
            operations = service.diff_versions(session, publication_id, source, target, node_id=opened.settings.node_id)
        except NodeError as exc:
            _explain(exc)
    print_json(operations)


@publications_app.command("withdraw")
def withdraw_command(
    publication_id: IdArgument,
    if_match: Annotated[str, typer.Option("--if-match", help="The ETag of the latest version.")],
    data_dir: DataDirOption = Path(".rcc"),
    reason: Annotated[str | None, typer.Option(help="Why (signed with the withdrawal).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Withdraw a publication: a signed final version, nothing deleted."""
    with _node(data_dir) as opened, Session(opened.engine) as session:
        try:
            held = service.withdraw(
                session,
                signer=opened.signer,
                publication_id=publication_id,
                if_match=if_match,
                reason=reason,
                actor=_operator(),
            )
            _audit(session, opened, "cli.publications.withdraw", Kind(held.version.kind))
            session.commit()
        except NodeError as exc:
            _explain(exc)
        summary = _summary(held)
    if json_output:
        print_json(summary)
    else:
        out_console.print(f"Withdrew [bold]{summary['id']}[/] in version {summary['version']}.")


def synth_publications_command(
    region: Annotated[str, typer.Option("--region", help="ONS region code E12…")],
    data_dir: DataDirOption = Path(".rcc"),
    owner: Annotated[
        str | None, typer.Option(help="Owner node id (default: the node's id with --publish, else rcc-<region name>).")
    ] = None,
    la: Annotated[list[str] | None, typer.Option("--la", help="Only these LAs of the region (repeat).")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, region, owner and date: same documents.")] = 1,
    on: Annotated[str | None, typer.Option(help="Date the documents are made for (default today).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write <id>.json files into this folder.")] = None,
    publish_to_node: Annotated[
        bool, typer.Option("--publish", help="Publish them on the node in --data-dir (existing ids are skipped).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """A synthetic fee cap, placement protocol and framework for a region (labelled synthetic)."""
    if out is None and not publish_to_node:
        fail("say where the documents go: --out DIR and/or --publish")
    day = _date(on, "--on") if on else service.today()
    if publish_to_node:
        with _node(data_dir) as opened:
            owner = owner or opened.settings.node_id
            if owner != opened.settings.node_id:
                fail(f"--owner {owner} is not this node ({opened.settings.node_id}); a node publishes only its own")
            results = _synthesise(region, owner, day, seed, la, out)
            results = _publish_all(opened, results)
    else:
        results = _synthesise(region, owner or _default_owner(region), day, seed, la, out)
    if json_output:
        print_json(results)
        return
    for item in results:
        out_console.print(f"{item['kind']:<19} {item['id']:<45} {item.get('outcome', 'written')}")


def _default_owner(region: str) -> str:
    try:
        return default_owner(region)
    except KeyError:
        fail(f"--region {region!r} is not an English region code (E12000001-E12000009)")


def _synthesise(
    region: str, owner: str, day: date, seed: int, la: list[str] | None, out: Path | None
) -> list[dict[str, Any]]:
    try:
        made = synth_publications(region, owner=owner, on=day, seed=seed, la_codes=la)
    except ValueError as exc:
        fail(str(exc))
    results: list[dict[str, Any]] = []
    for item in made:
        entry: dict[str, Any] = {"kind": item.kind.value, "id": item.id, "document": item.document}
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{item.id}.json"
            path.write_text(json.dumps(item.document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            entry["file"] = str(path)
        results.append(entry)
    return results


def _publish_all(opened: _Opened, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Publish in order (fee cap, protocol, framework), skipping ids already held; the protocol cites the cap held."""
    node_id = opened.settings.node_id
    published: list[dict[str, Any]] = []
    fee_cap_ref: dict[str, Any] | None = None
    with Session(opened.engine) as session:
        try:
            for item in items:
                kind, document = Kind(item["kind"]), dict(item["document"])
                if kind is Kind.placement_protocol and fee_cap_ref is not None:
                    document["fee_cap"] = fee_cap_ref
                try:
                    held = service.get_latest(session, item["id"], node_id=node_id)
                    outcome = "already published: skipped"
                except PublicationNotFound:
                    held = service.publish(
                        session, signer=opened.signer, kind=kind, document=document, publication_id=item["id"]
                    )
                    _audit(session, opened, "cli.synth.publications", kind)
                    outcome = "published"
                if kind is Kind.fee_cap:
                    fee_cap_ref = {"id": item["id"], "version": held.version.version, "sha256": held.version.sha256}
                published.append({**_summary(held), "outcome": outcome})
            session.commit()
        except ValidationFailed as exc:
            _explain(exc)
    return published


def _date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date (YYYY-MM-DD)")


def install(app: typer.Typer, *, synth: typer.Typer) -> None:
    """Add ``publish``, the ``publications`` group and ``synth publications`` to the ``rcc-node`` command line."""
    app.command("publish")(publish)
    app.add_typer(publications_app, name="publications")
    synth.command("publications")(synth_publications_command)
