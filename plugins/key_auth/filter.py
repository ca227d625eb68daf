"""The ``key-auth`` plugin: API keys, each belonging to a named consumer.

The key comes from a header (default ``X-Api-Key``) and/or a query parameter; keys are
configured inline and/or in a file of ``name:key`` lines (``#`` starts a comment)::

    [filters.api-keys]
    plugin = "key-auth"
    config.consumers = [{ name = "alice", key = "k-3f9a1c0e5b7d2a4f" }]
    config.key_file = "/etc/wasmgate/api-keys"
    config.query_param = "apikey"

A presented key is compared with every configured key in constant time, with no early
exit: the time taken tells nothing about which key (or how much of one) matched. The
gateway follows ``key_file``: writing or replacing it reloads the configuration. Keys
are compared as SHA-256 digests, so their lengths do not show either. A consumer may
have several keys (rotation); one key may not belong to two consumers.

On success ``ctx.state["consumer"]`` is the consumer's name and ``consumer_header``
(default ``X-Consumer``) carries it upstream; that header is removed from every request
first. ``hide_credentials`` (default on) removes the key before forwarding. A missing or
wrong key answers 401 with ``WWW-Authenticate: Key realm="..."``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from plugin_sdk import Context, Filter, LocalReply, PluginConfig, Secret
from plugins._auth import (
    AuthConfig,
    check_header_name,
    query_get,
    query_without,
    remove_headers,
    unauthorized,
    wire_value,
)

MIN_KEY_LENGTH = 16


class KeyConsumer(PluginConfig):
    name: str = Field(min_length=1, description="Consumer name forwarded upstream.")
    key: Secret = Field(min_length=MIN_KEY_LENGTH, description="The consumer's API key.")


class KeyAuthConfig(AuthConfig):
    header: str = Field("X-Api-Key", description="Header carrying the key ('' to not read one).")
    query_param: str = Field("", description="Query parameter carrying the key ('': none).")
    consumers: list[KeyConsumer] = Field(
        default_factory=list, description="Consumers and their keys."
    )
    key_file: str = Field(
        "", description="File of 'name:key' lines (blank lines and '#' comments ignored)."
    )
    hide_credentials: bool = Field(True, description="Remove the key before forwarding.")

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return check_header_name(value, allow_empty=True)

    @model_validator(mode="after")
    def _sources(self) -> KeyAuthConfig:
        if not (self.header or self.query_param):
            raise ValueError("no key source: set header or query_param")
        if not (self.consumers or self.key_file):
            raise ValueError("no keys: set consumers and/or key_file")
        return self


def read_key_file(path: str) -> list[tuple[str, str]]:
    """``(name, key)`` pairs of a key file; ValueError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"key_file {path!r}: {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, key = line.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not name:
            raise ValueError(f"key_file {path!r} line {number}: expected 'name:key'")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"key_file {path!r} line {number}: key of {name!r} is shorter than "
                f"{MIN_KEY_LENGTH} characters"
            )
        pairs.append((name, key))
    return pairs


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyAuth(Filter[KeyAuthConfig]):
    """Accept a request carrying a configured API key; answer 401 otherwise."""

    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig) -> None:
        super().__init__(config)
        pairs = [(c.name, c.key) for c in config.consumers]
        if config.key_file:
            pairs += read_key_file(config.key_file)
        self.keys: list[tuple[bytes, str, str]] = []  # (digest, name, name on the wire)
        owners: dict[bytes, str] = {}
        for name, key in pairs:
            on_wire = wire_value(name)
            if not on_wire:
                raise ValueError(f"consumer {name!r}: the name cannot be a header value")
            digest = _digest(key)
            if digest in owners:
                raise ValueError(f"consumers {owners[digest]!r} and {name!r} have the same key")
            owners[digest] = name
            self.keys.append((digest, name, on_wire))
        self.challenge = f'Key realm="{config.realm}"'

    def sensitive_params(self) -> list[str]:
        return [self.config.query_param] if self.config.query_param else []

    def sensitive_headers(self) -> list[str]:
        return [self.config.header] if self.config.header else []

    def watched_files(self) -> list[str]:
        return [self.config.key_file] if self.config.key_file else []

    def on_request(self, ctx: Context) -> LocalReply | None:
        cfg = self.config
        request = ctx.request
        remove_headers(request.headers, [cfg.consumer_header])
        presented = request.headers.get(cfg.header) if cfg.header else None
        if not presented and cfg.query_param:  # an empty header does not hide the query
            presented = query_get(request.query, cfg.query_param)
        if cfg.hide_credentials:
            if cfg.header:
                request.headers.remove(cfg.header)
            if cfg.query_param and request.query:
                query = query_without(request.query, cfg.query_param)
                if query != request.query:
                    request.set_target(request.path, query)
        if not presented:
            return unauthorized(self.challenge, "an API key is required")
        found = self._match(presented)
        if found is None:
            ctx.log.info("rejected an unknown API key")
            return unauthorized(self.challenge, "the API key is invalid")
        name, on_wire = found
        ctx.state["consumer"] = name
        request.headers.set(cfg.consumer_header, on_wire)
        return None

    def _match(self, presented: str) -> tuple[str, str] | None:
        """The owner of ``presented``: every key is compared, whatever matched before."""
        digest = _digest(presented)
        found: tuple[str, str] | None = None
        for known, name, on_wire in self.keys:
            if hmac.compare_digest(known, digest):
                found = (name, on_wire)
        return found
