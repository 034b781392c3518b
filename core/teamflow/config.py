"""Host configuration: ``teamflow.toml`` (or ``TEAMFLOW_CONFIG``), every key overridable by env.

A bad file is refused at start with the file, the key and what is expected.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

from teamflow.errors import ConfigError
from teamflow.models import NamespacePolicy
from teamflow.registry import PlatformNamespace
from teamflow.serialization import converter, readable_errors


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation, so ``teamflow_payments`` and ``teamflow-payments`` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@attrs.frozen
class NamespaceConfig:
    """A namespace whose policy the platform defines (the seed's ``shared``)."""

    owner_team: str
    contact_email: str
    description: str = ""
    requires_approval: bool = False
    approvers: tuple[str, ...] = ()
    allowed_callers: tuple[str, ...] = ("*",)
    contributors: tuple[str, ...] = ()


@attrs.frozen
class HostConfig:
    database_url: str = "sqlite:///teamflow.db"
    strict: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    lease_s: float = 30.0
    poll_interval_s: float = 1.0
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # WAL pages written before a commit checkpoints them into the database file (SQLite's
    # default is 1,000). Fewer, larger checkpoints: about 10% more steps/s with NORMAL,
    # for a WAL file of up to ~40 MB.
    sqlite_wal_autocheckpoint: int = 10_000
    conflict_resolvers: tuple[str, ...] = ()
    auth_tokens: tuple[str, ...] = ()
    owner_pins: dict[str, str] = attrs.field(factory=dict)
    default_versions: dict[str, str] = attrs.field(factory=dict)
    namespaces: dict[str, NamespaceConfig] = attrs.field(factory=dict)
    source: str = "defaults"

    def platform_namespaces(self) -> dict[str, PlatformNamespace]:
        return {
            name: PlatformNamespace(
                NamespacePolicy(
                    name=name,
                    owner_team=ns.owner_team,
                    contact_email=ns.contact_email,
                    description=ns.description,
                    requires_approval=ns.requires_approval,
                    approvers=ns.approvers,
                    allowed_callers=ns.allowed_callers,
                ),
                tuple(normalize_distribution(d) for d in ns.contributors),
            )
            for name, ns in self.namespaces.items()
        }


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_ENV: dict[str, tuple[str, Any]] = {
    "TEAMFLOW_DATABASE_URL": ("database_url", str),
    "TEAMFLOW_STRICT": ("strict", lambda v: v.strip().lower() in {"1", "true", "yes", "on"}),
    "TEAMFLOW_LOG_FORMAT": ("log_format", str),
    "TEAMFLOW_LOG_LEVEL": ("log_level", str),
    "TEAMFLOW_LEASE_S": ("lease_s", float),
    "TEAMFLOW_POLL_INTERVAL_S": ("poll_interval_s", float),
    "TEAMFLOW_RETRY_BASE_S": ("retry_base_s", float),
    "TEAMFLOW_RETRY_MAX_S": ("retry_max_s", float),
    "TEAMFLOW_SQLITE_SYNCHRONOUS": ("sqlite_synchronous", str.upper),
    "TEAMFLOW_SQLITE_WAL_AUTOCHECKPOINT": ("sqlite_wal_autocheckpoint", int),
    "TEAMFLOW_CONFLICT_RESOLVERS": ("conflict_resolvers", _list),
    "TEAMFLOW_AUTH_TOKENS": ("auth_tokens", _list),
    "TEAMFLOW_OWNER_PINS": ("owner_pins", _pairs),
    "TEAMFLOW_DEFAULT_VERSIONS": ("default_versions", _pairs),
    "TEAMFLOW_NAMESPACES": ("namespaces", json.loads),
}


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> HostConfig:
    """Read the configuration file (if any) and apply environment overrides."""
    env = os.environ if env is None else env
    explicit = path or env.get("TEAMFLOW_CONFIG")
    file = Path(explicit) if explicit else Path("teamflow.toml")
    data: dict[str, Any] = {}
    source = "defaults"
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}", file=str(file)) from None
        source = str(file)
    elif explicit:
        raise ConfigError(f"configuration file {file} does not exist (from TEAMFLOW_CONFIG or --config)")
    for var, (key, parse) in _ENV.items():
        if var in env:
            try:
                data[key] = parse(env[var])
            except ValueError as exc:
                raise ConfigError(f"environment variable {var}: {exc}", variable=var) from None
    data.pop("source", None)
    try:
        config = converter.structure(data, HostConfig)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        lines = "; ".join(readable_errors(exc, root=str(file.name) if source != "defaults" else "$"))
        raise ConfigError(f"invalid configuration ({source}): {lines}", file=source) from None
    problems = _check(config)
    if problems:
        raise ConfigError(f"invalid configuration ({source}): " + "; ".join(problems), file=source)
    return attrs.evolve(
        config,
        source=source,
        conflict_resolvers=tuple(normalize_distribution(d) for d in config.conflict_resolvers),
        owner_pins={ns: normalize_distribution(d) for ns, d in config.owner_pins.items()},
    )


def _check(config: HostConfig) -> list[str]:
    from teamflow.refs import parse_ref, valid_name
    from teamflow.versions import parse_constraint

    problems = []
    if config.sqlite_wal_autocheckpoint < 100:
        problems.append(
            f"sqlite_wal_autocheckpoint must be at least 100 pages (got {config.sqlite_wal_autocheckpoint}): "
            "without checkpoints the WAL file grows without bound"
        )
    for name in list(config.namespaces) + list(config.owner_pins):
        if not valid_name(name):
            problems.append(f"namespace {name!r} must match [a-z][a-z0-9_]*")
    for ref, constraint in config.default_versions.items():
        try:
            parsed = parse_ref(ref)
            if parsed.version:
                raise ValueError("write the version as the value, not in the key")
            parse_constraint(constraint)
        except Exception as exc:
            problems.append(f"default_versions {ref!r} = {constraint!r}: {exc}")
    if config.lease_s <= 0:
        problems.append("lease_s must be > 0 seconds")
    if config.poll_interval_s <= 0:
        problems.append("poll_interval_s must be > 0 seconds")
    return problems
