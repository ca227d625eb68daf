"""The ``basic-auth`` plugin: HTTP Basic authentication against bcrypt password hashes.

Users come from an htpasswd file (``htpasswd -B`` writes bcrypt) and/or inline::

    [filters.staff]
    plugin = "basic-auth"
    config.htpasswd_file = "/etc/wasmgate/staff.htpasswd"
    config.users = { ci = "$2b$12$..." }
    config.realm = "staff"

Only bcrypt hashes (``$2y$``, ``$2b$``, ``$2a$``) are accepted; any other format (MD5
``$apr1$``, ``{SHA}``, crypt, plain text) is refused when the configuration loads, with
the user's name. As with every bcrypt implementation, only the first 72 bytes of a
password count.

bcrypt is slow on purpose (tens of milliseconds per check), so:

* each check runs in the ``"crypto"`` worker pool (:func:`plugin_sdk.offload`),
  never on the event loop, and apart from other blocking work (a hung registry cannot
  delay it). A pool that is full or a check past the pool's timeout raises, and the
  filter's fail strategy decides (``closed``, the default: the request is refused);
* successful checks are remembered in a bounded LRU (``cache_size`` entries, 0 turns it
  off) keyed by a salted SHA-256 of user and password, so a client that sends the same
  credentials on every request pays bcrypt once. Failures are never cached. The cache
  lives as long as the configuration snapshot, so a changed htpasswd file (which the
  gateway follows: ``watched_files``) takes effect with the reload it triggers;
* an unknown user costs a bcrypt check too (against a dummy hash of the highest cost
  configured), so response times do not tell which user names exist.

On success ``ctx.state["consumer"]`` is the user name and ``consumer_header`` (default
``X-Consumer``) carries it upstream; that header is removed from every request first.
``hide_credentials`` (default on) removes the Authorization header before forwarding.
Failures answer 401 with ``WWW-Authenticate: Basic realm="...", charset="UTF-8"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections import OrderedDict
from pathlib import Path

import bcrypt
from pydantic import Field, field_validator, model_validator

from plugin_sdk import Context, Filter, LocalReply, Secret
from plugin_sdk.pools import offload
from plugins._auth import AuthConfig, remove_headers, unauthorized, wire_value

_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_OTHER_FORMATS = [
    ("$apr1$", "Apache MD5 ($apr1$)"),
    ("{SHA}", "SHA-1 ({SHA})"),
    ("$1$", "MD5-crypt ($1$)"),
    ("$5$", "SHA-256-crypt ($5$)"),
    ("$6$", "SHA-512-crypt ($6$)"),
    ("$2", "a malformed bcrypt hash"),
]
BCRYPT_MAX_PASSWORD = 72


def check_hash(user: str, hashed: str) -> str:
    """``hashed`` if it is a bcrypt hash; else a ValueError naming ``user`` and the format."""
    if _BCRYPT.fullmatch(hashed):
        return hashed
    kind = next(
        (name for prefix, name in _OTHER_FORMATS if hashed.startswith(prefix)),
        "plain text or DES crypt",
    )
    raise ValueError(
        f"user {user!r}: unsupported password hash ({kind}); only bcrypt "
        "($2y$, $2b$, $2a$) is accepted, e.g. from 'htpasswd -B'"
    )


class BasicAuthConfig(AuthConfig):
    htpasswd_file: str = Field("", description="htpasswd file of 'user:bcrypt-hash' lines.")
    users: dict[str, Secret] = Field(
        default_factory=dict, description="Inline users: name -> bcrypt hash."
    )
    hide_credentials: bool = Field(
        True, description="Remove the Authorization header before forwarding."
    )
    cache_size: int = Field(
        1024, ge=0, description="Successful checks remembered (LRU) to skip bcrypt; 0: off."
    )

    @field_validator("users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            _check_user(user)
            check_hash(user, hashed)
        return value

    @model_validator(mode="after")
    def _some_users(self) -> BasicAuthConfig:
        if not (self.users or self.htpasswd_file):
            raise ValueError("no users: set htpasswd_file and/or users")
        return self


def _check_user(user: str) -> None:
    if not user or ":" in user or wire_value(user) is None:
        raise ValueError(f"invalid user name {user!r}")


def read_htpasswd(path: str) -> dict[str, str]:
    """The users of an htpasswd file; ValueError naming the file, line and user."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"htpasswd_file {path!r}: {exc}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        try:
            if not sep:
                raise ValueError("expected 'user:hash'")
            _check_user(user)
            if user in users:
                raise ValueError(f"user {user!r} appears twice")
            users[user] = check_hash(user, hashed.strip())
        except ValueError as exc:
            raise ValueError(f"htpasswd_file {path!r} line {number}: {exc}") from None
    return users


def parse_basic(value: str | None) -> tuple[str, bytes] | None:
    """``(user, password)`` from an ``Authorization: Basic`` value, or None."""
    if value is None:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class BasicAuth(Filter[BasicAuthConfig]):
    """Check Basic credentials against bcrypt hashes; answer 401 otherwise."""

    Config = BasicAuthConfig

    def __init__(self, config: BasicAuthConfig) -> None:
        super().__init__(config)
        users = read_htpasswd(config.htpasswd_file) if config.htpasswd_file else {}
        for user, hashed in config.users.items():
            if user in users:
                raise ValueError(f"user {user!r} is both in htpasswd_file and in users")
            users[user] = hashed
        self.users = {u: h.encode("ascii") for u, h in users.items()}
        cost = max(int(h[4:6]) for h in users.values())
        self._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))
        self._salt = os.urandom(16)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self.bcrypt_checks = 0  # how many bcrypt checks ran (for metrics and tests)
        self.challenge = f'Basic realm="{config.realm}", charset="UTF-8"'

    def sensitive_headers(self) -> list[str]:
        return ["Authorization"]

    def watched_files(self) -> list[str]:
        return [self.config.htpasswd_file] if self.config.htpasswd_file else []

    async def on_request(self, ctx: Context) -> LocalReply | None:
        cfg = self.config
        headers = ctx.request.headers
        remove_headers(headers, [cfg.consumer_header])
        credentials = parse_basic(headers.get("authorization"))
        if cfg.hide_credentials:
            headers.remove("authorization")
        if credentials is None:
            return unauthorized(self.challenge, "credentials are required")
        user, password = credentials
        if not await self._check(user, password):
            ctx.log.info("rejected credentials for a user")
            return unauthorized(self.challenge, "invalid user name or password")
        ctx.state["consumer"] = user
        headers.set(cfg.consumer_header, wire_value(user) or "")
        return None

    async def _check(self, user: str, password: bytes) -> bool:
        name = user.encode("utf-8")
        key = hashlib.sha256(self._salt + len(name).to_bytes(4, "big") + name + password).digest()
        stored = self.users.get(user)
        if stored is not None and key in self._cache:
            self._cache.move_to_end(key)
            return True
        self.bcrypt_checks += 1
        ok = await offload(
            "crypto", bcrypt.checkpw, password[:BCRYPT_MAX_PASSWORD], stored or self._dummy
        )
        if not (ok and stored is not None):
            return False
        if self.config.cache_size:
            self._cache[key] = None
            if len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return True
