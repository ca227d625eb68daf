"""The ``jwt-auth`` plugin: verify a JSON Web Token and name the consumer it belongs to.

Keys come from exactly one of: a JWKS file, a JWKS URL, or inline keys::

    [filters.jwt]
    plugin = "jwt-auth"
    config.jwks_url = "https://login.example.com/.well-known/jwks.json"
    config.issuer = "https://login.example.com/"
    config.audience = ["api", "api-v2"]
    config.leeway = 30
    config.claims_to_headers = { sub = "X-User-Id", email = "X-User-Email" }

    [filters.jwt-static]
    plugin = "jwt-auth"
    config.keys = [
        { kid = "k1", alg = "RS256", pem_file = "/etc/wasmgate/k1.pub.pem" },
        { kid = "k2", alg = "HS256", secret = "at least thirty-two bytes of secret!!" },
    ]

Security rules, none of them configurable:

* the algorithm is pinned per key (the JWK's ``alg``, or the config's): a token whose
  header names another algorithm is rejected before any signature check; ``none`` is
  never accepted; a PEM key is never an HMAC secret (see :mod:`plugins.jwt_auth.keys`);
* a ``kid`` the keys lack is rejected (for a JWKS URL after at most one refresh, see
  :mod:`plugins.jwt_auth.jwks`); a token without ``kid`` is accepted only when exactly
  one key is configured;
* the consumer header and the ``claims_to_headers`` headers are removed from every
  request before anything else, so a client cannot send them itself.

On success ``ctx.state["consumer"]`` is the ``consumer_claim`` (default ``sub``) and
``ctx.state["jwt_claims"]`` the verified claims. Failures answer 401 with an RFC 6750
``WWW-Authenticate: Bearer`` challenge. A JWKS URL that cannot be fetched while no key
set is cached raises, so the filter's ``fail`` strategy decides (``closed``: 500).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
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
from plugins.jwt_auth.jwks import RemoteJwks
from plugins.jwt_auth.keys import KeySet, VerifyKey, parse_jwks, pem_key, secret_key

Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K", "EdDSA", "HS256", "HS384", "HS512",
]  # fmt: skip
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class JwtKeyConfig(PluginConfig):
    kid: str = Field(min_length=1, description="Key id; tokens select the key by their 'kid'.")
    alg: Algorithm = Field(description="The one algorithm this key verifies.")
    pem: Secret = Field("", description="Public key or certificate, PEM (asymmetric algorithms).")
    pem_file: str = Field("", description="File holding the PEM (asymmetric algorithms).")
    secret: Secret = Field("", description="HMAC secret (HS256/384/512), at least the hash size.")

    @model_validator(mode="after")
    def _one_source(self) -> JwtKeyConfig:
        given = [n for n in ("pem", "pem_file", "secret") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(f"key {self.kid!r}: give exactly one of pem, pem_file, secret")
        return self


class JwtAuthConfig(AuthConfig):
    jwks_file: str = Field("", description="Path of a JWKS (JSON) file with the keys.")
    jwks_url: str = Field(
        "", description="URL of a JWKS; https, or http to a loopback address only."
    )
    keys: list[JwtKeyConfig] = Field(
        default_factory=list, description="Inline keys, each with kid, alg and its material."
    )
    refresh_interval: float = Field(
        60.0, gt=0, description="Least seconds between JWKS URL refreshes (on an unknown kid)."
    )
    jwks_max_age: float = Field(
        3600.0, gt=0, description="Seconds after which a fetched JWKS is fetched again."
    )
    jwks_timeout: float = Field(5.0, gt=0, description="Timeout of one JWKS fetch, seconds.")
    issuer: str | list[str] = Field(
        default_factory=list, description="Accepted 'iss' value(s); empty: not checked."
    )
    audience: str | list[str] = Field(
        default_factory=list,
        description="Accepted 'aud' value(s); empty: not checked. One match is enough.",
    )
    leeway: float = Field(0.0, ge=0, description="Clock skew allowed for exp/nbf/iat, seconds.")
    required_claims: list[str] = Field(
        default_factory=lambda: ["exp"],
        description="Claims a token must carry (the consumer claim always is).",
    )
    header: str = Field(
        "Authorization",
        description="Header carrying the token ('Bearer <token>' for Authorization; "
        "the bare token, or 'Bearer <token>', for another header); '' to not read one.",
    )
    query_param: str = Field("", description="Query parameter carrying the token ('': none).")
    cookie: str = Field("", description="Cookie carrying the token ('': none).")
    strip_token: bool = Field(False, description="Remove the token before forwarding.")
    claims_to_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Claim name -> request header to set from it (client values removed).",
    )
    consumer_claim: str = Field("sub", min_length=1, description="Claim naming the consumer.")

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return check_header_name(value, allow_empty=True)

    @field_validator("claims_to_headers")
    @classmethod
    def _claim_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            check_header_name(name)
        return value

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname in _LOOPBACK:
            return value
        raise ValueError("must be an https:// URL (http:// only to a loopback address)")

    @model_validator(mode="after")
    def _sources(self) -> JwtAuthConfig:
        given = [n for n in ("jwks_file", "jwks_url", "keys") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of jwks_file, jwks_url, keys")
        if not (self.header or self.query_param or self.cookie):
            raise ValueError("no token source: set header, query_param or cookie")
        return self


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_keys(config: JwtAuthConfig) -> KeySet | None:
    """The static key set (None for a JWKS URL); ValueError naming the bad key."""
    if config.jwks_file:
        try:
            data = json.loads(Path(config.jwks_file).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"jwks_file {config.jwks_file!r}: {exc}") from None
        try:
            keys, _ = parse_jwks(data, strict=True)
            if not keys:
                raise ValueError("no signing key")
            return KeySet(keys)
        except ValueError as exc:
            raise ValueError(f"jwks_file {config.jwks_file!r}: {exc}") from None
    if not config.keys:
        return None
    loaded: list[VerifyKey] = []
    for i, k in enumerate(config.keys):
        where = f"keys[{i}] (kid {k.kid!r})"
        try:
            if k.secret:
                key = secret_key(k.alg, k.secret)
            else:
                pem = k.pem.encode() if k.pem else Path(k.pem_file).read_bytes()
                key = pem_key(k.alg, pem)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        loaded.append(VerifyKey(k.kid, k.alg, key.key))
    try:
        return KeySet(loaded)
    except ValueError as exc:
        raise ValueError(f"keys: {exc}") from None


# PyJWT's errors -> what the client is told (fixed texts: nothing from the token or key).
_DESCRIPTIONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token has the wrong issuer"),
    (jwt.InvalidAudienceError, "the token has the wrong audience"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "the token signature is invalid"),
    (jwt.DecodeError, "the token is malformed"),
]


class _Rejected(Exception):
    """A token we refuse; the message is safe to show the client."""


class JwtAuth(Filter[JwtAuthConfig]):
    """Verify a JWT, forward its consumer and chosen claims, or answer 401."""

    Config = JwtAuthConfig

    def __init__(self, config: JwtAuthConfig) -> None:
        super().__init__(config)
        self.keys = load_keys(config)
        self.remote = (
            RemoteJwks(
                config.jwks_url,
                timeout=config.jwks_timeout,
                refresh_interval=config.refresh_interval,
                max_age=config.jwks_max_age,
            )
            if config.jwks_url
            else None
        )
        self.issuer = _as_list(config.issuer)
        self.audience = _as_list(config.audience)
        self.required = list(dict.fromkeys([*config.required_claims, config.consumer_claim]))
        self.managed_headers = [config.consumer_header, *config.claims_to_headers.values()]
        self.challenge = f'Bearer realm="{config.realm}"'

    def sensitive_params(self) -> list[str]:
        return [self.config.query_param] if self.config.query_param else []

    def sensitive_headers(self) -> list[str]:
        cfg = self.config
        return [n for n, used in ((cfg.header, cfg.header), ("Cookie", cfg.cookie)) if used]

    def watched_files(self) -> list[str]:
        cfg = self.config
        pem_files = [k.pem_file for k in cfg.keys if k.pem_file]
        return [cfg.jwks_file, *pem_files] if cfg.jwks_file else pem_files

    async def on_request(self, ctx: Context) -> LocalReply | None:
        request = ctx.request
        remove_headers(request.headers, self.managed_headers)
        found = self._token(ctx)
        if found is None:
            return unauthorized(self.challenge, "a bearer token is required")
        token, source = found
        try:
            claims = await self._verify(token)
            consumer = claims.get(self.config.consumer_claim)
            if isinstance(consumer, bool) or not isinstance(consumer, str | int):
                raise _Rejected("the token's consumer claim is not a string")
            consumer_value = wire_value(str(consumer))
            if not consumer_value:
                raise _Rejected("the token's consumer claim is not usable")
        except _Rejected as exc:
            ctx.log.info("rejected a token: %s", exc)
            return unauthorized(
                f'{self.challenge}, error="invalid_token", error_description="{exc}"',
                str(exc),
            )
        if self.config.strip_token:
            self._strip(ctx, source)
        ctx.state["consumer"] = str(consumer)
        ctx.state["jwt_claims"] = claims
        request.headers.set(self.config.consumer_header, consumer_value)
        for claim, header in self.config.claims_to_headers.items():
            if claim in claims:
                value = _claim_text(claims[claim])
                if value is not None:
                    request.headers.set(header, value)
                else:
                    ctx.log.warning("claim %r cannot be a header value; not forwarded", claim)
        return None

    def _token(self, ctx: Context) -> tuple[str, str] | None:
        """The token and where it was found ("header", "query", "cookie"), or None."""
        cfg = self.config
        if cfg.header:
            value = ctx.request.headers.get(cfg.header)
            if value is not None:
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    return rest.strip(), "header"
                if cfg.header.lower() != "authorization" and value.strip():
                    return value.strip(), "header"
        if cfg.query_param:
            value = query_get(ctx.request.query, cfg.query_param)
            if value:
                return value, "query"
        if cfg.cookie:
            value = ctx.request.cookie(cfg.cookie)
            if value:
                return value, "cookie"
        return None

    def _strip(self, ctx: Context, source: str) -> None:
        request = ctx.request
        if source == "header":
            request.headers.remove(self.config.header)
        elif source == "query":
            request.set_target(request.path, query_without(request.query, self.config.query_param))
        else:
            kept = []
            for header in request.headers.get_all("cookie"):
                parts = [p.strip() for p in header.split(";")]
                rest = [p for p in parts if p and p.partition("=")[0] != self.config.cookie]
                if rest:
                    kept.append("; ".join(rest))
            request.headers.remove("cookie")
            for header in kept:
                request.headers.add("cookie", header)

    async def _key(self, kid: str | None) -> VerifyKey | None:
        if self.remote is not None:
            return await self.remote.lookup(kid)
        assert self.keys is not None
        return self.keys.get(kid)

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _Rejected("the token is malformed") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _Rejected("the token is malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise _Rejected("unsigned tokens are not accepted")
        key = await self._key(kid)
        if key is None:
            raise _Rejected("the token's key is unknown" if kid else "the token has no kid")
        if alg != key.alg:
            raise _Rejected("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.alg],
                issuer=self.issuer or None,
                audience=self.audience or None,
                leeway=self.config.leeway,
                options={"require": self.required, "verify_aud": bool(self.audience)},
            )
        except jwt.PyJWTError as exc:
            for kind, text in _DESCRIPTIONS:
                if isinstance(exc, kind):
                    raise _Rejected(text) from None
            raise _Rejected("the token is invalid") from None
        return claims


def _claim_text(value: object) -> str | None:
    """A claim as a header value: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return wire_value(value)
    return wire_value(json.dumps(value, separators=(",", ":")))
