"""What ``rcc-node federation up`` puts into its nodes: clients, synthetic data and signed agreements.

Each step is what the matching command does (``clients add``, ``synth capacity``, ``synth publications
--publish``, ``synth episodes`` + ``import episodes`` + ``stats build``, ``agreements draft|sign|bundle|import``),
called in-process, and each is safe to repeat on a folder set up before: clients whose secret still opens them
are reused, publications already held are skipped, capacity is refreshed (same seed, a later clock: every report
is newer than the one it replaces), statistics are made once (a node that holds a release keeps it), and an
agreement already active on both parties is left alone — one that lapsed or was revoked gets a new version that
supersedes it. Agreements travel as bundles, exactly as two RCCs without a live link would exchange them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from agreements import bundle as bundles
from agreements import documents, exchange, service
from agreements.errors import AgreementNotFound
from agreements.keys import StaticKeys
from agreements.models import AgreementPublic
from agreements.runtime import AgreementsRuntime
from registry.capacity.synth import store, synth_capacity
from registry.cli.common import err_console, fail, own_environment
from registry.core.auth import service as clients
from registry.core.auth.models import ClientCreate
from registry.core.db import make_engine, utcnow
from registry.core.errors import NodeError
from registry.core.keys import KeyRing
from registry.core.settings import Settings
from registry.statistics import service as statistics
from registry.statistics.errors import ReleaseNotFound
from registry.statistics.synth import COLUMNS as EPISODE_COLUMNS
from registry.statistics.synth import generate_rows
from schemas.vocabulary import Dataset, Purpose, Role

T = TypeVar("T")

SE, GM, LDN, NAT = "rcc-south-east", "rcc-greater-manchester", "rcc-london", "rcc-national"
GM_BOROUGHS = tuple(f"E080000{n:02d}" for n in range(1, 11))  # Bolton … Wigan, the ten Greater Manchester boroughs
PUBLICATIONS = (
    Dataset.publications_frameworks,
    Dataset.publications_placement_protocols,
    Dataset.publications_fee_caps,
)
AGREEMENT_YEARS = 2
# Synthetic children looked after per LA: enough for tables with figures in them, few enough to make a region's
# episodes, import them and build its release in a second or two (once per folder: later runs keep it).
STATISTICS_CHILDREN_PER_LA = 120


@dataclass(frozen=True)
class Member:
    """One node of the local federation: who it is, where it lives, what it holds."""

    folder: str
    node_id: str
    name: str
    kind: str
    region_code: str | None
    offset: int
    las: tuple[str, ...] = ()
    roles: tuple[Role, ...] = (Role.commissioner,)


MEMBERS = (
    Member("south-east", SE, "South East RCC", "regional", "E12000008", 0),
    Member("greater-manchester", GM, "Greater Manchester RCC", "regional", "E12000002", 1, las=GM_BOROUGHS),
    Member("london", LDN, "London RCC", "regional", "E12000007", 2),
    Member("national", NAT, "National node", "national", None, 3, roles=(Role.commissioner, Role.analyst)),
)
BY_ID = {m.node_id: m for m in MEMBERS}


@dataclass(frozen=True)
class AgreementSpec:
    """An agreement the federation starts with; the first party drafts it and signs first."""

    id: str
    title: str
    kind: str
    parties: tuple[str, str]
    grants: tuple[dict[str, Any], ...]


def _grant(provider: str, recipient: str, datasets: tuple[Dataset, ...], purpose: Purpose) -> dict[str, Any]:
    return {
        "provider": provider,
        "recipients": [recipient],
        "datasets": [d.value for d in datasets],
        "purposes": [purpose.value],
    }


def _witnessing(provider: str, recipient: str) -> dict[str, Any]:
    """``recipient`` may witness ``provider``'s audit log (fetch its signed tree heads and consistency proofs)."""
    return _grant(provider, recipient, (Dataset.audit_tree_heads,), Purpose.audit_witnessing)


def _cross_border(agreement_id: str, a: str, b: str) -> AgreementSpec:
    """A cross-border MoU, both ways: vacancies (placement search), publications (market transparency), witnessing."""
    grants = tuple(
        g
        for provider, recipient in ((a, b), (b, a))
        for g in (
            _grant(provider, recipient, (Dataset.capacity_vacancies,), Purpose.placement_search),
            _grant(provider, recipient, PUBLICATIONS, Purpose.market_transparency),
            _witnessing(provider, recipient),
        )
    )
    title = f"Cross-border placement MoU: {BY_ID[a].name} and {BY_ID[b].name}"
    return AgreementSpec(agreement_id, title, "memorandum-of-understanding", (a, b), grants)


def _with_national(region: Member) -> AgreementSpec:
    """A region's DSA with the national node: secure beds and statistics up, national statistics back, witnessing.

    Each party witnesses the other's audit log, so the national node keeps every region's tree heads.
    """
    grants = (
        _grant(region.node_id, NAT, (Dataset.capacity_secure_beds,), Purpose.secure_placement),
        _grant(region.node_id, NAT, (Dataset.statistics_looked_after,), Purpose.national_statistics),
        _grant(NAT, region.node_id, (Dataset.statistics_looked_after,), Purpose.national_statistics),
        _witnessing(region.node_id, NAT),
        _witnessing(NAT, region.node_id),
    )
    title = f"Secure beds and national statistics: {region.name} and the national node"
    return AgreementSpec(
        f"{region.folder}-national-dsa", title, "data-sharing-agreement", (region.node_id, NAT), grants
    )


AGREEMENTS = (
    _cross_border("se-london-mou", SE, LDN),
    _cross_border("se-gm-mou", SE, GM),
    *(_with_national(m) for m in MEMBERS if m.kind == "regional"),
)

_DESCRIPTIONS = {
    Dataset.capacity_vacancies: "Placement vacancies: setting, LA, postcode district, ages, needs, beds, fee.",
    Dataset.capacity_secure_beds: "Secure children's homes: approved places and free beds by sex and age.",
    Dataset.statistics_looked_after: "Disclosure-controlled aggregate tables of children looked after (no records).",
    Dataset.audit_tree_heads: "Signed audit tree heads and consistency proofs: sizes and hashes, no audit entries.",
}


def agreement_document(spec: AgreementSpec, *, today: date, version: int = 1, supersedes: Any = None) -> dict[str, Any]:
    """The agreement's document, valid from today for two years with a review after one (synthetic parties)."""
    datasets = sorted({d for g in spec.grants for d in g["datasets"]})
    document: dict[str, Any] = {
        "id": spec.id,
        "version": version,
        "title": spec.title,
        "kind": spec.kind,
        "parties": [
            {
                "node_id": node_id,
                "organisation": f"{BY_ID[node_id].name} (synthetic, local federation)",
                "signatory_role": "Director of Children's Services",
                "contacts": {
                    "data_protection_officer": {"name": "Data Protection Officer", "email": f"dpo@{node_id}.example"}
                },
            }
            for node_id in spec.parties
        ],
        "grants": list(spec.grants),
        "lawful_basis": {
            "article_6": "public-task",
            "statutory_duties": ["Children Act 1989 s22G (sufficiency duty)", "Children Act 1989 s83 (returns)"],
        },
        "data_items": [
            {
                "dataset": d,
                "description": _DESCRIPTIONS.get(Dataset(d), "Published documents of the region (no personal data)."),
                "personal_data": False,
                "special_category": False,
            }
            for d in datasets
        ],
        "retention": "P1Y",
        "security_measures": ["Signed node-to-node requests (EdDSA)", "Tamper-evident audit log", "TLS in production"],
        "valid_from": today.isoformat(),
        "valid_until": (today + timedelta(days=365 * AGREEMENT_YEARS - 1)).isoformat(),
        "review_by": (today + timedelta(days=365)).isoformat(),
        "text": f"# {spec.title}\n\nA synthetic agreement made by `rcc-node federation up` for trying the registry "
        "out. The parties share exactly what the grants say, for the purposes named, and nothing else.\n",
    }
    if spec.kind == "data-sharing-agreement":
        document["dpia_reference"] = f"DPIA-LOCAL-{spec.id.upper()}"
    if supersedes is not None:
        document["supersedes"] = supersedes
    return document


def example_search(today: date | None = None) -> dict[str, Any]:
    """The search the banner prints: a 14-year-old girl from Kent, placements anywhere agreements reach."""
    day = today or utcnow().date()
    return {
        "age": 14,
        "sex": "female",
        "needs": ["emotional-behavioural-difficulties"],
        "home_la": "E10000016",
        "needed_by": (day + timedelta(days=14)).isoformat(),
        "reach": "national",
        "purpose": "placement-search",
    }


@dataclass
class Target:
    """A node to provision, with what the caller already loaded."""

    member: Member
    data_dir: Path
    settings: Settings
    keys: KeyRing
    engine: Engine | None = None

    @property
    def db(self) -> Engine:
        if self.engine is None:
            self.engine = make_engine(self.settings.effective_database_url)
        return self.engine


@dataclass
class Report:
    """What was provisioned: each node's clients (role → id and secret) and each agreement's state."""

    clients: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    agreements: list[dict[str, Any]] = field(default_factory=list)


def provision(targets: list[Target], *, root: Path, seed: int) -> Report:
    """Clients, synthetic capacity and publications on every regional node, then the agreements."""
    report = Report()
    try:
        report.clients = _clients(targets, root / "clients.json")
        for target in targets:
            if target.member.kind == "regional":
                _capacity(target, seed)
                _publications(target, seed)
                _statistics(target, seed)
        peers = StaticKeys.from_jwks({t.member.node_id: t.keys.jwks() for t in targets})
        runtimes = {
            t.member.node_id: AgreementsRuntime.standalone(
                node_id=t.member.node_id, keys=t.keys, engine=t.db, peers=peers
            )
            for t in targets
        }
        today = utcnow().date()
        report.agreements = [_agreement(spec, runtimes, today) for spec in AGREEMENTS]
    except SQLAlchemyError as exc:  # a driver error: one line naming it, as every command does
        fail(f"cannot set up the nodes' data: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        for target in targets:
            if target.engine is not None:
                target.engine.dispose()
    return report


# -------------------------------------------------------------------------------------------------- clients


def _clients(targets: list[Target], path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """One client per role on each node; a stored one is reused while it is active and its secret still opens it."""
    stored: Any = {}
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(stored, dict):
        stored = {}
    result: dict[str, dict[str, dict[str, str]]] = {}
    for target in targets:
        node_id = target.member.node_id
        mine: dict[str, dict[str, str]] = {}
        with Session(target.db) as session:
            for role in target.member.roles:
                held = stored.get(node_id, {}).get(role.value)
                if not _usable(session, held):
                    made = clients.create(
                        session, data=ClientCreate(name=f"{target.member.folder} {role.value}", roles=[role])
                    )
                    held = {"client_id": made.client_id, "client_secret": str(made.client_secret)}
                    err_console.print(f"{target.member.folder}: {role.value} client {made.client_id}")
                mine[role.value] = held
            session.commit()
        result[node_id] = mine
    _write_secret(path, json.dumps(result, indent=2) + "\n")
    return result


def _usable(session: Session, held: Any) -> bool:
    if not isinstance(held, dict) or not {"client_id", "client_secret"} <= held.keys():
        return False
    client = clients.get(session, client_id=str(held["client_id"]))
    return (
        client is not None
        and client.revoked_at is None
        and client.secret_hash is not None
        and clients.verify_secret(str(held["client_secret"]), client.secret_hash)
    )


def _write_secret(path: Path, text: str) -> None:
    """Client secrets, readable by this user only (they stay in clear here so a re-run can print them)."""
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(text)
    partial.replace(path)


# --------------------------------------------------------------------------------------------- synthetic data


def _capacity(target: Target, seed: int) -> None:
    """``rcc-node synth capacity``: fresh synthetic vacancies and secure homes (replacing the last run's)."""
    region = str(target.member.region_code)
    now = utcnow().replace(microsecond=0)
    made = synth_capacity(region, seed=seed, now=now, la_codes=list(target.member.las) or None)
    try:
        with Session(target.db) as session:
            vacancies, homes = store(session, made, now=utcnow())
            session.commit()
    except NodeError as exc:  # e.g. a different --seed than last time: keep what the node holds
        err_console.print(f"[yellow]{target.member.folder}: capacity kept as it was ({exc.code}: {exc.detail})[/]")
        return
    err_console.print(f"{target.member.folder}: {vacancies} synthetic vacancies, {homes} secure homes")


def _publications(target: Target, seed: int) -> None:
    """``rcc-node synth publications --publish``: fee cap, placement protocol, framework (ids held are skipped)."""
    from registry.cli.publications import synth_publications_command

    printed = io.StringIO()
    with own_environment(), contextlib.redirect_stdout(printed):
        synth_publications_command(
            region=str(target.member.region_code),
            data_dir=target.data_dir,
            owner=None,
            la=list(target.member.las) or None,
            seed=seed,
            on=None,
            out=None,
            publish_to_node=True,
            json_output=True,
        )
    outcomes = [item.get("outcome", "") for item in json.loads(printed.getvalue())]
    published = sum(1 for o in outcomes if o == "published")
    err_console.print(f"{target.member.folder}: {published} publications published, {len(outcomes) - published} held")


def _statistics(target: Target, seed: int, *, today: date | None = None) -> None:
    """``synth episodes`` and ``import episodes`` for each of the node's LAs, then ``stats build``: a signed release.

    Done once: a node that holds a release keeps it (and the episodes it was built from). Episodes are made in
    memory and imported as a CSV stream, as the command reads a file, all in one transaction with the build, so
    an interrupted first run leaves nothing and the next one starts again. The year is the latest collection
    year that has ended; GM imports its ten boroughs only, so the rest of the North West shows as missing.
    """
    started = time.monotonic()
    member, settings = target.member, target.settings
    region = str(member.region_code)
    year = latest_collection_year(today or utcnow().date())
    las = list(member.las) or statistics.area_las(region)
    salt = statistics.load_salt(settings.data_dir)
    with Session(target.db) as session:
        try:
            held = statistics.get_release_or_raise(session)
        except ReleaseNotFound:
            held = None
        if held is not None:
            err_console.print(f"{member.folder}: statistics release {held.version} ({held.year}) kept")
            return
        try:
            episodes = sum(
                statistics.import_episodes(
                    session, _episode_file(la, year, seed), la=la, year=year, salt=salt, area_code=region
                ).episodes
                for la in las
            )
            release = statistics.build_release(
                session, node_id=settings.node_id, area_code=region, key=target.keys.active, year=year
            )
        except NodeError as exc:
            err_console.print(f"[yellow]{member.folder}: no statistics ({exc.code}: {exc.detail})[/]")
            return
        version = release.version
        session.commit()
    err_console.print(
        f"{member.folder}: {episodes} synthetic episodes of {len(las)} LAs, statistics release {version} ({year}) "
        f"signed in {time.monotonic() - started:.1f} s"
    )


def latest_collection_year(today: date) -> int:
    """The SSDA903 collection year (ending 31 March) that ended most recently."""
    return today.year if (today.month, today.day) > (3, 31) else today.year - 1


def _episode_file(la: str, year: int, seed: int) -> io.StringIO:
    """``rcc-node synth episodes --la LA --year YEAR``'s file, in memory."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(EPISODE_COLUMNS)
    writer.writerows(generate_rows(la=la, year=year, children=STATISTICS_CHILDREN_PER_LA, seed=seed))
    text.seek(0)
    return text


# ----------------------------------------------------------------------------------------------- agreements


def _call(runtime: AgreementsRuntime, action: Callable[..., T], **kwargs: Any) -> T:
    """One service call in its own committed transaction, as the ``agreements`` commands run them."""
    with Session(runtime.engine) as session:
        result = action(session, runtime=runtime, **kwargs)
        session.commit()
        return result


def _held(runtime: AgreementsRuntime, agreement_id: str) -> AgreementPublic | None:
    try:
        return _call(runtime, service.get, agreement_id=agreement_id)
    except AgreementNotFound:
        return None


def _agreement(spec: AgreementSpec, runtimes: dict[str, AgreementsRuntime], today: date) -> dict[str, Any]:
    """Draft, sign and exchange an agreement until both parties hold it active (or leave it if they do)."""
    first, second = (runtimes[p] for p in spec.parties)
    held, other = _held(first, spec.id), _held(second, spec.id)
    outcome = "kept"
    current = held and other and held.state == other.state == "active" and held.version == other.version
    # A folder made by an older release holds fewer grants (witnessing came later): a new version supersedes it.
    if not (current and held is not None and held.document.get("grants") == list(spec.grants)):
        if held is not None and held.state in ("draft", "proposed"):
            document = held.document  # an exchange cut short last time: finish it
        else:
            previous = {"id": spec.id, "version": held.version, "sha256": held.sha256} if held else None
            document = agreement_document(
                spec, today=today, version=held.version + 1 if held else 1, supersedes=previous
            )
        version = int(document["version"])
        try:
            _call(first, service.create, document=document)
            _call(first, service.sign, agreement_id=spec.id, version=version)
            _call(second, exchange.import_bundle, bundle=_call(first, bundles.build, agreement_id=spec.id))
            # The second party pins the digest of what it imported, as `agreements sign --sha256` does.
            _call(second, service.sign, agreement_id=spec.id, version=version, sha256=documents.digest(document))
            _call(first, exchange.import_bundle, bundle=_call(second, bundles.build, agreement_id=spec.id))
        except NodeError as exc:
            fail(f"agreement {spec.id}: {exc.detail} ({exc.code})")
        held = _held(first, spec.id)
        outcome = "signed"
    assert held is not None  # noqa: S101 - stored above
    err_console.print(f"agreement {spec.id} v{held.version}: {held.state} ({outcome})")
    return {"id": spec.id, "version": held.version, "parties": list(spec.parties), "state": held.state}
