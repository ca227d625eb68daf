"""Talking to a registry, a folder or an HTTP server, with a local cache.

:func:`open_registry` takes what the user configured (``http://...``/``https://...``
or a folder path) and returns a :class:`Registry` with four operations: the index,
a file by its path in the registry (a README, a publisher key), an archive checked
against the index's size and sha256, and publishing an archive.

The cache lives in ``$WASMGATE_HOME/cache`` (``~/.wasmgate/cache``):

- ``indexes/<hash of the URL>/index.json`` (+ ``etag``): a fresh fetch sends
  ``If-None-Match`` and takes a 304 as "unchanged". When the registry cannot be
  reached, ``search`` and ``info`` fall back to the cached index and say so.
- ``archives/<sha256>.wgpkg``: content-addressed downloads, re-hashed on every use,
  so reinstalling what a lockfile pins needs no network when the archive is cached.

Downloads stream to a temporary file while hashing and stop at the size the index
gives: a registry that serves other bytes than its index describes is refused.
Only this module opens network connections (stdlib ``urllib``; the CLI is
synchronous); its errors become :class:`~market.errors.RegistryError`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from market.errors import PublishError, RegistryError
from market.files import write_atomically
from market.index import INDEX, SAFE_PATH, Index, IndexEntry, RegistryDir, parse_index

Progress = Callable[[int, int], None]
USER_AGENT = "wasmgate-market/1"
CHUNK = 64 * 1024
MAX_INDEX = 32 * 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """An index and where it came from."""

    index: Index
    stale: str | None = None  # why the cached copy was used, when it was


class Registry(Protocol):
    location: str

    def fetch_index(self, allow_stale: bool = False) -> Fetched: ...

    def fetch_file(self, path: str, limit: int = 4 * 1024 * 1024) -> bytes: ...

    def fetch_archive(self, entry: IndexEntry, progress: Progress | None = None) -> Path: ...

    def publish(self, archive: Path, token: str | None = None) -> tuple[IndexEntry, bool]: ...


def cache_dir(home: Path) -> Path:
    return home / "cache"


def open_registry(location: str, home: Path, timeout: float = 15.0) -> Registry:
    """A :class:`Registry` for a URL or a folder."""
    if location.startswith(("http://", "https://")):
        return HttpRegistry(location, home, timeout)
    if "://" in location:
        raise RegistryError(f"registry {location!r}: only http(s) URLs and folders are supported")
    return FolderRegistry(Path(location), home)


def _checked_path(path: str) -> str:
    if not SAFE_PATH.match(path):
        raise RegistryError(f"refusing registry path {path!r}")
    return path


class ArchiveCache:
    """Downloaded archives by sha256; every hit is re-hashed before use."""

    def __init__(self, home: Path) -> None:
        self.dir = cache_dir(home) / "archives"

    def get(self, sha256: str) -> Path | None:
        path = self.dir / f"{sha256}.wgpkg"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)  # corrupt: forget it, download again
            return None
        return path

    def put_stream(
        self,
        entry: IndexEntry,
        read: Callable[[int], bytes],
        source: str,
        progress: Progress | None,
    ) -> Path:
        """Stream ``read`` into the cache, checking size and digest against ``entry``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".download.", suffix=".tmp", dir=self.dir)
        digest = hashlib.sha256()
        done = 0
        try:
            with os.fdopen(fd, "wb") as f:
                while True:
                    chunk = read(CHUNK)
                    if not chunk:
                        break
                    done += len(chunk)
                    if done > entry.size:
                        raise RegistryError(
                            f"{source}: the registry sent more than the {entry.size} bytes "
                            "its index gives for this archive; refused"
                        )
                    digest.update(chunk)
                    f.write(chunk)
                    if progress is not None:
                        progress(done, entry.size)
            if done != entry.size:
                raise RegistryError(
                    f"{source}: got {done} bytes, the index says {entry.size}; "
                    "the download was cut short or the registry is inconsistent"
                )
            got = digest.hexdigest()
            if got != entry.sha256:
                raise RegistryError(
                    f"{source}: the archive's sha256 is {got}, but the registry's index says "
                    f"{entry.sha256}: the registry serves another archive than it lists; refused"
                )
            final = self.dir / f"{entry.sha256}.wgpkg"
            os.replace(tmp, final)
            return final
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class FolderRegistry:
    """A registry folder on this machine (or a mounted share)."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.location = str(root)
        self._dir = RegistryDir(root)
        self._cache = ArchiveCache(home)

    def fetch_index(self, allow_stale: bool = False) -> Fetched:
        return Fetched(self._dir.read_index())

    def fetch_file(self, path: str, limit: int = 4 * 1024 * 1024) -> bytes:
        target = self.root / _checked_path(path)
        try:
            with open(target, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise RegistryError(f"{target}: cannot read: {exc.strerror}") from None
        if len(data) > limit:
            raise RegistryError(f"{target}: larger than {limit} bytes")
        return data

    def fetch_archive(self, entry: IndexEntry, progress: Progress | None = None) -> Path:
        cached = self._cache.get(entry.sha256)
        if cached is not None:
            return cached
        source = self.root / _checked_path(entry.archive)
        try:
            f = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise RegistryError(f"{source}: cannot read: {exc.strerror}") from None
        with f:
            return self._cache.put_stream(entry, f.read, str(source), progress)

    def publish(self, archive: Path, token: str | None = None) -> tuple[IndexEntry, bool]:
        return self._dir.publish(archive)


class HttpRegistry:
    """A registry served over HTTP(S), e.g. by ``wasmgate market serve``."""

    def __init__(self, url: str, home: Path, timeout: float = 15.0) -> None:
        self.location = url.rstrip("/")
        self.timeout = timeout
        key = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        self._index_dir = cache_dir(home) / "indexes" / key
        self._cache = ArchiveCache(home)

    def _url(self, path: str) -> str:
        return f"{self.location}/{urllib.parse.quote(path)}"

    def _open(self, request: urllib.request.Request) -> urllib.response.addinfourl:
        request.add_header("User-Agent", USER_AGENT)
        try:
            response: urllib.response.addinfourl = urllib.request.urlopen(
                request, timeout=self.timeout
            )
            return response
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"registry {self.location} is unreachable: {reason}",
            ) from None

    def fetch_index(self, allow_stale: bool = False) -> Fetched:
        cached_path = self._index_dir / INDEX
        etag_path = self._index_dir / "etag"
        request = urllib.request.Request(self._url(INDEX))
        cached: bytes | None = None
        try:
            cached = cached_path.read_bytes()
            request.add_header("If-None-Match", etag_path.read_text().strip())
        except OSError:
            pass
        try:
            with self._open(request) as response:
                data = response.read(MAX_INDEX + 1)
                etag = response.headers.get("ETag")
        except (OSError, http.client.HTTPException) as exc:
            if not isinstance(exc, urllib.error.HTTPError):
                failed = RegistryError(f"{self.location}/{INDEX}: download failed: {exc!r}")
                return self._stale(cached, failed, allow_stale)
            if exc.code == 304 and cached is not None:
                return Fetched(parse_index(cached, f"{self.location}/{INDEX} (cached)"))
            error = RegistryError(f"{self.location}/{INDEX}: HTTP {exc.code} {exc.reason}")
            return self._stale(cached, error, allow_stale)
        except RegistryError as exc:
            return self._stale(cached, exc, allow_stale)
        if len(data) > MAX_INDEX:
            raise RegistryError(f"{self.location}/{INDEX}: over {MAX_INDEX} bytes; refused")
        index = parse_index(data, f"{self.location}/{INDEX}")
        try:
            self._index_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(cached_path, data)
            if etag:
                write_atomically(etag_path, etag.encode())
            else:
                etag_path.unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be written is only slower
        return Fetched(index)

    def _stale(self, cached: bytes | None, error: RegistryError, allow: bool) -> Fetched:
        if not allow or cached is None:
            raise error
        when = ""
        try:
            mtime = (self._index_dir / INDEX).stat().st_mtime
            from datetime import UTC, datetime

            when = f" from {datetime.fromtimestamp(mtime, UTC):%Y-%m-%d %H:%M} UTC"
        except OSError:
            pass
        index = parse_index(cached, f"{self.location}/{INDEX} (cached)")
        return Fetched(index, stale=f"{error}; showing the cached index{when}")

    def fetch_file(self, path: str, limit: int = 4 * 1024 * 1024) -> bytes:
        url = self._url(_checked_path(path))
        try:
            with self._open(urllib.request.Request(url)) as response:
                data: bytes = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise RegistryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"{url}: download failed: {exc!r}") from None
        if len(data) > limit:
            raise RegistryError(f"{url}: larger than {limit} bytes")
        return data

    def fetch_archive(self, entry: IndexEntry, progress: Progress | None = None) -> Path:
        cached = self._cache.get(entry.sha256)
        if cached is not None:
            return cached
        url = self._url(_checked_path(entry.archive))
        try:
            with self._open(urllib.request.Request(url)) as response:
                return self._cache.put_stream(entry, response.read, url, progress)
        except urllib.error.HTTPError as exc:
            raise RegistryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"{url}: download failed: {exc!r}") from None

    def publish(self, archive: Path, token: str | None = None) -> tuple[IndexEntry, bool]:
        try:
            data = Path(archive).read_bytes()
        except OSError as exc:
            raise PublishError(f"{archive}: cannot read: {exc.strerror}") from None
        request = urllib.request.Request(
            f"{self.location}/api/v1/packages", data=data, method="POST"
        )
        request.add_header("Content-Type", "application/octet-stream")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with self._open(request) as response:
                body = json.loads(response.read(1024 * 1024))
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read(64 * 1024))["error"]
            except (ValueError, KeyError, TypeError):
                reason = exc.reason
            raise PublishError(f"{self.location}: HTTP {exc.code}: {reason}") from None
        try:
            entry = IndexEntry.model_validate(body["entry"])
            return entry, bool(body["new"])
        except (KeyError, TypeError, ValueError):
            raise RegistryError(f"{self.location}: unexpected answer to publish") from None
