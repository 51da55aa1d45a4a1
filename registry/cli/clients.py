"""``rcc-node clients``: register, list and revoke the OAuth 2.0 clients that may get tokens from this node.

A client's secret is printed once, when it is made, and never stored in clear; a client registered with
``--jwk`` authenticates with ``private_key_jwt`` and has no secret at all. Revocation takes effect at once:
the node refuses the client's next token request and every access token it already holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from registry.cli.common import DataDirOption, JsonOption, err_console, fail, out_console, print_json, settings_for
from registry.core.auth import service
from registry.core.auth.models import ClientCreate, ClientPublic
from registry.core.db import make_engine
from registry.core.errors import NodeError
from schemas.vocabulary import Role

clients_app = typer.Typer(help="OAuth 2.0 clients of this node (client credentials).", no_args_is_help=True)

RoleOption = Annotated[
    list[Role],
    typer.Option("--role", help="A role the client may be granted (repeat for several).", case_sensitive=False),
]
JwkOption = Annotated[
    Path | None,
    typer.Option("--jwk", help="The client's public key (JWK JSON file): it then authenticates with private_key_jwt."),
]


def _engine(data_dir: Path) -> Engine:
    return make_engine(settings_for(data_dir).effective_database_url)


def _read_jwk(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read the JWK in {path}: {exc}")
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        if len(document["keys"]) != 1:
            fail(f"{path} holds a JWKS with {len(document['keys'])} keys; give exactly one public key")
        document = document["keys"][0]
    if not isinstance(document, dict):
        fail(f"{path} does not hold a JWK object")
    return document


def _row(client: ClientPublic) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "roles": client.roles,
        "auth_method": client.auth_method,
        "created_at": client.created_at.isoformat(),
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
        "locked_until": client.locked_until.isoformat() if client.locked_until else None,
    }


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the client is, e.g. 'Kent commissioning app'.")],
    role: RoleOption,
    jwk: JwkOption = None,
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Register a client; prints its client_id and (unless --jwk) its client_secret, which is shown only once."""
    key = _read_jwk(jwk) if jwk is not None else None
    try:
        data = ClientCreate(name=name, roles=role, jwk=key)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    engine = _engine(data_dir)
    try:
        with Session(engine) as session:
            created = service.create(session, data=data)
            session.commit()
    except NodeError as exc:
        fail(exc.detail)
    except Exception as exc:  # a driver error: one line, not a traceback
        fail(f"cannot store the client: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    if json_output:
        print_json({**_row(created), "client_secret": created.client_secret})
        return
    out_console.print(f"client_id:     {created.client_id}")
    if created.client_secret is not None:
        out_console.print(f"client_secret: {created.client_secret}")
        err_console.print("Store the secret now: it is not kept in clear and cannot be shown again.")
    else:
        out_console.print("auth method:   private_key_jwt (no secret; sign client assertions with your key)")
    out_console.print(f"roles:         {' '.join(created.roles)}")


@clients_app.command("list")
def clients_list(
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
    active_only: Annotated[bool, typer.Option("--active", help="Leave out revoked clients.")] = False,
) -> None:
    """Every client with its roles and state (never a secret)."""
    engine = _engine(data_dir)
    try:
        with Session(engine) as session:
            rows = [_row(ClientPublic.of(c)) for c in service.list_clients(session, include_revoked=not active_only)]
    except Exception as exc:  # a driver error: one line, not a traceback
        fail(f"cannot read clients: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    if json_output:
        print_json(rows)
        return
    if not rows:
        out_console.print("No clients yet: rcc-node clients add NAME --role ROLE")
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        out_console.print(
            f"{row['client_id']:<40} {state:<10} {row['auth_method']:<20} {' '.join(row['roles']):<30} {row['name']}"
        )


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(help="The client_id to revoke.")],
    data_dir: DataDirOption = Path(".rcc"),
    json_output: JsonOption = False,
) -> None:
    """Revoke a client for good: no new tokens, and the tokens it holds stop working at once."""
    engine = _engine(data_dir)
    try:
        with Session(engine) as session:
            client = ClientPublic.of(service.revoke(session, client_id=client_id))
            session.commit()
    except NodeError as exc:
        fail(exc.detail)
    except Exception as exc:  # a driver error: one line, not a traceback
        fail(f"cannot revoke the client: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    if json_output:
        print_json(_row(client))
    else:
        out_console.print(f"Revoked {client.client_id}; its tokens no longer work.")
