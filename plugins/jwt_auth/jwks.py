"""A JWKS published at a URL: fetched with aiohttp, cached, refreshed with a rate limit.

The only module of ``jwt-auth`` that does I/O; every aiohttp, JSON and key error is
translated into :class:`JwksError` here.

When it fetches (each fetch is one GET with a timeout and a size cap):

* at first use (the first request that needs a key);
* when the cached set is older than ``max_age`` (keys removed by the issuer stop
  being trusted); if that fetch fails, the old set stays in use;
* when a token names a ``kid`` the cached set lacks (key rotation) — at most once per
  ``refresh_interval`` seconds, so tokens with made-up kids cannot make the gateway
  hammer the issuer.

Concurrent requests share one fetch (a lock; whoever waited sees the fresh set).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp

from plugins.jwt_auth.keys import KeySet, VerifyKey, parse_jwks

log = logging.getLogger("wasmgate.plugin.jwt-auth")

MAX_JWKS_BYTES = 1 << 20
# With no key set at all (the first fetch failed), retry at most this often.
EMPTY_RETRY_SECONDS = 1.0


class JwksError(Exception):
    """The JWKS could not be fetched or used."""


class RemoteJwks:
    """The key set at ``url``, as described in the module docstring."""

    def __init__(
        self, url: str, *, timeout: float, refresh_interval: float, max_age: float
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def lookup(self, kid: str | None) -> VerifyKey | None:
        """The key for ``kid`` (None: unknown); raises JwksError if there is no key set."""
        if self._keys is None:
            await self._refresh(min(EMPTY_RETRY_SECONDS, self.refresh_interval))
        elif time.monotonic() - self._fetched_at >= self.max_age:
            await self._refresh(self.refresh_interval)
        if self._keys is None:
            raise JwksError(f"no key set from {self.url}")
        key = self._keys.get(kid)
        if key is None and kid is not None:
            await self._refresh(self.refresh_interval)
            key = self._keys.get(kid)
        return key

    async def _refresh(self, min_gap: float) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self._attempted_at < min_gap:
                return  # tried a moment ago (perhaps while we waited for the lock)
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except JwksError as exc:
                log.warning("JWKS %s: %s", self.url, exc)
                return
            self._keys = keys
            self._fetched_at = now

    async def _fetch(self) -> KeySet:
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    self.url, headers={"accept": "application/json"}, allow_redirects=False
                ) as resp,
            ):
                if resp.status != 200:
                    raise JwksError(f"HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise JwksError(f"fetch failed: {exc!r}") from None
        try:
            keys, problems = parse_jwks(json.loads(body), strict=False)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise JwksError(str(exc)) from None
        if len(keys) > 1 and any(k.kid is None for k in keys):
            problems.append("skipped keys without kid (there are several keys)")
            keys = [k for k in keys if k.kid is not None]
        for problem in problems:
            log.warning("JWKS %s: skipped %s", self.url, problem)
        if not keys:
            raise JwksError("no usable signing key")
        try:
            return KeySet(keys)
        except ValueError as exc:
            raise JwksError(str(exc)) from None
