"""The directory a node holds: accepted once, persisted, refreshed on a schedule, reported by ``/readyz``.

The database is the truth (:class:`federation.models.DirectoryRecord`): the highest serial accepted is the one
in force, for every worker and across restarts, so an older directory can never come back. Each worker keeps
the parsed :class:`~federation.directory.Directory` in memory and every ``directory_refresh_seconds`` looks
for a newer one — in the database (another worker, or ``rcc-node directory load``), in ``directory_file``
(if it changed), and at the operator (``GET {operator_url}/federation/v1/directory``). A failed fetch keeps
the last good directory: the node goes on working through an operator outage until that directory expires,
and then refuses to federate, and ``/readyz`` turns 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from federation.directory import Directory, format_time, verify_envelope
from federation.errors import DirectoryRejected, DirectoryUnavailable
from federation.models import DirectoryRecord
from registry.core.db import utcnow
from registry.core.threads import run_to_completion

log = logging.getLogger("rcc.federation.directory")
DIRECTORY_PATH = "/federation/v1/directory"

FetchJson = Callable[[str], Awaitable[Any]]
"""``await fetch(url)`` → the parsed JSON body of a public GET (raises on any failure)."""


class DirectoryStore:
    """The directory this node holds, and where newer ones come from."""

    def __init__(
        self,
        engine: Engine,
        *,
        pinned: Mapping[str, Ed25519PublicKey],
        directory_file: Path | None = None,
        operator_url: str | None = None,
        refresh_seconds: float = 300.0,
        fetch: FetchJson | None = None,
        configured: bool | None = None,
    ) -> None:
        self.engine = engine
        self.pinned = dict(pinned)
        self.directory_file = directory_file
        self.operator_url = operator_url.rstrip("/") if operator_url else None
        self.refresh_seconds = refresh_seconds
        self.fetch = fetch
        self.configured = bool(pinned) if configured is None else configured
        self.current: Directory | None = None
        self.last_error: str | None = None
        self.last_refresh_at: datetime | None = None
        self._file_mtime: float | None = None
        self._next_refresh = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    # --- reading ----------------------------------------------------------------------------------------

    def require(self) -> Directory:
        """The directory in force; :class:`DirectoryUnavailable` if none is held or it has expired."""
        current = self.current
        if current is None:
            raise DirectoryUnavailable("this node holds no federation directory")
        if current.expired(utcnow()):
            raise DirectoryUnavailable(
                f"the federation directory (serial {current.serial}) expired at {format_time(current.expires_at)}"
            )
        return current

    def readiness(self) -> tuple[str, bool, dict[str, Any] | str]:
        """``/readyz`` check: serial and age of the directory held; failing once it has expired."""
        if not self.configured:
            return "directory", True, "federation not configured (no operator_jwks)"
        current = self.current
        if current is None:
            return "directory", False, {"serial": None, "reason": "no directory held", "last_error": self.last_error}
        now = utcnow()
        detail: dict[str, Any] = {
            "serial": current.serial,
            "issued_at": format_time(current.issued_at),
            "expires_at": format_time(current.expires_at),
            "age_seconds": int(current.age(now).total_seconds()),
            "expired": current.expired(now),
        }
        if self.last_error:
            detail["last_error"] = self.last_error
        return "directory", not detail["expired"], detail

    # --- accepting --------------------------------------------------------------------------------------

    def accept(self, envelope: Any, *, source: str) -> Directory:
        """Verify a signed directory and hold it if its serial is higher than the one held.

        The same document again is accepted as a no-op; a different document under the serial held is
        refused (``serial-reused``), as is any lower serial (``stale-serial``). Commits on success.
        """
        directory = verify_envelope(envelope, self.pinned, now=utcnow())
        with Session(self.engine) as session:
            held = session.exec(select(func.max(DirectoryRecord.serial))).one()
            if held is not None and directory.serial < held:
                raise DirectoryRejected(
                    "stale-serial", f"serial {directory.serial} is lower than the serial held ({held})", held=held
                )
            if held is not None and directory.serial == held:
                record = session.get(DirectoryRecord, held)
                if record is None or record.digest != directory.digest:
                    raise DirectoryRejected(
                        "serial-reused", f"a different directory with serial {held} is already held", held=held
                    )
            else:
                session.add(
                    DirectoryRecord(
                        serial=directory.serial,
                        issued_at=directory.issued_at,
                        expires_at=directory.expires_at,
                        digest=directory.digest,
                        source=source,
                        envelope=json.dumps(directory.envelope(), separators=(",", ":")),
                        loaded_at=utcnow(),
                    )
                )
                session.commit()
        self._hold(directory)
        return directory

    def load_held(self) -> Directory | None:
        """Read the highest-serial directory from the database into memory (at start, and on refresh)."""
        with Session(self.engine) as session:
            statement = select(DirectoryRecord).order_by(col(DirectoryRecord.serial).desc()).limit(1)
            record = session.exec(statement).first()
            envelope_text = record.envelope if record is not None else None
        if envelope_text is None:
            return self.current
        current = self.current
        if current is not None and current.serial >= json.loads(envelope_text)["directory"]["serial"]:
            return current
        # Verified again on the way in: a row written behind the node's back must still carry the pinned signature.
        directory = verify_envelope(json.loads(envelope_text), self.pinned, now=utcnow(), check_expiry=False)
        self._hold(directory)
        return directory

    def load_file(self) -> Directory | None:
        """Accept ``directory_file`` if it changed since last read; a stale or equal serial there is no error."""
        path = self.directory_file
        if path is None:
            return None
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise DirectoryRejected("missing", f"directory_file {path} does not exist") from None
        if mtime == self._file_mtime:
            return None
        try:
            envelope = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise DirectoryRejected("malformed", f"directory_file {path} is not JSON") from None
        try:
            directory = self.accept(envelope, source="file")
        except DirectoryRejected as exc:
            if exc.reason != "stale-serial":
                raise
            directory = None
        self._file_mtime = mtime
        return directory

    def _hold(self, directory: Directory) -> None:
        current = self.current
        if current is None or directory.serial > current.serial:
            self.current = directory
            log.info("holding federation directory serial %s", directory.serial)

    # --- refreshing -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Synchronous start-up: the directory held in the database, then ``directory_file``. Never raises."""
        if not self.configured:
            return
        for step in (self.load_held, self.load_file):
            try:
                step()
            except Exception as exc:  # a node must start even on a bad file; readiness tells why
                self.last_error = _describe(exc)
                log.warning("directory: %s", self.last_error)

    async def refresh(self) -> None:
        """One refresh round: database, file, operator. Keeps the last good directory on any failure."""
        if not self.configured:
            return
        errors: list[str] = []
        for step in (self.load_held, self.load_file):
            try:
                await run_to_completion(step)
            except Exception as exc:
                errors.append(_describe(exc))
        if self.operator_url and self.fetch is not None:
            try:
                envelope = await self.fetch(self.operator_url + DIRECTORY_PATH)
                await run_to_completion(self._accept_fetched, envelope)
            except Exception as exc:
                errors.append("operator: " + _describe(exc))
        self.last_error = "; ".join(errors) or None
        self.last_refresh_at = utcnow()
        if errors:
            log.warning("directory refresh: %s", self.last_error)

    def _accept_fetched(self, envelope: Any) -> None:
        try:
            self.accept(envelope, source="operator")
        except DirectoryRejected as exc:
            if exc.reason != "stale-serial":  # the operator still serving an older one is not our problem
                raise

    def maybe_refresh(self) -> None:
        """Start a refresh in the background if one is due (for apps whose lifespan never runs)."""
        now = time.monotonic()
        if not self.configured or now < self._next_refresh:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._next_refresh = now + self.refresh_seconds
        try:
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:  # no running loop: nothing to schedule on
            self._refreshing = None

    async def run(self) -> None:
        """Refresh every ``refresh_seconds`` until cancelled (started by the app's lifespan)."""
        while True:
            self._next_refresh = time.monotonic() + self.refresh_seconds
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)


def _describe(exc: Exception) -> str:
    if isinstance(exc, DirectoryRejected):
        return f"{exc.reason}: {exc.detail}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
