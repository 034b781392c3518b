"""Host configuration: ``teamflow.toml`` (or ``TEAMFLOW_CONFIG``), every key overridable by env.

Every value is checked for its type and range, from the file and from ``TEAMFLOW_*``
strings alike, and never coerced: a string is never split into a list, ``"false"`` is
never true, NaN is never a lease. Every problem found is refused at start in one
``ConfigError``, each naming where the value came from, the key, what was given and what
is expected.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

from teamflow.errors import ConfigError, InvalidReference, InvalidVersion
from teamflow.models import NamespacePolicy
from teamflow.refs import parse_ref, valid_name
from teamflow.registry import PlatformNamespace
from teamflow.serialization import converter
from teamflow.versions import parse_constraint, parse_version


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
    """The host's settings; ``load_config`` builds one only from values it has checked."""

    database_url: str = "sqlite:///teamflow.db"
    strict: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    lease_s: float = 30.0
    poll_interval_s: float = 1.0
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    # The longest an HTTP request waits for its task (``wait``); past it the answer is 202.
    max_wait_s: float = 60.0
    # How long a stopping worker lets the steps in hand finish before it gives them back.
    shutdown_grace_s: float = 10.0
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # WAL pages written before a commit checkpoints them into the database file (SQLite's
    # default is 1,000). Fewer, larger checkpoints: about 10% more steps/s with NORMAL,
    # for a WAL file of up to ~40 MB.
    sqlite_wal_autocheckpoint: int = 10_000
    conflict_resolvers: tuple[str, ...] = ()
    # Access control on even before a token exists (it is on anyway once one was created).
    auth: bool = False
    # How long a token lives when ``teamflow tokens create`` is given no ``--expires``.
    token_expires_s: float = 90 * 86400.0
    # An admin page's session ends after this long without a request.
    session_idle_s: float = 1800.0
    owner_pins: dict[str, str] = attrs.field(factory=dict)
    default_versions: dict[str, str] = attrs.field(factory=dict)
    # "namespace/name@version" = "YYYY-MM-DD": the day a deprecated version stops being
    # served, sent as the HTTP Sunset header (RFC 8594) on the answers that ran it
    sunsets: dict[str, str] = attrs.field(factory=dict)
    namespaces: dict[str, NamespaceConfig] = attrs.field(factory=dict)
    source: str = "defaults"

    def platform_namespaces(self) -> dict[str, PlatformNamespace]:
        """The namespaces defined here, as the registry's platform policies."""
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


# -- refusals ------------------------------------------------------------------------------------

_MISSING = object()  # a required field nobody gave
_AS_GIVEN = object()  # show the key's own value


class _Refused(Exception):
    """A value not taken. ``at`` and ``expected`` name a part of the key's value (a field of
    one namespace); without them the whole value is refused against the key's own rule."""

    def __init__(
        self, detail: str | None = None, *, at: str = "", expected: str = "", given: Any = _AS_GIVEN
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.at = at
        self.expected = expected
        self.given = given


class _Refusals(Exception):
    """Several parts of one key's value refused at once (the fields of several namespaces)."""

    def __init__(self, refusals: list[_Refused]) -> None:
        super().__init__(refusals)
        self.refusals = refusals


# -- the strict converter: a type is checked, never coerced ---------------------------------------


def _boolean(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Refused()


def _integer(value: Any, _: Any) -> int:
    # bool is an int subclass: ``true`` is not 1 page
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Refused()


def _number(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            raise _Refused() from None
        if math.isfinite(number):
            return number
    raise _Refused()


def _string(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Refused()


def _strings(value: Any, _: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _Refused("a string, which is never split into a list")
    if not isinstance(value, list):
        raise _Refused()
    for number, item in enumerate(value, 1):
        # only the item's position: the list may hold secrets (auth_tokens)
        if not isinstance(item, str):
            raise _Refused(f"item {number} is not a string but {type(item).__name__}")
        if not item.strip():
            raise _Refused(f"item {number} is empty")
    return tuple(value)


def _string_table(value: Any, _: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Refused()
    for key, item in value.items():
        if not isinstance(item, str):
            raise _Refused(f"the value of {key!r} is not a string")
    return dict(value)


def _namespace_tables(value: Any, _: Any) -> dict[str, NamespaceConfig]:
    if not isinstance(value, dict):
        raise _Refused()
    fields = ", ".join(f.name for f in attrs.fields(NamespaceConfig))
    tables: dict[str, NamespaceConfig] = {}
    refusals: list[_Refused] = []
    for name, table in value.items():
        at = f".{name}" if valid_name(name) else f"[{name!r}]"
        if not valid_name(name):
            refusals.append(_Refused(at=at, expected="a namespace name matching [a-z][a-z0-9_]*", given=name))
        if not isinstance(table, dict):
            refusals.append(_Refused(at=at, expected=f"a table of {fields}", given=table))
            continue
        try:
            tables[name] = _strict.structure(table, NamespaceConfig)
        except cattrs.ClassValidationError as exc:
            with_field, without_field = exc.group_exceptions()
            for error, note in with_field:
                refusals.append(
                    _Refused(
                        error.detail if isinstance(error, _Refused) else None,
                        at=f"{at}.{note.name}",
                        expected=_DESCRIBED[note.type],
                        given=table.get(note.name, _MISSING),
                    )
                )
            for error in without_field:
                # the one error without a field: cattrs' ForbiddenExtraKeysError
                extra = ", ".join(sorted(map(repr, getattr(error, "extra_fields", ()))))
                refusals.append(
                    _Refused(f"unknown keys {extra}", at=at, expected=f"a table of {fields}", given=table)
                )
    if refusals:
        raise _Refusals(refusals)
    return tables


# Each type as a refusal says it, for the fields of a namespace table.
_DESCRIBED: dict[Any, str] = {
    bool: "a boolean (true or false)",
    str: "a string",
    tuple[str, ...]: "a list of non-empty strings",
}

# Derived from the one converter (so NamespaceConfig keeps ``forbid_extra_keys``), with the
# primitive types made strict: cattrs' own hooks call int(), bool(), tuple() on anything.
_strict = converter.copy()
_strict.register_structure_hook(bool, _boolean)
_strict.register_structure_hook(int, _integer)
_strict.register_structure_hook(float, _number)
_strict.register_structure_hook(str, _string)
# generic aliases are not classes: they are matched by a predicate
_strict.register_structure_hook_func(lambda t: t == tuple[str, ...], _strings)
_strict.register_structure_hook_func(lambda t: t == dict[str, str], _string_table)
_strict.register_structure_hook_func(lambda t: t == dict[str, NamespaceConfig], _namespace_tables)


# -- ranges: what a value of the right type must also be ------------------------------------------


def _between(low: float, high: float, *, low_open: bool) -> Callable[[float], float]:
    def check(value: float) -> float:
        if (value > low if low_open else value >= low) and value <= high:
            return value
        raise _Refused()

    return check


def _one_of(*choices: str, any_case: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        # ASCII only: "\u0131nfo".upper() is "INFO" (dotless i), and that is not what was written
        chosen = value.upper() if any_case and value.isascii() else value
        if chosen in choices:
            return chosen
        raise _Refused()

    return check


def _database_url(url: str) -> str:
    if url != url.strip():
        raise _Refused("surrounding whitespace")
    if url in ("sqlite://", "sqlite:", "sqlite:///") or url.startswith(("sqlite:///:memory:", "sqlite:///file::memory:")):
        # Every connection to an in-memory database sees one of its own: workers see no task.
        raise _Refused("an in-memory database cannot be shared by connections: use a file")
    if url.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg2://")):
        return url
    raise _Refused()


# PEP 508, spelt out: with re.IGNORECASE, [a-z] would also take the long s and the Kelvin sign
_DISTRIBUTION = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def _distribution(name: str) -> str:
    if _DISTRIBUTION.fullmatch(name):
        return normalize_distribution(name)
    raise _Refused(f"{name!r} is not a distribution name")


def _distributions(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_distribution(name) for name in names)


def _owner_pins(pins: dict[str, str]) -> dict[str, str]:
    for namespace in pins:
        if not valid_name(namespace):
            raise _Refused(f"namespace {namespace!r} must match [a-z][a-z0-9_]*")
    return {namespace: _distribution(name) for namespace, name in pins.items()}


def _sunsets(days: dict[str, str]) -> dict[str, str]:
    for ref, day in days.items():
        try:
            parsed = parse_ref(ref)
            if parsed.version is None or str(parsed) != ref:
                raise _Refused(f"{ref!r}: name one exact version, as namespace/name@1.2.3")
            parse_version(parsed.version)
        except (InvalidReference, InvalidVersion, ValueError) as exc:
            raise _Refused(f"{ref!r}: {exc}") from None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise _Refused(f"{ref!r} = {day!r}: a date written YYYY-MM-DD")
        try:
            datetime.date.fromisoformat(day)
        except ValueError as exc:
            raise _Refused(f"{ref!r} = {day!r}: {exc}") from None
    return days


def _default_versions(pins: dict[str, str]) -> dict[str, str]:
    for ref, constraint in pins.items():
        try:
            parsed = parse_ref(ref)
            if parsed.version:
                raise _Refused(f"{ref!r}: write the version as the value, not in the key")
            if str(parsed) != ref:
                raise _Refused(f"{ref!r}: no surrounding whitespace")
            parse_constraint(constraint)
        except (InvalidReference, InvalidVersion, ValueError) as exc:
            # ValueError: a version too long for int() (Python's digit limit)
            raise _Refused(f"{ref!r} = {constraint!r}: {exc}") from None
    return pins


# -- environment strings: read as the TOML value they stand for -----------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# [0-9], not \d: float() would also read Arabic-Indic digits; no nan, inf, 1_000 or 0x10
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _env_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise _Refused()


def _env_integer(text: str) -> int:
    if _INTEGER.fullmatch(text.strip()):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            raise _Refused("too many digits") from None
    raise _Refused()


def _env_number(text: str) -> float:
    if _NUMBER.fullmatch(text.strip()):
        return float(text)  # "1e999" is inf here, refused as not finite by _number
    raise _Refused()


def _env_text(text: str) -> str:
    return text


def _env_list(text: str) -> list[str]:
    # "" is the empty list; an empty item ("a,,b") stays, to be refused by _strings
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _env_pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.split(",") if text.strip() else []:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise _Refused(f"{item.strip()!r} is not KEY=VALUE")
        if key in pairs:
            raise _Refused(f"{key!r} is given twice")
        pairs[key] = value
    return pairs


def _env_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refused(f"not JSON: {exc}") from None


# -- the keys --------------------------------------------------------------------------------------

_SHOWN_MAX = 80


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def _shown_url(url: Any) -> str:
    if isinstance(url, str):
        # the password in the authority (up to its last "@") and a libpq ?password= parameter
        url = re.sub(r"(://[^/?#:@]*:)[^/?#]*@", r"\1<hidden>@", url)
        url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1<hidden>", url)
    return _shown(url)


def _as_is(value: Any) -> Any:
    return value


@attrs.frozen
class _Key:
    """One key: its type (checked by the strict converter), its range, how its variable reads."""

    type: Any
    expected: str
    from_env: Callable[[str], Any]
    check: Callable[[Any], Any] = _as_is
    show: Callable[[Any], str] = _shown


_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_FROM_ENV_LIST = " (from the environment: comma-separated)"

RETIRED = "auth_tokens"
RETIRED_HELP = (
    "auth_tokens is no longer read: a shared list of secrets gave every holder every namespace. Remove it and "
    "create scoped, hashed tokens with `teamflow tokens create --name NAME --namespace '*' --scope admin` "
    "(see the README's Access section)"
)

_KEYS: dict[str, _Key] = {
    "database_url": _Key(
        str,
        "a database URL: sqlite:///PATH (a file) or postgresql://... (postgres://, postgresql+psycopg2://)",
        _env_text,
        _database_url,
        _shown_url,
    ),
    "strict": _Key(
        bool, "a boolean: true or false (from the environment also 1/0, yes/no, on/off)", _env_boolean
    ),
    "log_format": _Key(str, "'text' or 'json'", _env_text, _one_of("text", "json", any_case=False)),
    "log_level": _Key(
        str, f"one of {', '.join(_LEVELS)} (any case)", _env_text, _one_of(*_LEVELS, any_case=True)
    ),
    # Upper bounds: past a day a crashed worker's step waits that long to be taken over, a
    # worker sleeps past an hour between polls, and a retry waits past a day: typos, not settings.
    "lease_s": _Key(
        float,
        "> 0 seconds and at most 86400 (a finite number)",
        _env_number,
        _between(0, 86400, low_open=True),
    ),
    "poll_interval_s": _Key(
        float, "> 0 seconds and at most 3600 (a finite number)", _env_number, _between(0, 3600, low_open=True)
    ),
    "retry_base_s": _Key(
        float,
        ">= 0 seconds and at most 86400 (a finite number)",
        _env_number,
        _between(0, 86400, low_open=False),
    ),
    "retry_max_s": _Key(
        float,
        ">= retry_base_s and at most 86400 seconds (a finite number)",
        _env_number,
        _between(0, 86400, low_open=False),
    ),
    "max_wait_s": _Key(
        float, "> 0 seconds and at most 3600 (a finite number)", _env_number, _between(0, 3600, low_open=True)
    ),
    "shutdown_grace_s": _Key(
        float, ">= 0 seconds and at most 3600 (a finite number)", _env_number, _between(0, 3600, low_open=False)
    ),
    "sqlite_synchronous": _Key(
        str, "'FULL' or 'NORMAL' (any case)", _env_text, _one_of("FULL", "NORMAL", any_case=True)
    ),
    "sqlite_wal_autocheckpoint": _Key(
        int,
        # 0 turns checkpoints off and the WAL file grows without bound; 10,000,000 pages is ~40 GB
        "at least 100 pages and at most 10000000 (an integer)",
        _env_integer,
        _between(100, 10_000_000, low_open=False),
    ),
    "conflict_resolvers": _Key(
        tuple[str, ...], "a list of distribution names" + _FROM_ENV_LIST, _env_list, _distributions
    ),
    "auth": _Key(
        bool, "a boolean: true or false (from the environment also 1/0, yes/no, on/off)", _env_boolean
    ),
    "token_expires_s": _Key(
        float,
        "> 0 seconds and at most 315360000 (10 years; a finite number)",
        _env_number,
        _between(0, 315_360_000, low_open=True),
    ),
    "session_idle_s": _Key(
        float, "> 0 seconds and at most 86400 (a finite number)", _env_number, _between(0, 86400, low_open=True)
    ),
    "owner_pins": _Key(
        dict[str, str],
        "a table of namespace = distribution name (from the environment: NAMESPACE=DISTRIBUTION, ...)",
        _env_pairs,
        _owner_pins,
    ),
    "default_versions": _Key(
        dict[str, str],
        'a table of "namespace/name" = version constraint (from the environment: REF=CONSTRAINT, ...)',
        _env_pairs,
        _default_versions,
    ),
    "sunsets": _Key(
        dict[str, str],
        'a table of "namespace/name@version" = "YYYY-MM-DD" (from the environment: REF=DATE, ...)',
        _env_pairs,
        _sunsets,
    ),
    "namespaces": _Key(
        dict[str, NamespaceConfig],
        "a table of namespace name = policy table (from the environment: a JSON object)",
        _env_json,
    ),
}  # every key, each also read from TEAMFLOW_<KEY>


# -- loading ---------------------------------------------------------------------------------------


@attrs.frozen
class _Origin:
    """Where a value came from: the file or one environment variable."""

    file: str | None = None
    variable: str | None = None

    def __str__(self) -> str:
        return f"environment variable {self.variable}" if self.variable else str(self.file)


@attrs.frozen
class _Problem:
    """One refused value: where it came from, its key, and the line of the error that says so."""

    origin: _Origin
    key: str
    line: str


def _check(key: str, given: Any, origin: _Origin) -> tuple[Any, list[_Problem]]:
    """The value to use for ``key``, or the problems with what ``origin`` gave."""
    rule = _KEYS[key]
    try:
        value = rule.from_env(given) if origin.variable else given
        return rule.check(_strict.structure(value, rule.type)), []
    except _Refused as exc:
        refusals = [exc]
    except _Refusals as exc:
        refusals = exc.refusals
    problems = []
    for refused in refusals:
        shown = rule.show(given) if refused.given is _AS_GIVEN else _shown(refused.given)
        expected = refused.expected if refused.at else rule.expected
        line = f"{origin}: {key}{refused.at} must be {expected}, got {shown}"
        problems.append(_Problem(origin, key, line + (f" ({refused.detail})" if refused.detail else "")))
    return None, problems


def _retry_problems(
    values: dict[str, Any], given: dict[str, tuple[_Origin, Any]], refused: set[str]
) -> list[_Problem]:
    """``retry_max_s`` below ``retry_base_s``, blamed on the one given (max if both were)."""
    if {"retry_base_s", "retry_max_s"} & refused:
        return []
    defaults = HostConfig()
    base: float = values.get("retry_base_s", defaults.retry_base_s)
    cap: float = values.get("retry_max_s", defaults.retry_max_s)
    if cap >= base:
        return []
    if "retry_max_s" in given:
        origin, shown = given["retry_max_s"]
        line = f"{origin}: retry_max_s must be >= retry_base_s ({base}), got {_shown(shown)}"
        return [_Problem(origin, "retry_max_s", line)]
    origin, shown = given["retry_base_s"]
    line = f"{origin}: retry_base_s must be <= retry_max_s ({cap}), got {_shown(shown)}"
    return [_Problem(origin, "retry_base_s", line)]


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> HostConfig:
    """Read the configuration file (if any) and apply environment overrides.

    :param path: the file to read; else ``TEAMFLOW_CONFIG``; else ``teamflow.toml`` if present.
    :param env: the variables to read (``os.environ`` by default); ``TEAMFLOW_<KEY>`` wins
        over the file's ``key``.
    :raises ConfigError: listing every value refused, in the file and in the variables
        (both are checked, even where a variable overrides the file).
    """
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

    problems: list[_Problem] = []
    retired = [(_Origin(file=source), RETIRED)] if RETIRED in data else []
    retired += [(_Origin(variable=v), RETIRED) for v in (f"TEAMFLOW_{RETIRED.upper()}",) if v in env]
    for origin, key in retired:  # its value is never echoed: it held secrets
        problems.append(_Problem(origin, key, f"{origin}: {RETIRED_HELP}"))
    unknown = [key for key in data if key not in _KEYS and key != RETIRED]
    if unknown:
        origin = _Origin(file=source)
        line = f"{origin}: unknown keys {', '.join(map(repr, unknown))} (known keys: {', '.join(_KEYS)})"
        problems.append(_Problem(origin, unknown[0], line))
    # The file's value is checked even where a variable overrides it: it is wrong all the
    # same, and would be used the day the variable is gone.
    checks = [(key, _Origin(file=source), data[key]) for key in data if key in _KEYS]
    checks += [
        (key, _Origin(variable=variable), env[variable])
        for key in _KEYS
        if (variable := f"TEAMFLOW_{key.upper()}") in env
    ]
    values: dict[str, Any] = {}
    for key, origin, raw in checks:
        value, found = _check(key, raw, origin)
        problems.extend(found)
        if not found:
            values[key] = value
    given = {key: (origin, raw) for key, origin, raw in checks}  # the variable's, where both
    refused = {problem.key for problem in problems}
    problems.extend(_retry_problems(values, given, refused))
    if problems:
        first = problems[0]
        files = [p.origin.file for p in problems if p.origin.file]
        variables = [p.origin.variable for p in problems if p.origin.variable]
        facts = {"file": files[0] if files else None, "variable": variables[0] if variables else None}
        raise ConfigError(
            "invalid configuration:\n" + "\n".join(f"  {p.line}" for p in problems),
            **{name: fact for name, fact in facts.items() if fact},
            key=first.key,
        )
    return HostConfig(**values, source=source)
