"""Version constraints and resolution: which published version an install picks.

A requirement is ``NAME`` or ``NAME@CONSTRAINT``. A constraint is written either as a
PEP 440 specifier set (what :mod:`packaging` understands) or in the semver shorthands
people bring from npm and Cargo; both become one :class:`~packaging.specifiers.SpecifierSet`:

=============  ==========================  ============================================
written        means                       as a specifier set
=============  ==========================  ============================================
(nothing)      any release                 (empty)
``*``          any release                 (empty)
``1.4.2``      exactly that version        ``==1.4.2``
``=1.4.2``     exactly that version        ``==1.4.2``
``1.4``        any 1.4.x                   ``==1.4.*``
``^1.4.2``     compatible (same major)     ``>=1.4.2,<2.0.0``
``^0.4.2``     same minor while 0.x        ``>=0.4.2,<0.5.0``
``~1.4.2``     same minor                  ``>=1.4.2,<1.5.0``
``>=1.2,<2``   PEP 440, as written         ``>=1.2,<2``
``~=1.4``      PEP 440 compatible release  ``~=1.4``
=============  ==========================  ============================================

An install without a constraint records the caret of what it picked (``^1.4.2``; for a
pre-release or post-release, ``>=1.5.0rc1,<2.0.0``), as npm and Cargo do, so that
``update`` later takes fixes and features but never a new major version.

Pre-releases (``1.5.0rc1``) are left out unless asked for (``--pre``) or the
constraint itself names one (``>=1.5.0rc1``), as pip does. The highest version that
matches wins; versions needing a newer wasmgate (``min_wasmgate``) are skipped and said so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from market.errors import ResolveError
from market.manifest import NAME_RE

_SHORTHAND = re.compile(r"^([\^~])\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_BARE = re.compile(r"^\d+(\.\d+){0,2}([a-z0-9.+-]*)$")


@dataclass(frozen=True)
class Requirement:
    """``NAME[@CONSTRAINT]`` as the user wrote it, with the constraint parsed."""

    name: str
    constraint: str
    specifier: SpecifierSet

    def __str__(self) -> str:
        return f"{self.name}@{self.constraint}" if self.constraint else self.name

    def allows(self, version: str, pre: bool = False) -> bool:
        return bool(list(self.specifier.filter([version], prereleases=self.pre(pre))))

    def pre(self, asked: bool) -> bool:
        """Whether pre-releases may match: asked for, or named by the constraint."""
        return asked or self.specifier.prereleases is True


def parse_constraint(text: str) -> SpecifierSet:
    """The :class:`SpecifierSet` a constraint means (see the module docstring)."""
    text = text.strip()
    if text in ("", "*"):
        return SpecifierSet()
    if text.startswith("=") and not text.startswith("=="):
        text = "==" + text[1:].strip()  # npm's and Cargo's "exactly"
    m = _SHORTHAND.match(text)
    if m:
        op, major_s, minor_s, patch_s = m.groups()
        major, minor, patch = int(major_s), int(minor_s or 0), int(patch_s or 0)
        low = f"{major}.{minor}.{patch}"
        if op == "~":
            high = f"{major}.{minor + 1}.0" if minor_s is not None else f"{major + 1}.0.0"
        elif major > 0 or minor_s is None:
            high = f"{major + 1}.0.0"
        elif minor > 0 or patch_s is None:
            high = f"0.{minor + 1}.0"
        else:
            high = f"0.0.{patch + 1}"
        return SpecifierSet(f">={low},<{high}")
    if _BARE.match(text):
        try:
            version = Version(text)
        except InvalidVersion:
            raise ResolveError(f"{text!r} is not a version or a version constraint") from None
        if len(version.release) < 3 and not text[-1].isalpha() and version.pre is None:
            return SpecifierSet(f"=={text}.*")
        return SpecifierSet(f"=={text}")
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ResolveError(
            f"{text!r} is not a version constraint (examples: 1.2.0, ^1.2, ~1.2.3, >=1.2,<2)"
        ) from None


def caret_of(version: str) -> str:
    """The constraint an install without one records for ``version`` (``^1.4.2``)."""
    v = Version(version)
    major, minor, patch = (*v.release, 0, 0)[:3]
    plain = f"{major}.{minor}.{patch}"
    if str(v) == plain:
        return f"^{plain}"
    upper = parse_constraint(f"^{plain}")
    high = next(s.version for s in upper if s.operator == "<")
    return f">={v},<{high}"


def parse_requirement(text: str) -> Requirement:
    """``NAME`` or ``NAME@CONSTRAINT``; raises :class:`ResolveError`."""
    name, _, constraint = text.strip().partition("@")
    name = name.strip()
    if not re.match(NAME_RE, name):
        raise ResolveError(f"{name!r} is not a plugin name (kebab-case, e.g. 'key-auth')")
    constraint = constraint.strip()
    return Requirement(name, constraint, parse_constraint(constraint))


def pick(
    req: Requirement,
    available: Iterable[tuple[str, str | None]],
    running: str,
    pre: bool = False,
) -> str:
    """The highest version of ``available`` that ``req`` allows and ``running`` can run.

    ``available`` holds (version, min_wasmgate) pairs. Raises :class:`ResolveError`
    saying what was published and why nothing fit.
    """
    versions = {v: m for v, m in available}
    if not versions:
        raise ResolveError(f"{req.name}: the registry has no versions of it")
    matching = list(req.specifier.filter(versions, prereleases=req.pre(pre)))
    ordered = sorted(matching, key=Version, reverse=True)
    too_new: list[str] = []
    for version in ordered:
        need = versions[version]
        if need is not None and Version(need) > Version(running):
            too_new.append(f"{version} (needs wasmgate >= {need})")
            continue
        return version
    published = ", ".join(sorted(versions, key=Version))
    if too_new:
        raise ResolveError(
            f"{req}: every matching version needs a newer wasmgate than {running}: "
            + ", ".join(too_new)
        )
    hint = ""
    if not req.pre(pre) and any(req.specifier.filter(versions, prereleases=True)):
        hint = " (pre-releases match; pass --pre to allow them)"
    raise ResolveError(f"{req}: no published version matches{hint}; published: {published}")
