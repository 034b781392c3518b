"""The host configuration is checked, never coerced (issue 14, item 1).

Each coercion the issue found has a test named for what it proves; a hypothesis property
then throws documents and environments of every type at ``load_config`` and holds it to
the documented rules, written out here again on their own (not read from config.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teamflow.config import HostConfig, NamespaceConfig, load_config
from teamflow.errors import ConfigError


def toml_value(value: Any) -> str:
    """``value`` written as TOML (tomllib reads, nothing here writes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else {"nan": "nan", "inf": "inf", "-inf": "-inf"}[str(value)]
        )
    if isinstance(value, str):
        escaped = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in document.items()))
    return path


def refused(tmp_path: Path, document: dict[str, Any] | None = None, **env: str) -> ConfigError:
    """The error ``load_config`` raises for ``document`` (a teamflow.toml) and ``env``."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "teamflow.toml", document or {}), env=env)
    return caught.value


def loaded(tmp_path: Path, document: dict[str, Any] | None = None, **env: str) -> HostConfig:
    return load_config(write(tmp_path / "teamflow.toml", document or {}), env=env)


# -- one test per coercion the issue found ------------------------------------------------------------


@pytest.mark.parametrize("key", ["conflict_resolvers"])
def test_a_string_is_never_split_into_a_list(tmp_path: Path, key: str) -> None:
    """``conflict_resolvers = "dist"`` was four names."""
    error = refused(tmp_path, {key: "secret-but-long-enough"})
    assert f"teamflow.toml: {key} must be a list of" in error.detail
    assert "a string, which is never split into a list" in error.detail
    assert error.facts["key"] == key


def test_strict_false_string_in_toml_is_refused(tmp_path: Path) -> None:
    """``strict = "false"`` was true: in TOML a boolean is ``true`` or ``false``, nothing else."""
    for given_value in ("false", "true", 0, 1):
        error = refused(tmp_path, {"strict": given_value})
        assert (
            f"strict must be a boolean: true or false (from the environment also 1/0, yes/no, on/off), got {given_value!r}"
            in error.detail
        )
    assert loaded(tmp_path, {"strict": False}).strict is False
    assert loaded(tmp_path, {"strict": True}).strict is True


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        (" OFF ", False),
        ("False", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        (" Yes\n", True),
        ("TRUE", True),
    ],
)
def test_env_false_is_false(tmp_path: Path, text: str, value: bool) -> None:
    """The environment's booleans: true/1/yes/on and false/0/no/off, in any case, stripped."""
    assert loaded(tmp_path, TEAMFLOW_STRICT=text).strict is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "ja", "t", "falsey", "yes please"])
def test_env_unrecognised_boolean_is_refused(tmp_path: Path, text: str) -> None:
    """Anything else was silently false; now it is refused, naming the variable."""
    error = refused(tmp_path, TEAMFLOW_STRICT=text)
    assert (
        f"environment variable TEAMFLOW_STRICT: strict must be a boolean: true or false (from the environment also 1/0, yes/no, on/off), got {text!r}"
        in error.detail
    )
    assert error.facts == {"variable": "TEAMFLOW_STRICT", "key": "strict"}


@pytest.mark.parametrize("where", ["file", "environment"])
def test_the_retired_auth_tokens_key_is_refused_with_the_way_to_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A shared list of secrets gave every holder every namespace: the key is refused (never
    ignored), points to ``teamflow tokens create --scope admin``, and never echoes its value."""
    secret = "s3cret-s3cret-s3cret"
    if where == "file":
        error = refused(tmp_path, {"auth_tokens": [secret]})
    else:
        monkeypatch.chdir(tmp_path)  # no teamflow.toml here
        with pytest.raises(ConfigError) as caught:
            load_config(None, env={"TEAMFLOW_AUTH_TOKENS": secret})
        error = caught.value
    assert "auth_tokens is no longer read" in error.detail
    assert "teamflow tokens create --name NAME --namespace '*' --scope admin" in error.detail
    assert secret not in error.detail and error.facts["key"] == "auth_tokens"


@pytest.mark.parametrize("key", ["lease_s", "poll_interval_s", "retry_base_s", "retry_max_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_refused(tmp_path: Path, key: str, value: float) -> None:
    """``lease_s = nan`` was stored as NULL (a crashed worker's step never taken over); every
    number is finite, from the file and from the environment."""
    error = refused(tmp_path, {key: value})
    assert f"teamflow.toml: {key} must be" in error.detail and "(a finite number)" in error.detail
    error = refused(tmp_path, **{f"TEAMFLOW_{key.upper()}": repr(value)})  # "nan", "inf", "-inf"
    assert f"environment variable TEAMFLOW_{key.upper()}: {key} must be" in error.detail


def test_poll_interval_inf_and_other_absurd_numbers_are_refused(tmp_path: Path) -> None:
    """``poll_interval_s = inf`` was accepted: the numbers have sane upper bounds too."""
    for document in (
        {"poll_interval_s": math.inf},
        {"poll_interval_s": 3601},
        {"lease_s": 10**30},
        {"lease_s": 86400.5},
        {"retry_max_s": 10**400},
        {"sqlite_wal_autocheckpoint": 10_000_001},
        {"sqlite_wal_autocheckpoint": 2**70},
    ):
        (key,) = document
        assert refused(tmp_path, document).facts["key"] == key
    edge = loaded(
        tmp_path, {"poll_interval_s": 3600, "lease_s": 86400, "sqlite_wal_autocheckpoint": 10_000_000}
    )
    assert (edge.poll_interval_s, edge.lease_s, edge.sqlite_wal_autocheckpoint) == (
        3600.0,
        86400.0,
        10_000_000,
    )


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"retry_base_s": -1.0}, "retry_base_s"),
        ({"retry_max_s": -0.5}, "retry_max_s"),
        ({"retry_base_s": 10.0, "retry_max_s": 5.0}, "retry_max_s"),
        ({"retry_base_s": 301}, "retry_base_s"),  # above the default retry_max_s
    ],
)
def test_negative_or_inverted_retry_delays_are_refused(
    tmp_path: Path, document: dict[str, Any], key: str
) -> None:
    """Negative ``retry_*_s`` were accepted; and the cap is never below the base."""
    error = refused(tmp_path, document)
    assert error.facts["key"] == key
    assert f"teamflow.toml: {key} must be" in error.detail


def test_log_level_is_checked_and_normalised(tmp_path: Path) -> None:
    """``TEAMFLOW_LOG_LEVEL`` / ``log_level`` were never checked: any case of a loguru level is
    taken and written upper case; anything else is refused."""
    assert loaded(tmp_path, TEAMFLOW_LOG_LEVEL="debug").log_level == "DEBUG"
    assert loaded(tmp_path, {"log_level": "Warning"}).log_level == "WARNING"
    assert loaded(tmp_path).log_level == "INFO"
    error = refused(tmp_path, TEAMFLOW_LOG_LEVEL="verbose")
    assert (
        "environment variable TEAMFLOW_LOG_LEVEL: log_level must be one of TRACE, DEBUG, INFO, SUCCESS, "
        "WARNING, ERROR, CRITICAL (any case), got 'verbose'" in error.detail
    )
    # "\u0131nfo" (a dotless i) is "INFO" once upper-cased, and not what anyone wrote
    for bad in ("", " info", "\u0131nfo", 20, True):
        assert refused(tmp_path, {"log_level": bad}).facts["key"] == "log_level"


# -- types and ranges of the other keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["30s", "", " ", "nan", "inf", "-inf", "1_0", "0x10", "1e999", "thirty", "\u0663"]
)
def test_numbers_from_the_environment_are_parsed_strictly(tmp_path: Path, text: str) -> None:
    """A variable is a plain decimal number ("30", "0.5"), finite: no units, NaN, or other digits."""
    assert refused(tmp_path, TEAMFLOW_LEASE_S=text).facts["variable"] == "TEAMFLOW_LEASE_S"


def test_numbers_from_the_environment_are_read(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        TEAMFLOW_LEASE_S="30",
        TEAMFLOW_POLL_INTERVAL_S="0.5",
        TEAMFLOW_RETRY_BASE_S=" 2e-1 ",
        TEAMFLOW_SQLITE_WAL_AUTOCHECKPOINT="+2500",
    )
    assert (config.lease_s, config.poll_interval_s, config.retry_base_s) == (30.0, 0.5, 0.2)
    assert config.sqlite_wal_autocheckpoint == 2500 and type(config.sqlite_wal_autocheckpoint) is int


def test_an_int_key_refuses_floats_and_bools(tmp_path: Path) -> None:
    """``sqlite_wal_autocheckpoint = 1000.5`` was cut to 1000, ``true`` was 1 page."""
    for value in (1000.0, 1000.5, True, "1000"):
        assert (
            refused(tmp_path, {"sqlite_wal_autocheckpoint": value}).facts["key"]
            == "sqlite_wal_autocheckpoint"
        )
    for text in ("1000.0", "1e3", "ten"):
        assert (
            refused(tmp_path, TEAMFLOW_SQLITE_WAL_AUTOCHECKPOINT=text).facts["key"]
            == "sqlite_wal_autocheckpoint"
        )


def test_a_float_key_takes_ints_and_refuses_bools_and_strings(tmp_path: Path) -> None:
    config = loaded(tmp_path, {"lease_s": 5})
    assert config.lease_s == 5.0 and type(config.lease_s) is float
    for value in (True, "5", [5], {"s": 5}):
        error = refused(tmp_path, {"lease_s": value})
        assert (
            f"lease_s must be > 0 seconds and at most 86400 (a finite number), got {value!r}" in error.detail
        )


@pytest.mark.parametrize(
    "url",
    ["", " sqlite:///x.db", "sqlite:///x.db\n", "mysql://db/x", "teamflow.db", "sqlite:/x.db", "sqlite://", "sqlite:",
     "sqlite:///:memory:"],
)
def test_a_bad_database_url_is_refused(tmp_path: Path, url: str) -> None:
    assert refused(tmp_path, {"database_url": url}).facts["key"] == "database_url"


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "postgresql://u@h:5432/db", "postgres://h/db"]
)
def test_a_good_database_url_is_taken_as_written(tmp_path: Path, url: str) -> None:
    assert loaded(tmp_path, TEAMFLOW_DATABASE_URL=url).database_url == url


def test_a_password_in_a_refused_database_url_is_hidden(tmp_path: Path) -> None:
    error = refused(tmp_path, {"database_url": " postgresql://bob:hunter2@db:5432/x?password=hunter3"})
    assert "hunter2" not in error.detail and "hunter3" not in error.detail
    assert "postgresql://bob:<hidden>@db:5432/x?password=<hidden>" in error.detail


def test_sqlite_synchronous_and_log_format(tmp_path: Path) -> None:
    assert loaded(tmp_path, {"sqlite_synchronous": "normal"}).sqlite_synchronous == "NORMAL"
    assert loaded(tmp_path, TEAMFLOW_SQLITE_SYNCHRONOUS="Full").sqlite_synchronous == "FULL"
    assert refused(tmp_path, {"sqlite_synchronous": "OFF"}).facts["key"] == "sqlite_synchronous"
    assert loaded(tmp_path, TEAMFLOW_LOG_FORMAT="json").log_format == "json"
    for bad in ("JSON", "yaml", 1):
        assert refused(tmp_path, {"log_format": bad}).facts["key"] == "log_format"


def test_lists_from_the_environment_are_comma_separated(tmp_path: Path) -> None:
    config = loaded(tmp_path, TEAMFLOW_CONFLICT_RESOLVERS="Teamflow_Platform, other.dist")
    assert config.conflict_resolvers == ("teamflow-platform", "other-dist")
    assert loaded(tmp_path, TEAMFLOW_CONFLICT_RESOLVERS="").conflict_resolvers == ()
    for text in ("a,,b", "a,", "not a name", "-dash"):
        assert refused(tmp_path, TEAMFLOW_CONFLICT_RESOLVERS=text).facts["key"] == "conflict_resolvers"
    for value in ([1], [""], ["ok", ["nested"]]):
        assert refused(tmp_path, {"conflict_resolvers": value}).facts["key"] == "conflict_resolvers"


def test_tables_are_tables_of_strings(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        {"owner_pins": {"payments": "Teamflow_Payments"}, "default_versions": {"payments/refund": "^2.0"}},
    )
    assert config.owner_pins == {"payments": "teamflow-payments"}
    assert config.default_versions == {"payments/refund": "^2.0"}
    env = loaded(
        tmp_path,
        TEAMFLOW_OWNER_PINS="payments=teamflow-payments, inventory=inv",
        TEAMFLOW_DEFAULT_VERSIONS="payments/refund=^2.0",
    )
    assert env.owner_pins == {"payments": "teamflow-payments", "inventory": "inv"}
    assert env.default_versions == {"payments/refund": "^2.0"}
    for document in (
        {"owner_pins": "payments=teamflow-payments"},
        {"owner_pins": {"payments": 1}},
        {"owner_pins": {"Payments": "dist"}},
        {"owner_pins": {"payments": ""}},
        {"default_versions": ["payments/refund"]},
        {"default_versions": {"payments/refund@2.0.0": "2.0.0"}},
        {"default_versions": {"payments/refund": "not a version"}},
        {"default_versions": {"payments/refund": "1." + "1" * 5000}},
    ):
        (key,) = document
        assert refused(tmp_path, document).facts["key"] == key
    for text in ("payments", "payments=a,payments=b", "=x", "payments=a,,"):
        assert refused(tmp_path, TEAMFLOW_OWNER_PINS=text).facts["key"] == "owner_pins"


SHARED = {"owner_team": "platform", "contact_email": "p@example.com", "approvers": ["sarah@example.com"]}


def test_namespace_tables_are_checked_field_by_field(tmp_path: Path) -> None:
    config = loaded(tmp_path, {"namespaces": {"shared": SHARED}})
    assert config.namespaces == {
        "shared": NamespaceConfig("platform", "p@example.com", approvers=("sarah@example.com",))
    }
    error = refused(
        tmp_path,
        {
            "namespaces": {
                "shared": {
                    **SHARED,
                    "approvers": "sarah@example.com",
                    "requires_approval": "yes",
                    "owner": "x",
                },
                "Other": {"owner_team": "t"},
            }
        },
    )
    lines = error.detail.splitlines()[1:]
    assert [line.split(": ", 1)[1].split(" must be ")[0] for line in lines] == [
        "namespaces.shared.requires_approval",
        "namespaces.shared.approvers",
        "namespaces.shared",
        "namespaces['Other']",
        "namespaces['Other'].contact_email",
    ]
    assert "(unknown keys 'owner')" in lines[2]
    assert "namespaces['Other'].contact_email must be a string, got nothing" in lines[4]
    error = refused(tmp_path, TEAMFLOW_NAMESPACES="{not json")
    assert "environment variable TEAMFLOW_NAMESPACES: namespaces must be" in error.detail
    assert "not JSON" in error.detail


def test_unknown_keys_are_refused_with_the_known_keys(tmp_path: Path) -> None:
    error = refused(tmp_path, {"lease": 30, "source": "me", "strict": False})
    assert (
        "teamflow.toml: unknown keys 'lease', 'source' (known keys: database_url, strict, log_format"
        in error.detail
    )
    assert error.facts["key"] == "lease"


def test_every_problem_is_reported_at_once_naming_its_origin(tmp_path: Path) -> None:
    """One error for the file and the variables alike, one line each; the file's value is
    checked even where a variable overrides it."""
    error = refused(
        tmp_path,
        {"lease_s": math.nan, "strict": "false"},
        TEAMFLOW_LEASE_S="5",
        TEAMFLOW_POLL_INTERVAL_S="soon",
        TEAMFLOW_LOG_LEVEL="x" * 500,
    )
    file = tmp_path / "teamflow.toml"
    assert error.detail.splitlines() == [
        "invalid configuration:",
        f"  {file}: lease_s must be > 0 seconds and at most 86400 (a finite number), got nan",
        f"  {file}: strict must be a boolean: true or false (from the environment also 1/0, yes/no, on/off), "
        "got 'false'",
        "  environment variable TEAMFLOW_LOG_LEVEL: log_level must be one of TRACE, DEBUG, INFO, SUCCESS, "
        f"WARNING, ERROR, CRITICAL (any case), got '{'x' * 76}...",
        "  environment variable TEAMFLOW_POLL_INTERVAL_S: poll_interval_s must be > 0 seconds and at most 3600 "
        "(a finite number), got 'soon'",
    ]
    assert error.facts == {"file": str(file), "variable": "TEAMFLOW_LOG_LEVEL", "key": "lease_s"}


# -- the property: whatever is given, a documented configuration or a refusal naming the key ---------

LEVELS = {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}
NAME = re.compile(r"[a-z][a-z0-9_]*")
DISTRIBUTION = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
DEFAULTS = {
    "database_url": "sqlite:///teamflow.db",
    "strict": False,
    "log_format": "text",
    "log_level": "INFO",
    "lease_s": 30.0,
    "poll_interval_s": 1.0,
    "retry_base_s": 1.0,
    "retry_max_s": 300.0,
    "max_wait_s": 60.0,
    "shutdown_grace_s": 10.0,
    "sqlite_synchronous": "FULL",
    "sqlite_wal_autocheckpoint": 10_000,
    "conflict_resolvers": (),
    "auth": False,
    "token_expires_s": 90 * 86400.0,
    "session_idle_s": 1800.0,
    "owner_pins": {},
    "default_versions": {},
    "sunsets": {},
    "namespaces": {},
}
BAD = object()  # the verdict on a value that must be refused


def dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def seconds(low: float, high: float, low_open: bool) -> Any:
    def verdict(value: Any) -> Any:
        if not is_number(value) or (type(value) is float and not math.isfinite(value)):
            return BAD
        inside = (value > low if low_open else value >= low) and value <= high  # exact, for huge ints
        return float(value) if inside else BAD

    return verdict


def wal(value: Any) -> Any:
    return value if type(value) is int and 100 <= value <= 10_000_000 else BAD


def strings(value: Any, item_ok: Any) -> bool:
    return type(value) is list and all(type(item) is str and item.strip() and item_ok(item) for item in value)


def resolvers(value: Any) -> Any:
    return tuple(dist(n) for n in value) if strings(value, DISTRIBUTION.fullmatch) else BAD


def url(value: Any) -> Any:
    ok = (
        type(value) is str
        and value == value.strip()
        and value.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg2://"))
        and value not in ("sqlite:///",)
        and not value.startswith(("sqlite:///:memory:", "sqlite:///file::memory:"))
    )
    return value if ok else BAD


def pins(value: Any) -> Any:
    ok = type(value) is dict and all(
        NAME.fullmatch(k) and type(v) is str and DISTRIBUTION.fullmatch(v) for k, v in value.items()
    )
    return {k: dist(v) for k, v in value.items()} if ok else BAD


# What a value in teamflow.toml must be (and becomes), key by key, as the README documents it.
TOML_RULES: dict[str, Any] = {
    "database_url": url,
    "strict": lambda v: v if type(v) is bool else BAD,
    "auth": lambda v: v if type(v) is bool else BAD,
    "log_format": lambda v: v if v in ("text", "json") and type(v) is str else BAD,
    "log_level": lambda v: v.upper() if type(v) is str and v.isascii() and v.upper() in LEVELS else BAD,
    "lease_s": seconds(0, 86400, True),
    "poll_interval_s": seconds(0, 3600, True),
    "retry_base_s": seconds(0, 86400, False),
    "retry_max_s": seconds(0, 86400, False),
    "max_wait_s": seconds(0, 3600, True),
    "token_expires_s": seconds(0, 315_360_000, True),
    "session_idle_s": seconds(0, 86400, True),
    "shutdown_grace_s": seconds(0, 3600, False),
    "sqlite_synchronous": lambda v: (
        v.upper() if type(v) is str and v.isascii() and v.upper() in ("FULL", "NORMAL") else BAD
    ),
    "sqlite_wal_autocheckpoint": wal,
    "conflict_resolvers": resolvers,
    "owner_pins": pins,
}


def env_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def env_pairs(text: str) -> Any:
    out: dict[str, str] = {}
    for item in text.split(",") if text.strip() else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or key.strip() in out:
            return BAD
        out[key.strip()] = value.strip()
    return out


def env_number(text: str) -> Any:
    # a different formulation from config.py's pattern: decimal characters only, then float()
    if not text.strip() or set(text.strip()) - set("0123456789+-.eE"):
        return BAD
    try:
        return float(text)
    except ValueError:
        return BAD


def env_integer(text: str) -> Any:
    if not text.strip() or set(text.strip()) - set("0123456789+-"):
        return BAD
    try:
        return int(text)
    except ValueError:
        return BAD


def env_boolean(text: str) -> Any:
    word = text.strip().lower()
    return {
        "true": True,
        "1": True,
        "yes": True,
        "on": True,
        "false": False,
        "0": False,
        "no": False,
        "off": False,
    }.get(word, BAD)


def then(read: Any, rule: Any) -> Any:
    def verdict(text: str) -> Any:
        value = read(text)
        return BAD if value is BAD else rule(value)

    return verdict


# What a TEAMFLOW_<KEY> string must be (and becomes).
ENV_RULES: dict[str, Any] = {
    "database_url": url,
    "strict": env_boolean,
    "auth": env_boolean,
    "log_format": TOML_RULES["log_format"],
    "log_level": TOML_RULES["log_level"],
    "sqlite_synchronous": TOML_RULES["sqlite_synchronous"],
    "lease_s": then(env_number, TOML_RULES["lease_s"]),
    "poll_interval_s": then(env_number, TOML_RULES["poll_interval_s"]),
    "retry_base_s": then(env_number, TOML_RULES["retry_base_s"]),
    "retry_max_s": then(env_number, TOML_RULES["retry_max_s"]),
    "max_wait_s": then(env_number, TOML_RULES["max_wait_s"]),
    "token_expires_s": then(env_number, TOML_RULES["token_expires_s"]),
    "session_idle_s": then(env_number, TOML_RULES["session_idle_s"]),
    "shutdown_grace_s": then(env_number, TOML_RULES["shutdown_grace_s"]),
    "sqlite_wal_autocheckpoint": then(env_integer, wal),
    "conflict_resolvers": then(env_list, resolvers),
    "owner_pins": then(env_pairs, pins),
}

text = st.text(st.characters(codec="utf-8"), max_size=24)
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 100, 3600, 3601, 86400, 86401, 10_000_000, 10_000_001, 10**30, -(2**63)]),
    st.floats(),  # nan, inf, negative, huge
    st.sampled_from([0.0, -0.0, 0.5, 1e-300, 1e300, 86400.0, 3600.5]),
    text,
    st.sampled_from(["", " ", "true", "false", "debug", "normal", "json", "30", "sqlite:///x.db", "x" * 20]),
)
anything = st.one_of(
    scalars,
    st.lists(
        st.one_of(text, st.sampled_from(["teamflow-x", "a.b_c", "y" * 16, " ", ""]), st.integers()),
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from(["payments", "Bad", "x y", ""]), st.one_of(text, st.integers()), max_size=2
    ),
)
env_text = st.one_of(
    text,
    st.sampled_from(
        [
            "",
            " ",
            "true",
            " Off ",
            "maybe",
            "1",
            "0",
            "30",
            "0.5",
            "-1",
            "1e3",
            "1e999",
            "nan",
            "inf",
            "30s",
            "1_0",
            "2500",
            "debug",
            "VERBOSE",
            "normal",
            "json",
            "sqlite:///x.db",
            "postgres://h/db",
            "a,,b",
            "teamflow-x, other",
            "z" * 16 + "," + "w" * 20,
            "payments=teamflow-payments",
            "payments",
            "Payments=x",
        ]
    ),
)

# default_versions and namespaces: right or wrong by construction (a constraint parser or a
# policy table is not repeated here), each drawn with its verdict.
DEFAULT_VERSIONS_TOML = [
    ({"payments/refund": "^2.0"}, {"payments/refund": "^2.0"}),
    ({}, {}),
    ({"a/b": "1.0.0 || 3.x"}, {"a/b": "1.0.0 || 3.x"}),
    ({"payments/refund@1.0.0": "2.0"}, BAD),
    ({"Payments/refund": "2.0"}, BAD),
    ({"payments/refund": "not a version"}, BAD),
    ({"payments/refund": 2}, BAD),
    ("payments/refund=2.0", BAD),
    (["payments/refund"], BAD),
]
DEFAULT_VERSIONS_ENV = [
    ("payments/refund=^2.0", {"payments/refund": "^2.0"}),
    ("", {}),
    ("payments/refund", BAD),
    ("payments/refund=", BAD),
    ("a/b=1.0, a/b=2.0", BAD),
]
SUNSETS_TOML = [
    ({"payments/refund@2.0.0": "2027-03-01"}, {"payments/refund@2.0.0": "2027-03-01"}),
    ({}, {}),
    ({"payments/refund": "2027-03-01"}, BAD),  # no version
    ({"payments/refund@^2.0": "2027-03-01"}, BAD),  # a constraint, not a version
    ({"payments/refund@2.0.0": "2027-02-30"}, BAD),  # no such day
    ({"payments/refund@2.0.0": "1 March 2027"}, BAD),
    ({"payments/refund@2.0.0": 20270301}, BAD),
    (["payments/refund@2.0.0"], BAD),
]
SUNSETS_ENV = [
    ("payments/refund@2.0.0=2027-03-01", {"payments/refund@2.0.0": "2027-03-01"}),
    ("", {}),
    ("payments/refund@2.0.0", BAD),
    ("payments/refund@2.0.0=2027-3-1", BAD),
]
NAMESPACES_TOML = [
    (
        {"shared": SHARED},
        {"shared": NamespaceConfig("platform", "p@example.com", approvers=("sarah@example.com",))},
    ),
    ({}, {}),
    ({"shared": {**SHARED, "owner": "x"}}, BAD),
    ({"shared": {**SHARED, "approvers": "sarah@example.com"}}, BAD),
    ({"shared": {**SHARED, "requires_approval": "true"}}, BAD),
    ({"shared": {"owner_team": "platform"}}, BAD),
    ({"Shared": SHARED}, BAD),
    ({"shared": "platform"}, BAD),
    ([SHARED], BAD),
]
NAMESPACES_ENV = [
    (
        '{"shared": {"owner_team": "platform", "contact_email": "p@example.com", "approvers": ["sarah@example.com"]}}',
        NAMESPACES_TOML[0][1],
    ),
    ("{}", {}),
    ("", BAD),
    ('{"shared": {"owner_team": 1, "contact_email": "e"}}', BAD),
    ("[]", BAD),
    ("{not json", BAD),
]


def within(low: float, high: float, low_open: bool) -> Any:
    return st.floats(low, high, exclude_min=low_open) | st.integers(int(low) + low_open, int(high))


# Values each key takes, so that whole configurations are often accepted; the few "wild"
# entries of an example draw from anything instead.
NAMES = st.lists(st.sampled_from(["teamflow-x", "A.b_c", "z9", "Teamflow_Payments"]), max_size=3)
PINS = st.dictionaries(
    st.sampled_from(["payments", "inventory", "a1_b"]), st.sampled_from(["teamflow-x", "X.y"])
)
TAME_TOML: dict[str, Any] = {
    "database_url": st.sampled_from(["sqlite:///x.db", "sqlite://", "sqlite:", "postgres://u:pw@h/db"]),
    "strict": st.booleans(),
    "auth": st.booleans(),
    "log_format": st.sampled_from(["text", "json"]),
    "log_level": st.sampled_from(["debug", "INFO", "Warning", "critical", "TRACE"]),
    "lease_s": within(0, 86400, True),
    "poll_interval_s": within(0, 3600, True),
    "retry_base_s": within(0, 86400, False),
    "retry_max_s": within(0, 86400, False),
    "max_wait_s": within(0, 3600, True),
    "token_expires_s": within(0, 315_360_000, True),
    "session_idle_s": within(0, 86400, True),
    "shutdown_grace_s": within(0, 3600, False),
    "sqlite_synchronous": st.sampled_from(["full", "NORMAL", "Normal"]),
    "sqlite_wal_autocheckpoint": st.integers(100, 10_000_000),
    "conflict_resolvers": NAMES,
    "owner_pins": PINS,
}
TAME_ENV: dict[str, Any] = {
    **TAME_TOML,
    "strict": st.sampled_from(["true", " Off ", "1", "no", "YES", "on\n"]),
    "auth": st.sampled_from(["true", " Off ", "1", "no", "YES", "on\n"]),
    "lease_s": within(0, 86400, True).map(repr),
    "poll_interval_s": within(0, 3600, True).map(repr),
    "retry_base_s": within(0, 86400, False).map(repr),
    "retry_max_s": within(0, 86400, False).map(repr),
    "max_wait_s": within(0, 3600, True).map(repr),
    "token_expires_s": within(0, 315_360_000, True).map(repr),
    "session_idle_s": within(0, 86400, True).map(repr),
    "shutdown_grace_s": within(0, 3600, False).map(repr),
    "sqlite_wal_autocheckpoint": st.integers(100, 10_000_000).map(str),
    "conflict_resolvers": NAMES.map(", ".join),
    "owner_pins": PINS.map(lambda pins: ",".join(f"{k}={v}" for k, v in pins.items())),
}
# The edges of each rule, which random values seldom hit.
EDGES_TOML: dict[str, list[Any]] = {
    "database_url": ["sqlite:/", "sqlite:///", " sqlite://", "postgresql:/h", "SQLITE:///x.db"],
    "strict": ["true", 1, 0],
    "auth": ["true", 1, 0],
    "log_format": ["Text", "json "],
    "log_level": ["\u0131nfo", "info ", "Info", "WARN"],
    "lease_s": [0, 0.0, -0.0, 5e-324, 86400, 86400.00001, 86401],
    "poll_interval_s": [0, -0.0, 5e-324, 3600, 3600.0000001, 3601],
    "max_wait_s": [0, 3600, 3601, math.nan],
    "token_expires_s": [0, 1, 315_360_000, 315_360_001, math.inf],
    "session_idle_s": [0, 86400, 86401, -1],
    "shutdown_grace_s": [0, -1, 3600, 3601],
    "retry_base_s": [-5e-324, 0, -0.0, 86400, 86400.00001],
    "retry_max_s": [-5e-324, 0, 86400, 86401, 2.0**1023],
    "sqlite_synchronous": ["FULL ", "OFF", "normaL", "\u017fynchronous"],
    "sqlite_wal_autocheckpoint": [99, 100, 10_000_000, 10_000_001, 100.0, True],
    "conflict_resolvers": [["\u017f"], ["\u212a"], ["a-"], ["-a"], ["a b"], [" a"], "a", ["a", ["b"]]],
    "owner_pins": [{"payments": ""}, {"payments": "a b"}, {"_x": "d"}, {"payments": ["d"]}, {"p": "\u017f"}],
}
EDGES_ENV: dict[str, list[str]] = {
    "database_url": EDGES_TOML["database_url"],
    "strict": ["tru", "y", "2", "", "onn", "\u3000true\u3000", "\u028fes"],
    "auth": ["tru", "y", "2", "", "onn", "\u3000true\u3000", "\u028fes"],
    "log_format": EDGES_TOML["log_format"],
    "log_level": EDGES_TOML["log_level"],
    "lease_s": [
        "0",
        "-0",
        "0.0",
        "5e-324",
        "86400",
        "86400.00001",
        "1e5",
        ".5",
        "5.",
        "+1",
        "1e",
        "--1",
        "\u0661",
    ],
    "poll_interval_s": ["0", "3600", "3600.0000001", "1e-9", "1_0", " 1 "],
    "max_wait_s": ["0", "60", "inf"],
    "token_expires_s": ["0", "3600", "315360001", "inf"],
    "session_idle_s": ["0", "60", "86401"],
    "shutdown_grace_s": ["0", "-1", "10"],
    "retry_base_s": ["-0", "0", "-1e-300", "86400", "inf", "NaN"],
    "retry_max_s": ["0", "86400", "86401", "1e308", "1e309"],
    "sqlite_synchronous": EDGES_TOML["sqlite_synchronous"],
    "sqlite_wal_autocheckpoint": [
        "99",
        "100",
        "10000000",
        "10000001",
        "100.0",
        "1e3",
        "+100",
        " 100 ",
        "0100",
    ],
    "conflict_resolvers": ["a,", ",a", "a,,b", " , ", "\u017f", "a b", "a;b"],
    "owner_pins": ["payments=", "payments=a=b", "=a", "payments = d", "payments=d,", "p=\u017f"],
}
KEYS = sorted(DEFAULTS)


def judged(rule: Any, values: Any) -> Any:
    """Values paired with their verdict by ``rule``."""
    return values.map(lambda value: (value, rule(value)))


def entry(key: str, in_env: bool, wild: bool) -> Any:
    """One (value, verdict) for ``key`` in the file or a variable, tame or from anything."""
    if key in ("default_versions", "namespaces", "sunsets"):
        pool = {
            ("default_versions", False): DEFAULT_VERSIONS_TOML,
            ("default_versions", True): DEFAULT_VERSIONS_ENV,
            ("sunsets", False): SUNSETS_TOML,
            ("sunsets", True): SUNSETS_ENV,
            ("namespaces", False): NAMESPACES_TOML,
            ("namespaces", True): NAMESPACES_ENV,
        }[key, in_env]
        tame = st.sampled_from([(value, verdict) for value, verdict in pool if verdict is not BAD])
        if not wild:
            return tame
        if in_env:  # random text might spell a table ("", "{}"): only the pool, whose verdicts are known
            return st.sampled_from(pool)
        return st.sampled_from(pool) | scalars.map(lambda value: (value, BAD))  # never a table
    rules, tame, edges, random = (
        (ENV_RULES, TAME_ENV, EDGES_ENV, env_text)
        if in_env
        else (TOML_RULES, TAME_TOML, EDGES_TOML, anything)
    )
    return judged(rules[key], st.sampled_from(edges[key]) | random if wild else tame[key])


@st.composite
def configurations(draw: Any) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """A teamflow.toml and an environment, as key -> (value, verdict) each."""
    in_file = draw(st.lists(st.sampled_from(KEYS), unique=True))
    in_env = draw(st.lists(st.sampled_from(KEYS), unique=True))
    places = [(key, False) for key in in_file] + [(key, True) for key in in_env]
    wild = set(draw(st.lists(st.sampled_from(places), unique=True, max_size=4))) if places else set()
    document = {key: draw(entry(key, False, (key, False) in wild)) for key in in_file}
    environment = {key: draw(entry(key, True, (key, True) in wild)) for key in in_env}
    return document, environment


def assert_documented(config: HostConfig) -> None:
    """Every field has exactly its documented type and range."""
    assert type(config.database_url) is str and url(config.database_url) is not BAD
    assert type(config.strict) is bool
    assert config.log_format in ("text", "json")
    assert config.log_level in LEVELS
    for name, low, high, low_open in (
        ("lease_s", 0, 86400, True),
        ("poll_interval_s", 0, 3600, True),
        ("retry_base_s", 0, 86400, False),
        ("retry_max_s", 0, 86400, False),
    ):
        value = getattr(config, name)
        assert type(value) is float and math.isfinite(value), name
        assert (value > low if low_open else value >= low) and value <= high, name
    assert config.retry_max_s >= config.retry_base_s
    assert config.sqlite_synchronous in ("FULL", "NORMAL")
    assert (
        type(config.sqlite_wal_autocheckpoint) is int
        and 100 <= config.sqlite_wal_autocheckpoint <= 10_000_000
    )
    assert type(config.conflict_resolvers) is tuple
    assert all(
        type(n) is str and DISTRIBUTION.fullmatch(n) and n == dist(n) for n in config.conflict_resolvers
    )
    assert type(config.auth) is bool
    assert type(config.token_expires_s) is float and 0 < config.token_expires_s <= 315_360_000
    assert type(config.session_idle_s) is float and 0 < config.session_idle_s <= 86400
    assert all(
        NAME.fullmatch(k) and DISTRIBUTION.fullmatch(v) and v == dist(v) for k, v in config.owner_pins.items()
    )
    assert all(type(k) is str and type(v) is str for k, v in config.default_versions.items())
    assert all("@" in k and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for k, v in config.sunsets.items())
    for name, namespace in config.namespaces.items():
        assert NAME.fullmatch(name) and type(namespace) is NamespaceConfig
        assert all(type(getattr(namespace, f)) is str for f in ("owner_team", "contact_email", "description"))
        assert type(namespace.requires_approval) is bool
        for field in (namespace.approvers, namespace.allowed_callers, namespace.contributors):
            assert type(field) is tuple and all(type(item) is str and item.strip() for item in field)


def named_keys(error: ConfigError, file: Path) -> set[str]:
    """The key at the head of each line of the error, checked against the line's origin."""
    keys = set()
    for line in error.detail.splitlines()[1:]:
        line = line.strip()
        if line.startswith("environment variable "):
            variable, _, rest = line[len("environment variable ") :].partition(": ")
        else:
            assert line.startswith(f"{file}: "), line
            variable, rest = "", line[len(f"{file}: ") :]
        key = rest.partition(" ")[0].partition(".")[0].partition("[")[0]
        assert not variable or variable == f"TEAMFLOW_{key.upper()}", line
        keys.add(key)
    return keys


@pytest.fixture(scope="module")
def property_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every example (each writes its file whole before reading it)."""
    return tmp_path_factory.mktemp("config")


@settings(max_examples=400, deadline=None)
@given(configurations())
def test_every_configuration_is_documented_or_refused_by_key(
    property_dir: Path,
    configuration: tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]],
) -> None:
    """Proves: whatever types and values the file and the variables hold, ``load_config``
    either returns exactly the documented types and ranges (the values given, normalised as
    documented) or refuses, naming every key given a bad value and no other."""
    document, environment = configuration
    file = write(property_dir / "teamflow.toml", {key: value for key, (value, _) in document.items()})
    env = {f"TEAMFLOW_{key.upper()}": value for key, (value, _) in environment.items()}
    bad = {key for key, (_, verdict) in [*document.items(), *environment.items()] if verdict is BAD}
    effective = {
        **DEFAULTS,
        **{key: verdict for key, (_, verdict) in [*document.items(), *environment.items()]},
    }
    if not {"retry_base_s", "retry_max_s"} & bad and effective["retry_max_s"] < effective["retry_base_s"]:
        given_keys = document.keys() | environment.keys()
        bad.add("retry_max_s" if "retry_max_s" in given_keys else "retry_base_s")
    if bad:
        with pytest.raises(ConfigError) as caught:
            load_config(file, env=env)
        assert named_keys(caught.value, file) == bad, caught.value.detail
        assert caught.value.facts["key"] in bad
    else:
        config = load_config(file, env=env)
        assert_documented(config)
        for key, value in effective.items():
            assert getattr(config, key) == value, key
            assert type(getattr(config, key)) is type(value), key
