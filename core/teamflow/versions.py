"""SemVer 2.0 versions and node-semver constraints.

Versions are strict SemVer 2.0 without build metadata. Constraints follow node-semver's
range rules with ``includePrerelease`` off, plus commas as a second way to join the
comparators of a set. A parsed constraint is a list of key intervals, so matching
compares plain tuples and never builds a ``semver`` object.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, NamedTuple

import attrs
import semver

from teamflow.errors import InvalidVersion, VersionTooLong

MAX_VERSION = 256  # characters of a version or a constraint (npm's limit; teamflow.limits says so too)

__all__ = ["Constraint", "Version", "parse_constraint", "parse_version"]

VersionKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]
_Bound = tuple[Any, ...]

_IDENTIFIER = re.compile(r"0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*", re.ASCII)
_NUMBER = r"0|[1-9][0-9]*|[xX*]"
_PARTIAL = re.compile(rf"({_NUMBER})(?:\.({_NUMBER})(?:\.({_NUMBER}))?)?", re.ASCII)
_OPERATOR = re.compile(r"\^|~>?|>=|<=|>|<|=")
_OPERATOR_SPACE = re.compile(r"(\^|~>?|>=|<=|>|<|=)\s+")
_HYPHEN = re.compile(r"([^\s,]+)\s+-\s+([^\s,]+)")
_SEPARATOR = re.compile(r"\s*,\s*|\s+")
_WILDCARDS = frozenset("xX*")
_FORMS = "use forms like 1.2.0, ^1.2, ~1.2, 1.x, >=1.2.0,<2.0.0 or 1.2.0 - 2.0.0"

# Every key is >= the empty tuple; every key is < (inf,) because majors are ints.
_BOTTOM: _Bound = ()
_TOP: _Bound = (math.inf,)


def _identifier_key(identifier: str) -> tuple[int, int | str]:
    # SemVer 2.0 §11.4: numeric identifiers compare as numbers and rank below alphanumeric ones.
    return (0, int(identifier)) if identifier.isdigit() else (1, identifier)


@attrs.frozen(order=True, repr=False)
class Version:
    """A SemVer 2.0 version without build metadata; build one with :func:`parse_version`.

    Equality, hashing and ordering use ``key``, a plain tuple that sorts by SemVer
    precedence: a release ranks above its pre-releases, numeric pre-release identifiers
    compare as numbers below alphanumeric ones, and a shorter identifier list ranks
    lower when it is a prefix of the longer one.
    """

    major: int = attrs.field(eq=False)
    minor: int = attrs.field(eq=False)
    patch: int = attrs.field(eq=False)
    prerelease: tuple[str, ...] = attrs.field(default=(), eq=False)
    text: str = attrs.field(init=False, eq=False)
    key: VersionKey = attrs.field(init=False)

    @text.default
    def _canonical_text(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core

    @key.default
    def _precedence_key(self) -> VersionKey:
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        identifiers = tuple(_identifier_key(identifier) for identifier in self.prerelease)
        return (self.major, self.minor, self.patch, 0, identifiers)

    def __attrs_post_init__(self) -> None:
        numbers = (self.major, self.minor, self.patch)
        if not (
            all(type(number) is int and number >= 0 for number in numbers)
            and type(self.prerelease) is tuple
            and all(isinstance(i, str) and _IDENTIFIER.fullmatch(i) for i in self.prerelease)
        ):
            raise InvalidVersion(
                f"invalid version parts {numbers!r} {self.prerelease!r}: use non-negative integers and "
                "pre-release identifiers of ASCII letters, digits and '-' without leading zeros",
                version=self.text,
            )

    @property
    def is_prerelease(self) -> bool:
        """True for a pre-release such as ``2.0.0-rc.1``."""
        return bool(self.prerelease)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def parse_version(text: str) -> Version:
    """Parse a SemVer 2.0 version such as ``2.1.0`` or ``2.1.0-rc.1``.

    :param text: the version as written by a plugin, a user or the store.
    :raises InvalidVersion: for anything else, including build metadata, a leading
        ``v`` and partial versions such as ``2.1``; the message says what to write.
    """
    _bounded(text, "version")
    try:
        parsed = semver.Version.parse(text)
    except (TypeError, ValueError):
        raise InvalidVersion(_version_problem(text), version=text) from None
    if parsed.build is not None:
        raise InvalidVersion(_version_problem(text), version=text)
    prerelease = tuple(parsed.prerelease.split(".")) if parsed.prerelease else ()
    return Version(parsed.major, parsed.minor, parsed.patch, prerelease)


def _bounded(text: object, what: str) -> None:
    # Longer texts are refused before any number in them is converted: Python refuses to
    # convert an integer of more than 4,300 digits, and no real version comes near this.
    if isinstance(text, str) and len(text) > MAX_VERSION:
        raise VersionTooLong(
            f"the {what} is {len(text)} characters long; at most {MAX_VERSION} are allowed",
            version=text[:40] + "…",
            limit=MAX_VERSION,
        )


def _version_problem(text: object) -> str:
    if not isinstance(text, str):
        return f"invalid version {text!r}: expected a string such as '1.2.0'"
    if not text.strip():
        return "empty version: write a full version such as '1.2.0'"
    problems, suggestion = _repair(text, partial_ok=False)
    if suggestion is None or not problems:
        return (
            f"invalid version {text!r}: a version is MAJOR.MINOR.PATCH with an optional "
            "pre-release, such as '1.2.0' or '1.2.0-rc.1'"
        )
    return f"invalid version {text!r}: {'; '.join(problems)}; write {suggestion!r}"


def _repair(text: str, *, partial_ok: bool) -> tuple[list[str], str | None]:
    """Name what is wrong with ``text`` and, when a fix is obvious, the corrected text.

    With ``partial_ok`` (inside a constraint) ``1.2`` is acceptable unless it carries a
    pre-release.
    """
    problems = []
    rest = text.strip()
    if rest != text:
        problems.append("surrounding whitespace is not allowed")
    if rest[:1] in ("v", "V") and rest[1:2].isdigit():
        problems.append("a leading 'v' is not part of the version")
        rest = rest[1:]
    rest, plus, _ = rest.partition("+")
    if plus:
        problems.append("build metadata is not allowed")
    core, dash, pre = rest.partition("-")
    numbers = core.split(".")
    if not (core.isascii() and all(n.isdigit() for n in numbers)) or len(numbers) > 3:
        return problems, None
    if any(n != str(int(n)) for n in numbers):
        problems.append("numbers may not have leading zeros")
        numbers = [str(int(n)) for n in numbers]
    if len(numbers) < 3 and (dash or not partial_ok):
        problems.append("a version needs all three numbers MAJOR.MINOR.PATCH")
        numbers += ["0"] * (3 - len(numbers))
    identifiers = pre.split(".") if dash else []
    if not all(i and i.isascii() and re.fullmatch(r"[0-9A-Za-z-]+", i) for i in identifiers):
        return problems, None
    if any(i.isdigit() and i != str(int(i)) for i in identifiers):
        problems.append("numeric pre-release identifiers may not have leading zeros")
        identifiers = [str(int(i)) if i.isdigit() else i for i in identifiers]
    repaired = ".".join(numbers) + (f"-{'.'.join(identifiers)}" if identifiers else "")
    return problems, repaired


class _Interval(NamedTuple):
    """One ``||`` alternative, reduced to the keys it admits."""

    low: _Bound
    low_open: bool
    high: _Bound
    high_open: bool
    # (major, minor, patch) of the pre-releases the alternative names; node-semver only
    # lets a pre-release through when it shares one of these.
    prerelease_cores: frozenset[tuple[int, int, int]]


@attrs.frozen(repr=False)
class Constraint:
    """A parsed node-semver range; build one with :func:`parse_constraint`.

    ``exact`` is the version when the text names exactly one full version (``1.2.3``
    or ``=1.2.3``), so callers can look it up instead of scanning.
    """

    text: str
    exact: Version | None
    _alternatives: tuple[_Interval, ...]

    def matches(self, version: Version) -> bool:
        """True when ``version`` satisfies the constraint.

        A pre-release satisfies it only through an alternative that names a pre-release
        of the same MAJOR.MINOR.PATCH.
        """
        key = version.key
        for low, low_open, high, high_open, prerelease_cores in self._alternatives:
            if (
                (key > low if low_open else key >= low)
                and (key < high if high_open else key <= high)
                and (not version.prerelease or key[:3] in prerelease_cores)
            ):
                return True
        return False

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Constraint({self.text!r})"


class _IntervalBuilder:
    """Intersects the comparators of one comparator set into a single interval."""

    def __init__(self) -> None:
        self.low: _Bound = _BOTTOM
        self.low_open = False
        self.high: _Bound = _TOP
        self.high_open = False
        self.prerelease_cores: set[tuple[int, int, int]] = set()

    def at_least(self, key: _Bound, *, open_: bool = False) -> None:
        if key > self.low or (key == self.low and open_):
            self.low, self.low_open = key, open_

    def at_most(self, key: _Bound, *, open_: bool = False) -> None:
        if key < self.high or (key == self.high and open_):
            self.high, self.high_open = key, open_

    def below_all_of(self, numbers: tuple[int, int, int]) -> None:
        """Exclude ``numbers`` and every pre-release of it (node's ``<X.Y.Z-0``)."""
        self.at_most((*numbers, 0, ()), open_=True)

    def build(self) -> _Interval:
        return _Interval(self.low, self.low_open, self.high, self.high_open, frozenset(self.prerelease_cores))


@functools.lru_cache(maxsize=4096)
def parse_constraint(text: str) -> Constraint:
    """Parse a node-semver range such as ``^1.2``, ``>=2.0.0,<3.0.0`` or ``1.x || 3.0.0``.

    :param text: the constraint as written; ``str()`` of the result returns it unchanged.
    :raises InvalidVersion: when the text is not a range; the message names the part
        at fault and what to write instead.
    """
    _bounded(text, "version constraint")
    if not text.strip():
        raise InvalidVersion(
            f"empty version constraint {text!r}: write a version such as '1.2.0' or a range such as '^1.2'",
            constraint=text,
        )
    alternatives = []
    for alternative in text.split("||"):
        if not alternative.strip():
            raise InvalidVersion(
                f"invalid version constraint {text!r}: an alternative around '||' is empty",
                constraint=text,
            )
        alternatives.append(_parse_alternative(alternative.strip(), text))
    return Constraint(text, _exact_version(text), tuple(alternatives))


def _exact_version(text: str) -> Version | None:
    body = text.strip()
    body = body[1:].lstrip() if body.startswith("=") else body
    try:
        return parse_version(body)
    except InvalidVersion:
        return None


def _parse_alternative(alternative: str, text: str) -> _Interval:
    builder = _IntervalBuilder()
    hyphen = _HYPHEN.fullmatch(alternative)
    if hyphen:
        for operator, end in ((">=", hyphen[1]), ("<=", hyphen[2])):
            if _OPERATOR.match(end):
                raise InvalidVersion(
                    f"invalid version constraint {text!r}: the ends of a hyphen range "
                    f"'{hyphen[0]}' take no operator",
                    constraint=text,
                )
            _narrow(builder, operator, _parse_target("", end, text))
        return builder.build()
    for token in _SEPARATOR.split(_OPERATOR_SPACE.sub(r"\1", alternative)):
        if not token:
            raise InvalidVersion(
                f"invalid version constraint {text!r}: an empty comparator between commas",
                constraint=text,
            )
        if token == "-":
            raise InvalidVersion(
                f"invalid version constraint {text!r}: a hyphen range 'A - B' must be a whole "
                "alternative on its own, such as '1.2.0 - 2.0.0 || >=3.0.0'",
                constraint=text,
            )
        operator_match = _OPERATOR.match(token)
        operator = operator_match[0] if operator_match else ""
        _narrow(builder, operator, _parse_target(operator, token[len(operator) :], text))
    return builder.build()


def _narrow(builder: _IntervalBuilder, operator: str, parsed: Version | tuple[int, ...]) -> None:
    """Narrow ``builder`` by one comparator, following node-semver's desugaring."""
    if isinstance(parsed, Version):
        numbers: tuple[int, ...] = (parsed.major, parsed.minor, parsed.patch)
        lower: _Bound = parsed.key
        if parsed.prerelease:
            builder.prerelease_cores.add((parsed.major, parsed.minor, parsed.patch))
    else:
        numbers = parsed
        lower = (*_pad(numbers), 1, ())

    if not numbers:
        # '*', '>=*', '<=*', '^*', '~*' accept everything; '>*' and '<*' are refused earlier.
        return
    if operator == "^":
        first_nonzero = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        builder.at_least(lower)
        builder.below_all_of(_bump(numbers, first_nonzero))
    elif operator in ("~", "~>"):
        builder.at_least(lower)
        builder.below_all_of(_bump(numbers, min(1, len(numbers) - 1)))
    elif isinstance(parsed, Version):
        key = parsed.key
        if operator in ("", "="):
            builder.at_least(key)
            builder.at_most(key)
        elif operator.startswith(">"):
            builder.at_least(key, open_=operator == ">")
        else:
            builder.at_most(key, open_=operator == "<")
    # A partial version stands for every version it leaves open: '1.2' is 1.2.0 up to 1.3.0.
    elif operator in ("", "="):
        builder.at_least(lower)
        builder.below_all_of(_bump(numbers, len(numbers) - 1))
    elif operator == ">":
        builder.at_least((*_bump(numbers, len(numbers) - 1), 1, ()))
    elif operator == ">=":
        builder.at_least(lower)
    elif operator == "<":
        builder.below_all_of(_pad(numbers))
    else:
        builder.below_all_of(_bump(numbers, len(numbers) - 1))


def _parse_target(operator: str, body: str, text: str) -> Version | tuple[int, ...]:
    """Read the version part of a comparator: a full Version, or the given numbers of a partial."""
    comparator = operator + body
    if body.startswith("="):
        hint = f"write '={body.lstrip('=')}' or '{body.lstrip('=')}'" if operator == "=" else _FORMS
        raise InvalidVersion(
            f"invalid version constraint {text!r}: {comparator!r} is not a comparator; {hint}",
            constraint=text,
        )
    if not body:
        raise InvalidVersion(
            f"invalid version constraint {text!r}: operator {operator!r} needs a version after it",
            constraint=text,
        )
    partial = _PARTIAL.match(body)
    if partial is None or (partial.end() != len(body) and body[partial.end()] not in "-+"):
        raise _comparator_error(text, operator, body)
    parts = [p for p in partial.groups() if p is not None]
    given = tuple(int(p) for p in parts if p not in _WILDCARDS)
    if any(p in _WILDCARDS for p in parts[: len(given)]):
        first = next(i for i, p in enumerate(parts) if p in _WILDCARDS)
        wildcard = ".".join([*parts[:first], "x"])
        raise InvalidVersion(
            f"invalid version constraint {text!r}: in {comparator!r} only wildcards may follow a "
            f"wildcard; write '{operator}{wildcard}'",
            constraint=text,
        )
    if len(given) == 3:
        try:
            return parse_version(body)
        except InvalidVersion:
            raise _comparator_error(text, operator, body) from None
    if partial.end() != len(body):
        raise _comparator_error(text, operator, body)
    if not given and operator in (">", "<"):
        raise InvalidVersion(
            f"invalid version constraint {text!r}: {comparator!r} matches no version; "
            "write '*' to accept any version",
            constraint=text,
        )
    return given


def _comparator_error(text: str, operator: str, body: str) -> InvalidVersion:
    problems, suggestion = _repair(body, partial_ok=True)
    comparator = operator + body
    if suggestion is None or not problems:
        detail = f"{comparator!r} is not a version or range; {_FORMS}"
    else:
        detail = f"{'; '.join(problems)}; write {operator + suggestion!r} instead of {comparator!r}"
    return InvalidVersion(f"invalid version constraint {text!r}: {detail}", constraint=text)


def _pad(numbers: tuple[int, ...]) -> tuple[int, int, int]:
    major, minor, patch = (*numbers, 0, 0, 0)[:3]
    return (major, minor, patch)


def _bump(numbers: tuple[int, ...], index: int) -> tuple[int, int, int]:
    """``numbers`` with the part at ``index`` raised by one and the parts after it zeroed."""
    return _pad((*numbers[:index], numbers[index] + 1))
