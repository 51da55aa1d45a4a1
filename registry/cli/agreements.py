"""``rcc-node agreements``: register, sign, propose, inspect, end and verify data-sharing agreements.

Commands that change the register work on the node's own database and keys (``--data-dir``), as a request
would, each in one transaction; a running node sees the change on its next policy decision. Then ``propose``,
``sign``, ``revoke``, ``withdraw`` and ``renew`` send what the change queued to every other party's node over
the federation, as the node itself would, and print each party's outcome; what is not delivered stays queued
and the running node retries it. A node outside any federation only queues. ``verify`` needs no node at all:
a bundle and the parties' keys (a signed directory file, or ``{node_id: JWKS}``) suffice. Parties that cannot
reach each other can still exchange ``bundle`` files and ``import`` them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlmodel import Session

from agreements import bundle as bundles
from agreements import exchange, outbox, service
from agreements.keys import KeyFileError, KeyResolver, LoadedKeys, StaticKeys, load_key_file
from agreements.models import AgreementPublic, AgreementSummary, Bundle, DeliveryPublic, VerifyReport
from agreements.runtime import AgreementsRuntime
from federation.agreements import AgreementCourier
from federation.directory import load_pinned_keys, verify_envelope
from federation.errors import DirectoryRejected
from registry.cli.common import (
    DataDirOption,
    JsonOption,
    err_console,
    fail,
    keys_for,
    node_federation,
    out_console,
    print_json,
    settings_for,
)
from registry.core.db import make_engine, utcnow
from registry.core.errors import NodeError

agreements_app = typer.Typer(
    help="Data-sharing agreements: draft, sign, propose, list, show, revoke, verify.", no_args_is_help=True
)

T = TypeVar("T")
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The agreement's id.")]
VersionOption = Annotated[int | None, typer.Option("--version", min=1, help="A version (default: the newest).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; recorded in the signed event.")]
DirectoryOption = Annotated[
    Path,
    typer.Option(
        "--directory",
        help='The parties\' keys: a signed directory ({"directory": …, "signature": …}) or {node_id: JWKS}.',
    ),
]


@contextmanager
def _runtime(data_dir: Path, peers: KeyResolver | None = None) -> Iterator[tuple[AgreementsRuntime, Session]]:
    """This node's runtime and one session; commits if the command's work succeeds, like a request."""
    settings = settings_for(data_dir)
    keys = keys_for(settings)
    engine = make_engine(settings.effective_database_url)
    runtime = AgreementsRuntime.standalone(node_id=settings.node_id, keys=keys, engine=engine, peers=peers)
    try:
        with Session(engine) as session:
            yield runtime, session
            session.commit()
    finally:
        engine.dispose()


def _run(data_dir: Path, action: Callable[[AgreementsRuntime, Session], T], peers: KeyResolver | None = None) -> T:
    try:
        with _runtime(data_dir, peers) as (runtime, session):
            return action(runtime, session)
    except NodeError as exc:
        _refused(exc)


def _deliver(data_dir: Path, agreement: AgreementPublic) -> AgreementPublic:
    """Send what the change queued for the other parties now, as the node would; the agreement with the outcomes."""
    if not any(d.state == outbox.PENDING for d in agreement.deliveries):
        return agreement
    with node_federation(settings_for(data_dir)) as federation:
        federation.start()
        if not federation.store.configured:
            err_console.print("not in a federation (no operator_jwks or directory): deliveries stay queued")
            return agreement
        node = federation.node
        runtime = AgreementsRuntime.standalone(node_id=node.node_id, keys=node.keys, engine=node.engine)
        deliveries = asyncio.run(_send(AgreementCourier(federation, runtime), agreement.agreement))
    return agreement.model_copy(update={"deliveries": deliveries})


async def _send(courier: AgreementCourier, agreement_id: str) -> list[DeliveryPublic]:
    try:
        return await courier.deliver(agreement_id)
    finally:
        await courier.federation.aclose()


def _refused(exc: NodeError) -> NoReturn:
    for error in exc.errors or []:
        err_console.print(f"  {error.get('path') or '/'}: {error.get('message')}")
    fail(f"{exc.detail} ({exc.code})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read JSON from {path}: {exc}")


def _keys(directory: Path) -> LoadedKeys:
    try:
        return load_key_file(directory)
    except KeyFileError as exc:
        fail(str(exc))


def _print_agreement(agreement: AgreementPublic, json_output: bool) -> None:
    if json_output:
        print_json(agreement.model_dump(mode="json"))
        return
    out_console.print(f"[bold]{agreement.agreement}[/] v{agreement.version}  {agreement.title}")
    out_console.print(f"  state      {agreement.state}")
    out_console.print(f"  sha256     {agreement.sha256}")
    out_console.print(f"  parties    {', '.join(agreement.parties)}")
    signed = [s.node_id for s in agreement.signatures]
    out_console.print(
        f"  signed by  {', '.join(signed) or '-'}; missing {', '.join(agreement.missing_signatures) or '-'}"
    )
    if agreement.withdrawn:
        out_console.print(f"  withdrawn  {', '.join(agreement.withdrawn)}")
    out_console.print(
        f"  valid      {agreement.valid_from} to {agreement.valid_until}, review by {agreement.review_by}"
    )
    for warning in agreement.attention:
        out_console.print(f"  [yellow]attention[/] {warning.kind} {warning.due} ({warning.days_left} days)")
    for event in agreement.events:
        out_console.print(f"  {event.at.isoformat()}  {event.type:<9} by {event.by}  {event.reason or ''}".rstrip())
    for delivery in agreement.deliveries:
        last = f" (last attempt: {delivery.outcome}{f', {delivery.detail}' if delivery.detail else ''})"
        out_console.print(
            f"  delivery   {delivery.node_id}: {delivery.state}{last if delivery.outcome else ''}".rstrip()
        )


@agreements_app.command("draft")
def draft(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The agreement document (JSON).")],
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Register a draft agreement from a JSON file (validated against agreement.schema.json)."""
    document = _read_json(file)
    agreement, _created = _run(data_dir, lambda rt, s: service.create(s, runtime=rt, document=document))
    _print_agreement(agreement, json_output)


@agreements_app.command("sign")
def sign(
    agreement_id: IdArgument,
    version: VersionOption = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Refuse unless the version has this digest.")] = None,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Sign a version with this node's key (once proposed, the signature is sent to every other party)."""
    agreement = _run(
        data_dir, lambda rt, s: service.sign(s, runtime=rt, agreement_id=agreement_id, version=version, sha256=sha256)
    )
    _print_agreement(_deliver(data_dir, agreement), json_output)


@agreements_app.command("propose")
def propose(
    agreement_id: IdArgument,
    version: VersionOption = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Refuse unless the version has this digest.")] = None,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Sign and propose a version, and send it to every other party's node; prints each party's outcome."""
    agreement = _run(
        data_dir,
        lambda rt, s: service.propose(s, runtime=rt, agreement_id=agreement_id, version=version, sha256=sha256),
    )
    agreement = _deliver(data_dir, agreement)
    _print_agreement(agreement, json_output)
    if any(d.state != outbox.DELIVERED for d in agreement.deliveries) and not json_output:
        err_console.print("not every party has it yet: the node retries, or run propose again")


@agreements_app.command("list")
def list_agreements(
    state: Annotated[str | None, typer.Option("--state", help="Only this state.")] = None,
    party: Annotated[str | None, typer.Option("--party", help="Only agreements with this party.")] = None,
    attention: Annotated[bool, typer.Option("--attention", help="Only agreements needing attention.")] = False,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """The agreements register with each version's state now."""
    rows: list[AgreementSummary] = _run(
        data_dir,
        lambda rt, s: service.list_agreements(
            s, runtime=rt, state=state, party=party, attention=True if attention else None
        ),
    )
    if json_output:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    for row in rows:
        flag = " [yellow]attention[/]" if row.attention else ""
        out_console.print(f"{row.agreement}  v{row.version}  {row.state:<10} {', '.join(row.parties)}{flag}")


@agreements_app.command("show")
def show(
    agreement_id: IdArgument,
    version: VersionOption = None,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """One agreement version: state, signatures, events."""
    agreement = _run(data_dir, lambda rt, s: service.get(s, runtime=rt, agreement_id=agreement_id, version=version))
    _print_agreement(agreement, json_output)


@agreements_app.command("revoke")
def revoke(
    agreement_id: IdArgument,
    reason: ReasonOption,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Revoke the agreement (a signed event; it takes effect at once and is sent to every other party)."""
    agreement = _run(data_dir, lambda rt, s: service.revoke(s, runtime=rt, agreement_id=agreement_id, reason=reason))
    _print_agreement(_deliver(data_dir, agreement), json_output)


@agreements_app.command("withdraw")
def withdraw(
    agreement_id: IdArgument,
    reason: ReasonOption,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Withdraw this node from the agreement (its grants end; the other parties' stand)."""
    agreement = _run(data_dir, lambda rt, s: service.withdraw(s, runtime=rt, agreement_id=agreement_id, reason=reason))
    _print_agreement(_deliver(data_dir, agreement), json_output)


@agreements_app.command("renew")
def renew(
    agreement_id: IdArgument,
    review_by: Annotated[str, typer.Option("--review-by", help="The new review date, YYYY-MM-DD.")],
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Sign this node's renewal to a new review date (it counts once every party has renewed)."""
    try:
        day = date.fromisoformat(review_by)
    except ValueError:
        fail(f"--review-by {review_by!r} is not a date (YYYY-MM-DD)")
    agreement = _run(data_dir, lambda rt, s: service.renew(s, runtime=rt, agreement_id=agreement_id, review_by=day))
    _print_agreement(_deliver(data_dir, agreement), json_output)


@agreements_app.command("bundle")
def export_bundle(
    agreement_id: IdArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    data_dir: DataDirOption = Path(".rcc"),
) -> None:
    """Export document, signatures and events of every version as one JSON file."""
    built = _run(data_dir, lambda rt, s: bundles.build(s, runtime=rt, agreement_id=agreement_id))
    text = json.dumps(built.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"Wrote {output}")


@agreements_app.command("import")
def import_bundle(
    file: Annotated[Path, typer.Argument(metavar="BUNDLE", help="A bundle file from another party.")],
    directory: DirectoryOption,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Take in another party's bundle: every signature and event is verified against the given keys first."""
    loaded = _load_bundle(file)
    keys = _keys(directory)
    results = _run(data_dir, lambda rt, s: exchange.import_bundle(s, runtime=rt, bundle=loaded), peers=keys.resolver)
    if json_output:
        print_json([r.model_dump(mode="json") for r in results])
        return
    for r in results:
        out_console.print(
            f"{r.agreement} v{r.version}: document {'stored' if r.document_stored else 'already held'}, "
            f"{r.signatures_stored} new signature(s), {r.events_stored} new event(s)"
        )


@agreements_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(metavar="BUNDLE", help="A bundle file (rcc-node agreements bundle).")],
    directory: DirectoryOption,
    operator_jwks: Annotated[
        str | None,
        typer.Option("--operator-jwks", help="Pin the directory operator's key (JWK/JWKS JSON or a file holding one)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Verify a bundle offline (no node needed); exits non-zero if any signature or event is bad."""
    loaded = _load_bundle(file)
    if operator_jwks is not None:
        resolver, notes = _pinned_directory(directory, operator_jwks)
    else:
        keys = _keys(directory)
        resolver, notes = keys.resolver, list(keys.notes)
    report = bundles.verify_bundle(loaded, resolver)
    report.notes[:0] = notes
    _print_report(report, json_output)
    if not report.valid:
        raise typer.Exit(1)


def _load_bundle(path: Path) -> Bundle:
    try:
        return Bundle.model_validate(_read_json(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{path} is not an agreement bundle: {'/'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _pinned_directory(directory: Path, operator_jwks: str) -> tuple[StaticKeys, list[str]]:
    # The federation's own directory check (pinned operator key, schema, unique thumbprints); expiry is only
    # reported, because an old agreement is verified against the directory of its day.
    try:
        pinned = load_pinned_keys(operator_jwks)
        checked = verify_envelope(_read_json(directory), pinned, now=utcnow(), check_expiry=False)
    except (ValueError, DirectoryRejected) as exc:
        fail(f"directory refused: {exc}")
    notes = [f"directory serial {checked.serial} verified with the pinned operator key"]
    if checked.expired(utcnow()):
        notes.append(f"directory expired at {checked.expires_at.isoformat()}")
    return StaticKeys.from_directory(checked.document), notes


def _print_report(report: VerifyReport, json_output: bool) -> None:
    if json_output:
        print_json(report.model_dump(mode="json"))
        return
    for note in report.notes:
        out_console.print(f"note: {note}")
    for version in report.versions:
        mark = "[green]valid[/]" if version.valid else "[red]INVALID[/]"
        out_console.print(f"{report.agreement} v{version.version} {version.sha256}: {mark}")
        for s in version.signatures:
            outcome = "ok" if s.valid else f"[red]{s.reason}[/]"
            out_console.print(
                f"  signature {s.node_id:<28} key {s.kid or '?'} ({s.key_status or 'unknown'}): {outcome}"
            )
        for e in version.events:
            outcome = "ok" if e.valid else f"[red]{e.reason}[/]"
            out_console.print(f"  event     {e.type:<9} by {e.by:<22}: {outcome}")
        if version.missing_signatures:
            out_console.print(f"  not yet signed by {', '.join(version.missing_signatures)}")
    out_console.print("[green]bundle verifies[/]" if report.valid else "[red]bundle does NOT verify[/]")
