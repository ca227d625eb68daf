"""The market's error tree.

Every error the package layer raises on purpose derives from :class:`MarketError`::

    MarketError
    ├── ManifestError        a package manifest is invalid (``problems``: one line per field)
    ├── KeyFileError         a key file cannot be written or read (exists, bad PEM, wrong type)
    ├── TrustStoreError      a trust store directory or one of its ``*.pub`` files is unusable
    ├── SignatureError       the manifest's signature is not acceptable
    │   ├── UnsignedPackage     the archive has no ``manifest.sig``
    │   ├── UnknownSigner       signed by a key the trust store does not hold
    │   └── BadSignature        the signature does not match the manifest (tampering)
    ├── PackageError         an archive is not a well-formed package
    │   ├── UnsafeArchive       a member is a link, a device, an absolute or ``..`` path,
    │   │                       a duplicate, unexpected, or over a size bound
    │   ├── DigestMismatch      the payload's sha256 differs from the manifest's
    │   └── WheelError          a python package's wheel is unsafe, not pure-Python, differs
    │                           from its RECORD, or cannot be installed or loaded
    ├── UnpackError          a verified package cannot be written to its destination
    ├── ResolveError         a requirement is malformed or no published version fits it
    ├── RegistryError        a registry is unreachable or serves something inconsistent
    │   ├── PublishError        a registry refuses a package
    │   ├── UntrustedIndex      the index is unsigned, or signed by no trusted registry key
    │   └── StaleIndex          the index is older than one seen before (replay, rollback)
    ├── LockfileError        gateway.lock is malformed, or what it pins is missing/altered
    └── InstallError         an install, update or removal cannot be done

``market/`` must not import ``core/`` (DESIGN.md, "Layout"), so this tree does not
derive from ``core.errors.GatewayError``; the CLI prints ``str(exc)`` of any
``MarketError`` as it is, so every message names the file and the problem.
"""

from __future__ import annotations


class MarketError(Exception):
    """Root of every error the market raises on purpose."""


class ManifestError(MarketError):
    """A manifest is invalid; ``problems`` holds one ``field: reason`` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}:\n{lines}")


class KeyFileError(MarketError):
    """A key file cannot be created (it exists) or read (missing, not an Ed25519 PEM key)."""


class TrustStoreError(MarketError):
    """A trust store directory, or one of its ``*.pub`` files, cannot be used."""


class SignatureError(MarketError):
    """The manifest's signature is missing, malformed, untrusted or wrong."""


class UnsignedPackage(SignatureError):
    """The package carries no ``manifest.sig``."""


class UnknownSigner(SignatureError):
    """The signature names a key id the trust store does not hold."""

    def __init__(self, message: str, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(message)


class BadSignature(SignatureError):
    """The signature does not verify against the manifest bytes with the named key."""


class PackageError(MarketError):
    """An archive is not a well-formed wasmgate package."""


class UnsafeArchive(PackageError):
    """A member could escape the destination, is not a plain file, or is too large."""


class DigestMismatch(PackageError):
    """The payload's sha256 differs from the one the signed manifest records."""


class WheelError(PackageError):
    """A python plugin's wheel is unsafe, not pure-Python or altered, or cannot be installed."""


class UnpackError(MarketError):
    """A verified package cannot be unpacked (destination exists, I/O error)."""


class ResolveError(MarketError):
    """A requirement is malformed, or no published version satisfies it."""


class RegistryError(MarketError):
    """A registry cannot be reached, or what it serves is malformed or inconsistent."""


class PublishError(RegistryError):
    """A registry refuses a package.

    ``reason`` is ``"conflict"`` (the version exists with other content),
    ``"untrusted"`` (not signed by a publisher the registry accepts), ``"invalid"``
    (not a valid package) or ``"unavailable"`` (the registry cannot take it).
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)


class UntrustedIndex(RegistryError):
    """The registry's index has no signature, a malformed one, one by a key the trust
    store does not hold as a registry key, or one that does not match its bytes."""


class StaleIndex(RegistryError):
    """The index's serial is lower than one this client has seen from the registry."""


class LockfileError(MarketError):
    """``gateway.lock`` is malformed, or what it pins is missing or altered on disk."""


class InstallError(MarketError):
    """An install, update or removal cannot be done; the previous state is untouched."""
