"""``[store]``: the Redis that gateway processes and replicas share.

The client lives in :mod:`plugin_sdk.store` so that plugins reach it without importing
the engine; the engine validates ``[store]`` here and hands it over each time a
configuration is built (:func:`configure`, from :class:`core.gateway.Snapshot`), so a
reload that changes ``[store]`` takes effect for the calls made after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plugin_sdk import store
from plugin_sdk.config import Secret

if TYPE_CHECKING:
    from core.config import GatewayConfig

_SCHEMES = ("redis", "rediss", "unix")


class StoreConfig(BaseModel):
    """``[store]``: where shared state lives (docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis: Secret | None = Field(
        None,
        description='Redis URL as redis-py reads it: "redis://host:6379/0", "rediss://" '
        'for TLS, "unix:///path/redis.sock"; with cluster = true, any node of the cluster.',
    )
    password: Secret | None = Field(
        None, description="Password (AUTH); or put it in the URL: redis://:PASSWORD@host."
    )
    sentinels: list[str] = Field(
        default_factory=list,
        description='Redis Sentinel addresses ("host:port"); then `service` names the master '
        "and `redis` is not used.",
    )
    service: str = Field("mymaster", description="The master's name at the sentinels.")
    cluster: bool = Field(False, description="`redis` is a node of a Redis Cluster.")
    tls_ca_file: str | None = Field(
        None, description="CA bundle that verifies a rediss:// server (default: the system's)."
    )
    connect_timeout: float = Field(
        0.5, gt=0, le=30, description="Seconds to open a connection to Redis."
    )
    timeout: float = Field(
        0.25,
        gt=0,
        le=30,
        description="Seconds any store call may take, connecting included; past it the "
        "caller's failure policy applies (rate-limit's on_store_error).",
    )
    retry_interval: float = Field(
        1.0,
        ge=0,
        le=300,
        description="After a failed call, seconds during which calls fail at once instead "
        "of waiting for an unreachable Redis.",
    )
    max_connections: int = Field(32, ge=1, le=10_000, description="Connections per process.")
    key_prefix: str = Field(
        "wasmgate:",
        max_length=64,
        description="Prefix of every key the gateway writes (to share one Redis).",
    )

    @field_validator("redis")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"unsupported URL scheme {scheme + '://' if scheme else '(none)'}: "
                "use redis://, rediss:// (TLS) or unix://"
            )
        return value

    @field_validator("sentinels")
    @classmethod
    def _sentinels(cls, value: list[str]) -> list[str]:
        for item in value:
            _host_port(item)
        return value

    @model_validator(mode="after")
    def _one_way(self) -> StoreConfig:
        if self.redis is None and not self.sentinels:
            raise ValueError("[store] needs `redis` (a URL) or `sentinels`")
        if self.redis is not None and self.sentinels:
            raise ValueError("set either `redis` or `sentinels`, not both")
        if self.cluster and self.sentinels:
            raise ValueError("cluster = true takes a `redis` URL, not `sentinels`")
        return self


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid sentinel address {text!r}: expected host:port")
    return host.strip("[]"), int(port)


def settings(cfg: StoreConfig | None) -> store.StoreSettings | None:
    if cfg is None:
        return None
    return store.StoreSettings(
        redis=cfg.redis,
        password=cfg.password,
        connect_timeout=cfg.connect_timeout,
        timeout=cfg.timeout,
        retry_interval=cfg.retry_interval,
        max_connections=cfg.max_connections,
        key_prefix=cfg.key_prefix,
        cluster=cfg.cluster,
        sentinels=tuple(_host_port(s) for s in cfg.sentinels),
        service=cfg.service,
        tls_ca_file=cfg.tls_ca_file,
    )


def configure(cfg: GatewayConfig) -> None:
    """Hand ``cfg``'s ``[store]`` to :mod:`plugin_sdk.store` (None: no store)."""
    store.configure(settings(cfg.store))
