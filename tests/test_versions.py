"""SemVer 2.0 parsing and node-semver constraints (teamflow.versions)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from teamflow.errors import InvalidVersion
from teamflow.versions import Constraint, Version, parse_constraint, parse_version

# --------------------------------------------------------------------------- strategies

identifiers = st.one_of(
    st.sampled_from(["0", "1", "2", "10", "11", "alpha", "beta", "rc", "a1", "1a", "-", "x-y", "Z"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,3}|[0-9]{0,2}[A-Za-z-][0-9A-Za-z-]{0,3})\Z"),
)
version_texts = st.builds(
    lambda major, minor, patch, pre: f"{major}.{minor}.{patch}" + (f"-{'.'.join(pre)}" if pre else ""),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 12),
    st.lists(identifiers, max_size=3),
)
versions = version_texts.map(parse_version)


def _matching(constraint: str, candidates: list[str]) -> list[str]:
    parsed = parse_constraint(constraint)
    return [text for text in candidates if parsed.matches(parse_version(text))]


# --------------------------------------------------------------------------- Version


def test_parse_version_fields() -> None:
    version = parse_version("2.10.3-rc.1")
    assert (version.major, version.minor, version.patch) == (2, 10, 3)
    assert version.prerelease == ("rc", "1")
    assert version.text == str(version) == "2.10.3-rc.1"
    assert version.is_prerelease
    assert repr(version) == "Version('2.10.3-rc.1')"


def test_release_has_no_prerelease() -> None:
    version = parse_version("2.1.0")
    assert version.prerelease == ()
    assert not version.is_prerelease


def test_versions_compare_and_hash_by_precedence() -> None:
    assert parse_version("1.2.3") == Version(1, 2, 3)
    assert hash(parse_version("1.2.3-rc.1")) == hash(Version(1, 2, 3, ("rc", "1")))
    assert parse_version("1.2.3") != parse_version("1.2.4")
    assert max(parse_version(t) for t in ["1.10.0", "1.9.0", "1.2.0"]).text == "1.10.0"
    assert len({parse_version("1.0.0"), parse_version("1.0.0")}) == 1


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidVersion, match="leading zeros"):
        Version(1, 2, 3, ("01",))
    with pytest.raises(InvalidVersion):
        Version(-1, 0, 0)


SPEC_PRECEDENCE = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def test_precedence_follows_the_semver_spec_example() -> None:
    parsed = [parse_version(text) for text in SPEC_PRECEDENCE]
    for lower, higher in pairwise(parsed):
        assert lower < higher
        assert lower.key < higher.key
    shuffled = parsed[:]
    random.Random(4).shuffle(shuffled)
    assert [v.text for v in sorted(shuffled)] == SPEC_PRECEDENCE


@given(st.lists(version_texts, min_size=2, max_size=8))
def test_sorting_by_key_agrees_with_semver(texts: list[str]) -> None:
    by_key = [parse_version(t).key for t in sorted(texts, key=lambda t: parse_version(t).key)]
    for first, second in pairwise(texts):
        expected = semver.Version.compare(semver.Version.parse(first), second)
        ours = parse_version(first).key, parse_version(second).key
        assert expected == (ours[0] > ours[1]) - (ours[0] < ours[1])
    assert by_key == sorted(by_key)


@given(version_texts)
def test_text_round_trips(text: str) -> None:
    assert parse_version(text).text == text
    assert parse_version(parse_version(text).text) == parse_version(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.1", "write '2.1.0'"),
        ("2", "write '2.0.0'"),
        ("2.1-rc.1", "write '2.1.0-rc.1'"),
        ("v1.2.3", "leading 'v' is not part of the version; write '1.2.3'"),
        ("V2.1", "write '2.1.0'"),
        ("1.2.3+build.5", "build metadata is not allowed; write '1.2.3'"),
        ("1.2.3-rc.1+sha.abc", "build metadata is not allowed; write '1.2.3-rc.1'"),
        ("01.2.3", "leading zeros; write '1.2.3'"),
        ("1.2.3-rc.01", "leading zeros; write '1.2.3-rc.1'"),
        (" 1.2.3\n", "whitespace is not allowed; write '1.2.3'"),
        ("1.2.3.4", "MAJOR.MINOR.PATCH"),
        ("1.2.3-", "MAJOR.MINOR.PATCH"),
        ("1.2.3-rc..1", "MAJOR.MINOR.PATCH"),
        ("latest", "MAJOR.MINOR.PATCH"),
        ("^1.2.3", "MAJOR.MINOR.PATCH"),
        ("", "empty version"),
    ],
)
def test_invalid_versions_say_what_to_write(text: str, expected: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        parse_version(text)
    assert expected in caught.value.detail
    assert caught.value.code == "invalid_version"
    assert caught.value.facts == {"version": text}


def test_non_string_version_is_refused() -> None:
    with pytest.raises(InvalidVersion, match="expected a string"):
        parse_version(210)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Constraint

CANDIDATES = [
    "0.0.3",
    "0.0.4",
    "0.1.0",
    "0.2.3",
    "0.2.9",
    "0.3.0",
    "1.0.0",
    "1.1.9",
    "1.2.0",
    "1.2.2",
    "1.2.3",
    "1.2.9",
    "1.3.0",
    "1.9.9",
    "2.0.0",
    "2.3.4",
    "2.3.5",
    "2.4.0",
    "3.0.0",
]


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        # exact
        ("1.2.3", ["1.2.3"]),
        ("=1.2.3", ["1.2.3"]),
        # comparators, full and partial (node: >1.2 is >=1.3.0, <=1.2 is <1.3.0)
        (">1.2.3", ["1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.3.4", "2.3.5", "2.4.0", "3.0.0"]),
        (">=2.3.4", ["2.3.4", "2.3.5", "2.4.0", "3.0.0"]),
        ("<0.2.3", ["0.0.3", "0.0.4", "0.1.0"]),
        ("<=0.2.3", ["0.0.3", "0.0.4", "0.1.0", "0.2.3"]),
        (">=2.3", ["2.3.4", "2.3.5", "2.4.0", "3.0.0"]),
        (">2.3", ["2.4.0", "3.0.0"]),
        (">2", ["3.0.0"]),
        ("<=0.2", ["0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9"]),
        ("<0.2", ["0.0.3", "0.0.4", "0.1.0"]),
        ("<1", ["0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9", "0.3.0"]),
        # caret
        ("^1.2.3", ["1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"]),
        ("^0.0.3", ["0.0.3"]),
        ("^1.2", ["1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("^0.2", ["0.2.3", "0.2.9"]),
        ("^0.0", ["0.0.3", "0.0.4"]),
        ("^0.x", ["0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9", "0.3.0"]),
        ("^2", ["2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        # tilde
        ("~1.2.3", ["1.2.3", "1.2.9"]),
        ("~1.2", ["1.2.0", "1.2.2", "1.2.3", "1.2.9"]),
        ("~1", ["1.0.0", "1.1.9", "1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("~0.2.3", ["0.2.3", "0.2.9"]),
        ("~>1.2", ["1.2.0", "1.2.2", "1.2.3", "1.2.9"]),
        # x-ranges and bare partials
        ("1.x", ["1.0.0", "1.1.9", "1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("1.*", ["1.0.0", "1.1.9", "1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("1", ["1.0.0", "1.1.9", "1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("1.2.x", ["1.2.0", "1.2.2", "1.2.3", "1.2.9"]),
        ("1.2.X", ["1.2.0", "1.2.2", "1.2.3", "1.2.9"]),
        ("1.2", ["1.2.0", "1.2.2", "1.2.3", "1.2.9"]),
        ("*", CANDIDATES),
        ("x", CANDIDATES),
        (">=*", CANDIDATES),
        # hyphen ranges (node: a partial upper bound covers everything it leaves open)
        ("1.2.3 - 2.3.4", ["1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.3.4"]),
        ("1.2 - 2.3.4", ["1.2.0", "1.2.2", "1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.3.4"]),
        ("1.2.3 - 2.3", ["1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.3.4", "2.3.5"]),
        ("1.2.3 - 2", ["1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        ("* - 0.1", ["0.0.3", "0.0.4", "0.1.0"]),
        # comparator sets: commas and whitespace both mean AND
        (">=2.0.0,<3.0.0", ["2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        (">=2.0.0 <3.0.0", ["2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        (">=2.0.0, <3.0.0", ["2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        (">= 2.0.0 < 3", ["2.0.0", "2.3.4", "2.3.5", "2.4.0"]),
        (">1.2.3 <1.3 ~1", ["1.2.9"]),
        (">=2.0.0 <1.0.0", []),
        # on equal bounds the strict comparator wins, whatever the order
        (">=1.2.3 >1.2.3 <1.3", ["1.2.9"]),
        (">=2 <=2.3.4 <2.3.4", ["2.0.0"]),
        # || is OR
        ("0.0.3 || ^2.3.5", ["0.0.3", "2.3.5", "2.4.0"]),
        ("~0.2 || >=1.2.0,<1.2.3 || 3.x", ["0.2.3", "0.2.9", "1.2.0", "1.2.2", "3.0.0"]),
    ],
)
def test_constraint_forms(constraint: str, expected: list[str]) -> None:
    assert _matching(constraint, CANDIDATES) == expected


# Each form and node-semver's documented desugaring of it; '<X-0' excludes X's pre-releases.
DESUGARED = [
    ("^1.2.3", ">=1.2.3 <2.0.0-0"),
    ("^0.2.3", ">=0.2.3 <0.3.0-0"),
    ("^0.0.3", ">=0.0.3 <0.0.4-0"),
    ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"),
    ("^0.0.3-beta", ">=0.0.3-beta <0.0.4-0"),
    ("^1.2", ">=1.2.0 <2.0.0-0"),
    ("^1.2.x", ">=1.2.0 <2.0.0-0"),
    ("^0.0.x", ">=0.0.0 <0.1.0-0"),
    ("^0.0", ">=0.0.0 <0.1.0-0"),
    ("^1.x", ">=1.0.0 <2.0.0-0"),
    ("^0.x", ">=0.0.0 <1.0.0-0"),
    ("~1.2.3", ">=1.2.3 <1.3.0-0"),
    ("~1.2", ">=1.2.0 <1.3.0-0"),
    ("~1", ">=1.0.0 <2.0.0-0"),
    ("~0.2.3", ">=0.2.3 <0.3.0-0"),
    ("~0", ">=0.0.0 <1.0.0-0"),
    ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
    ("1.x", ">=1.0.0 <2.0.0-0"),
    ("1.2.x", ">=1.2.0 <1.3.0-0"),
    ("1", ">=1.0.0 <2.0.0-0"),
    ("1.2", ">=1.2.0 <1.3.0-0"),
    ("*", ">=0.0.0"),
    (">1", ">=2.0.0"),
    (">1.2", ">=1.3.0"),
    (">=1.2", ">=1.2.0"),
    ("<=1.2", "<1.3.0-0"),
    ("<1.2", "<1.2.0-0"),
    ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4"),
    ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"),
    ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"),
    ("1.2.3 - 2", ">=1.2.3 <3.0.0-0"),
    ("1.2.3-rc.1 - 2.3.4-beta", ">=1.2.3-rc.1 <=2.3.4-beta"),
]


@pytest.mark.parametrize(("form", "desugared"), DESUGARED)
@given(version=versions)
def test_forms_match_like_their_node_desugaring(form: str, desugared: str, version: Version) -> None:
    assert parse_constraint(form).matches(version) == parse_constraint(desugared).matches(version)


@given(low=versions, high=versions, version=versions)
def test_commas_and_whitespace_both_mean_and(low: Version, high: Version, version: Version) -> None:
    results = {
        parse_constraint(text).matches(version)
        for text in (
            f">={low} <{high}",
            f">={low},<{high}",
            f">={low} , <{high}",
            f"<{high} >={low}",
        )
    }
    assert len(results) == 1


@given(low=versions, high=versions, version=versions.filter(lambda v: not v.is_prerelease))
def test_releases_match_by_precedence(low: Version, high: Version, version: Version) -> None:
    assert parse_constraint(f">={low},<{high}").matches(version) == (low <= version < high)
    assert parse_constraint(f"{low} || {high}").matches(version) == (version in (low, high))


# --------------------------------------------------------------------------- pre-releases

PRERELEASES = [
    "1.2.3-alpha",
    "1.2.3-beta.1",
    "1.2.3-beta.4",
    "1.2.4-beta.2",
    "1.9.0-beta",
    "2.0.0-rc.1",
    "2.0.0-rc.2",
    "2.1.0-rc.1",
    "3.0.0-0",
]


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (">=2.0.0-rc.1", ["2.0.0-rc.1", "2.0.0-rc.2"]),
        (">2.0.0-rc.1", ["2.0.0-rc.2"]),
        ("2.0.0-rc.1", ["2.0.0-rc.1"]),
        ("=2.0.0-rc.1", ["2.0.0-rc.1"]),
        ("<=2.0.0-rc.2", ["2.0.0-rc.1", "2.0.0-rc.2"]),
        ("<1.2.3-beta.4", ["1.2.3-alpha", "1.2.3-beta.1"]),
        ("^1.2.3-beta.2", ["1.2.3-beta.4"]),
        ("~1.2.3-beta.1", ["1.2.3-beta.1", "1.2.3-beta.4"]),
        ("1.2.3-beta.1 - 2.0.0-rc.1", ["1.2.3-beta.1", "1.2.3-beta.4", "2.0.0-rc.1"]),
        # the pre-release must be named in the same || alternative
        (">=1.2.3-beta.1 <3.0.0 || ^2.0", ["1.2.3-beta.1", "1.2.3-beta.4"]),
        ("^2.0 || 2.1.0-rc.1", ["2.1.0-rc.1"]),
        # a partial's lower bound is the release X.Y.0, so its pre-releases stay out
        ("2.0 >=2.0.0-rc.1", []),
        ("^2.0 >=2.0.0-rc.1", []),
        (">=2 >=2.0.0-rc.1", []),
        (">1 <=2.0.0-rc.2", []),
        # no pre-release named: none match, even inside the range
        ("^2.0", []),
        ("^2.0.0", []),
        ("*", []),
        (">=1.0.0", []),
        ("<3.0.0", []),
        ("<=2.0.0", []),
        ("1.x || 2.x", []),
        ("1.2.3 - 3.0.0", []),
    ],
)
def test_prerelease_matches_only_when_named(constraint: str, expected: list[str]) -> None:
    assert _matching(constraint, PRERELEASES) == expected


def test_prerelease_constraint_still_matches_releases() -> None:
    constraint = parse_constraint(">=2.0.0-rc.1")
    assert constraint.matches(parse_version("2.0.0"))
    assert constraint.matches(parse_version("2.1.0"))
    assert not constraint.matches(parse_version("2.1.0-rc.1"))


# --------------------------------------------------------------------------- Constraint API


@pytest.mark.parametrize("text", ["1.2.3", "=1.2.3", "= 1.2.3", " 1.2.3 "])
def test_exact_is_set_for_one_full_version(text: str) -> None:
    assert parse_constraint(text).exact == parse_version("1.2.3")


def test_exact_keeps_the_prerelease() -> None:
    exact = parse_constraint("2.0.0-rc.1").exact
    assert exact is not None
    assert exact.text == "2.0.0-rc.1"


@pytest.mark.parametrize(
    "text", ["1.2", "1.x", ">=1.2.3", "^1.2.3", "~1.2.3", "1.2.3 || 1.2.4", "1.2.3 - 1.2.3"]
)
def test_exact_is_none_for_ranges(text: str) -> None:
    assert parse_constraint(text).exact is None


def test_str_returns_the_original_text() -> None:
    assert str(parse_constraint(">=2.0.0,  <3.0.0")) == ">=2.0.0,  <3.0.0"
    assert repr(parse_constraint("^1.2")) == "Constraint('^1.2')"


def test_parse_constraint_is_cached() -> None:
    assert parse_constraint("^1.4") is parse_constraint("^1.4")
    assert isinstance(parse_constraint("^1.4"), Constraint)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty version constraint"),
        ("   ", "empty version constraint"),
        ("1.0.0 ||", "an alternative around '||' is empty"),
        ("|| 1.0.0", "an alternative around '||' is empty"),
        (">=1.0.0,,<2.0.0", "empty comparator between commas"),
        (">=1.0.0,", "empty comparator between commas"),
        ("v1.2", "leading 'v' is not part of the version; write '1.2' instead of 'v1.2'"),
        (">=v1.2.3 <2", "write '>=1.2.3' instead of '>=v1.2.3'"),
        ("^1.2.3+build", "build metadata is not allowed; write '^1.2.3' instead of '^1.2.3+build'"),
        ("1.2-rc.1", "write '1.2.0-rc.1' instead of '1.2-rc.1'"),
        ("~01.2", "leading zeros; write '~1.2' instead of '~01.2'"),
        ("1.x.3", "only wildcards may follow a wildcard; write '1.x'"),
        (">x.2", "write '>x'"),
        (">*", "matches no version; write '*'"),
        ("<x", "matches no version"),
        ("==1.2.3", "write '=1.2.3' or '1.2.3'"),
        ("~=1.2", "is not a comparator"),
        ("^", "operator '^' needs a version"),
        (">= ,1.0.0", "operator '>=' needs a version"),
        ("1.2.3.4", "'1.2.3.4' is not a version or range; use forms like"),
        ("latest", "'latest' is not a version or range"),
        ("1.x-rc.1", "'1.x-rc.1' is not a version or range"),
        ("!=1.2.3", "is not a version or range"),
        ("1.0.0 - 2.0.0 <1.5.0", "a hyphen range 'A - B' must be a whole alternative"),
        ("1.0.0 - 2.0.0,<1.5.0", "a hyphen range 'A - B' must be a whole alternative"),
        (">=1.0.0 - 2.0.0", "the ends of a hyphen range '>=1.0.0 - 2.0.0' take no operator"),
        ("v1.0.0 - 2.0.0", "write '1.0.0' instead of 'v1.0.0'"),
    ],
)
def test_invalid_constraints_say_what_to_write(text: str, expected: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        parse_constraint(text)
    assert expected in caught.value.detail
    assert caught.value.facts == {"constraint": text}
