"""Node settings: one typed object, read from ``RCC_*`` environment variables over an optional TOML file.

Precedence, highest first: values passed in code, environment (``RCC_<SETTING>``), the TOML file
(``--config FILE`` or ``<data_dir>/node.toml``), defaults. A bad value stops the node at start with a
message that names the setting, never half-way through serving.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.vocabulary import Role

NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
REGION_CODE_PATTERN = re.compile(r"^E12\d{6}$")
CONFIG_FILE_NAME = "node.toml"
DEFAULT_DATA_DIR = Path(".rcc")


class SettingsError(ValueError):
    """Settings that cannot start a node; ``problems`` maps each setting name to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"setting {name}: {why}" for name, why in problems.items()))


class OidcIssuer(BaseModel):
    """An external OpenID Connect issuer (a council's identity provider) whose tokens this node accepts.

    Its keys come from ``jwks_url`` (fetched, refreshed on an unknown ``kid``) or ``jwks_file`` (read once);
    ``roles_claim`` names the claim carrying the caller's groups or roles (dots reach into nested objects,
    e.g. ``realm_access.roles``) and ``role_map`` maps each of its values to the node roles it grants.
    Values not in the map grant nothing: a token only opens what the map says.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    roles_claim: str = "roles"
    role_map: dict[str, list[Role]] = Field(default_factory=dict)

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> OidcIssuer:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks_url or jwks_file")
        return self


class Settings(BaseSettings):
    """Everything one node needs to know about itself. Immutable once loaded."""

    model_config = SettingsConfigDict(env_prefix="RCC_", extra="forbid", frozen=True)

    node_id: str = "rcc-local"
    name: str = "Local RCC node"
    kind: Literal["regional", "national"] = "regional"
    region_code: str | None = "E12000008"
    base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    key_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Local users and roles (registry.core.auth): token lifetime, lock-out after failed client authentication,
    # and the external OpenID Connect issuers whose tokens are trusted.
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=900)
    auth_max_failures: int = Field(default=5, ge=1)
    auth_failure_window_seconds: int = Field(default=300, ge=1)
    auth_lockout_seconds: int = Field(default=300, ge=1)
    oidc_issuers: list[OidcIssuer] = Field(default_factory=list)
    # Federation (federation/): the pinned operator key(s) that sign the directory (a JWK or JWKS as inline
    # JSON, or the path of a file holding one), where the signed directory comes from (a file and/or the
    # operator's URL, re-read every directory_refresh_seconds), and whether this node serves it as operator.
    operator_jwks: str | None = None
    directory_file: Path | None = None
    operator_url: str | None = None
    directory_refresh_seconds: float = Field(default=300.0, gt=0, le=86400)
    directory_operator: bool = False
    # Witnessing (federation.witness): every witness_interval_seconds one worker of the node asks each peer an
    # agreement lets it witness for its signed audit tree head (0 turns the schedule off; the governance
    # officers' POST /v1/audit/witness still works). At least a second, at most a day.
    witness_interval_seconds: float = Field(default=300.0, ge=0, le=86400)
    # Web pages at /ui/ (registry.ui): people sign in with an issuer of oidc_issuers (authorization code + PKCE;
    # the issuer's audience is the client id, the secret is optional: a public client relies on PKCE alone).
    # ui_dev_signin lets anyone pick a role without an identity provider: only for a local federation, so it
    # refuses to start unless base_url is a loopback address.
    ui_dev_signin: bool = False
    ui_oidc_client_secret: str | None = None
    ui_session_hours: float = Field(default=8.0, gt=0, le=24)

    @field_validator("node_id")
    @classmethod
    def _node_id_shape(cls, value: str) -> str:
        if not NODE_ID_PATTERN.match(value):
            raise ValueError("must be 2-63 lowercase letters, digits or '-', starting with a letter or digit")
        return value

    @field_validator("region_code")
    @classmethod
    def _region_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not REGION_CODE_PATTERN.match(value):
            raise ValueError("must be an ONS region code E12xxxxxx")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("witness_interval_seconds")
    @classmethod
    def _witness_interval_shape(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("0 turns scheduled witnessing off; otherwise give at least 1 second")
        return value

    @model_validator(mode="after")
    def _regional_needs_region(self) -> Settings:
        if self.kind == "regional" and self.region_code is None:
            raise ValueError("region_code: a regional node needs its ONS region code (E12…)")
        return self

    @model_validator(mode="after")
    def _dev_signin_only_on_loopback(self) -> Settings:
        if self.ui_dev_signin and not is_loopback_url(self.base_url):
            raise ValueError(
                "ui_dev_signin: the development sign-in lets anyone pick any role; it is only allowed when "
                "base_url is a loopback address (127.0.0.1, ::1, localhost)"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL; the embedded SQLite file in the data dir unless one is configured."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'node.db').as_posix()}"

    @property
    def effective_key_dir(self) -> Path:
        """Where the node's signing keys live (0600 PEM files)."""
        return self.key_dir if self.key_dir is not None else self.data_dir / "keys"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - node settings never come from .env
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine only (a loopback IP address or ``localhost``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# pydantic-settings reads the TOML path at class level; load_settings sets it for the one call it makes.
_TOML_FILE: dict[str, Path | None] = {"path": None}


def config_path_for(data_dir: Path | None = None, config: Path | None = None) -> Path | None:
    """The TOML file a node reads: ``config``, else ``RCC_CONFIG``, else ``<data_dir>/node.toml`` if present."""
    if config is not None:
        return config
    if os.environ.get("RCC_CONFIG"):
        return Path(os.environ["RCC_CONFIG"])
    base = data_dir if data_dir is not None else Path(os.environ.get("RCC_DATA_DIR", DEFAULT_DATA_DIR))
    candidate = base / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def load_settings(*, config: Path | None = None, data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise :class:`SettingsError` naming each bad setting."""
    path = config_path_for(data_dir, config)
    if path is not None and not path.is_file():
        raise SettingsError({"config": f"file not found: {path}"})
    if data_dir is not None:
        overrides.setdefault("data_dir", data_dir)
    _TOML_FILE["path"] = path
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None
    except ValueError as exc:  # malformed TOML
        raise SettingsError({"config": str(exc)}) from None
    finally:
        _TOML_FILE["path"] = None
    if path is not None and "data_dir" not in overrides and "RCC_DATA_DIR" not in os.environ:
        # A config file's data_dir is relative to the folder the file lives in (default: that folder).
        with path.open("rb") as fh:
            in_file = tomllib.load(fh).get("data_dir")
        resolved = path.parent / in_file if in_file else path.parent
        settings = settings.model_copy(update={"data_dir": resolved})
    return settings


def _problems(exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        if name == "settings" and ":" in message:
            name, message = (part.strip() for part in message.split(":", 1))
        problems[name] = message
    return problems


def write_config(path: Path, values: dict[str, Any]) -> None:
    """Write a node.toml holding ``values`` (strings, ints, bools, paths) so ``serve`` needs nothing else."""
    lines = ["# rcc-node settings; RCC_<SETTING> environment variables override these.\n"]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int):
            rendered = str(value)
        else:
            rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{key} = {rendered}\n")
    path.write_text("".join(lines), encoding="utf-8")
