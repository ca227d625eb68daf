"""Version constraints and picking a version (market/version.py), table-driven."""

from __future__ import annotations

import pytest

from market.errors import ResolveError
from market.version import caret_of, parse_constraint, parse_requirement, pick

PUBLISHED = ["0.9.0", "1.0.0", "1.1.0", "1.1.5", "1.2.0rc1", "2.0.0", "2.1.0b2"]


def chosen(text: str, pre: bool = False, running: str = "9.0.0") -> str:
    req = parse_requirement(text)
    return pick(req, [(v, None) for v in PUBLISHED], running, pre)


@pytest.mark.parametrize(
    ("written", "spec"),
    [
        ("", ""),
        ("*", ""),
        ("1.4.2", "==1.4.2"),
        ("=1.4.2", "==1.4.2"),
        ("1.4", "==1.4.*"),
        ("1", "==1.*"),
        ("^1.4.2", "<2.0.0,>=1.4.2"),
        ("^1.4", "<2.0.0,>=1.4.0"),
        ("^0.4.2", "<0.5.0,>=0.4.2"),
        ("^0.0.3", "<0.0.4,>=0.0.3"),
        ("~1.4.2", "<1.5.0,>=1.4.2"),
        ("~1", "<2.0.0,>=1.0.0"),
        (">=1.2,<2", "<2,>=1.2"),
        ("~=1.4", "~=1.4"),
        ("1.2.0rc1", "==1.2.0rc1"),
    ],
    ids=lambda v: v or "empty",
)
def test_a_constraint_means_one_specifier_set(written: str, spec: str) -> None:
    assert str(parse_constraint(written)) == spec


@pytest.mark.parametrize(
    ("requirement", "pre", "version"),
    [
        ("p", False, "2.0.0"),  # highest release; 2.1.0b2 is a pre-release
        ("p", True, "2.1.0b2"),
        ("p@^1", False, "1.1.5"),  # 1.2.0rc1 excluded by default
        ("p@^1", True, "1.2.0rc1"),
        ("p@~1.1.0", False, "1.1.5"),
        ("p@1.0", False, "1.0.0"),
        ("p@1.1.0", False, "1.1.0"),
        ("p@>=1.2.0rc1,<2", False, "1.2.0rc1"),  # naming a pre-release allows it
        ("p@<1", False, "0.9.0"),
        ("p@^0.9", False, "0.9.0"),
    ],
    ids=lambda v: str(v),
)
def test_the_highest_matching_version_wins(requirement: str, pre: bool, version: str) -> None:
    assert chosen(requirement, pre) == version


def test_nothing_matching_says_what_is_published_and_hints_at_pre() -> None:
    with pytest.raises(ResolveError, match=r"no published version matches; published: 0.9.0"):
        chosen("p@>=3")
    with pytest.raises(ResolveError, match=r"pass --pre"):
        chosen("p@>1.1.5,<2")


def test_versions_needing_a_newer_wasmgate_are_skipped_and_said_so() -> None:
    req = parse_requirement("p")
    available = [("1.0.0", None), ("2.0.0", "5.0.0")]
    assert pick(req, available, running="1.0.0") == "1.0.0"
    with pytest.raises(ResolveError, match=r"2.0.0 \(needs wasmgate >= 5.0.0\)"):
        pick(parse_requirement("p@^2"), available, running="1.0.0")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Bad_Name", "not a plugin name"),
        ("p@>>1", "not a version constraint"),
        ("p@^x", "not a version constraint"),
        ("../p", "not a plugin name"),
    ],
)
def test_a_malformed_requirement_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ResolveError, match=problem):
        parse_requirement(text)


@pytest.mark.parametrize(
    ("version", "recorded", "allows", "refuses"),
    [
        ("1.4.2", "^1.4.2", "1.9.0", "2.0.0"),
        ("0.1.0", "^0.1.0", "0.1.7", "0.2.0"),
        ("0.0.3", "^0.0.3", "0.0.3", "0.0.4"),
        ("1.5.0rc1", ">=1.5.0rc1,<2.0.0", "1.5.0", "2.0.0"),
        ("2.0.0.post1", ">=2.0.0.post1,<3.0.0", "2.1.0", "2.0.0"),
    ],
)
def test_an_install_without_a_constraint_records_the_caret_of_its_pick(
    version: str, recorded: str, allows: str, refuses: str
) -> None:
    assert caret_of(version) == recorded
    req = parse_requirement(f"p@{recorded}")
    assert req.allows(version, pre=False) and req.allows(allows, pre=False)
    assert not req.allows(refuses, pre=True)
