"""Talking to a registry, a folder or an HTTP server, with a local cache.

:func:`open_registry` takes what the user configured (``http://...``/``https://...``
or a folder path) and the registry keys the user trusts, and returns a
:class:`Registry` with four operations: the index, a file by its path in the registry
(a README, a publisher key), an archive checked against the index's size and sha256,
and publishing an archive.

Every index is verified before use (:mod:`market.signed_index`): its ``index.sig``
must be a signature by a trusted registry key over its exact bytes, and its serial
must not be lower than the highest this client has seen from that registry. An index
that fails is refused, never served from the cache instead. A signature that does not
match is fetched once more with the index, in case a publish happened in between.

The cache lives in ``$WASMGATE_HOME/cache`` (``~/.wasmgate/cache``):

- ``indexes/<hash of the URL>/index.json`` (+ ``etag``): a fresh fetch sends
  ``If-None-Match`` and takes a 304 as "unchanged". When the registry cannot be
  reached, ``search`` and ``info`` fall back to the cached index and say so.
- ``archives/<sha256>.wgpkg``: content-addressed downloads, re-hashed on every use,
  so reinstalling what a lockfile pins needs no network when the archive is cached.

Archives are bounded twice: an index entry declaring more than ``max_size`` bytes
(``[market] max_package_size``, default :data:`MAX_PACKAGE`, 64 MiB) is refused
before any download, and a download streams to a temporary file while hashing and
stops reading one byte past the size the index gives, so a registry that serves other
bytes than its index describes is refused. A refused download never stays in the cache.
Only this module opens network connections (stdlib ``urllib``; the CLI is
synchronous); its errors become :class:`~market.errors.RegistryError`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from market.archive_cache import ArchiveCache, cache_dir
from market.archive_cache import Progress as Progress  # part of the Registry protocol
from market.errors import PublishError, RegistryError, UntrustedIndex
from market.files import write_atomically
from market.index import INDEX, SAFE_PATH, Index, IndexEntry, RegistryDir, parse_index
from market.signed_index import PUBLIC, SIGNATURE, Serials, verify_index
from market.signing import TrustStore

USER_AGENT = "wasmgate-market/1"
MAX_INDEX = 32 * 1024 * 1024
MAX_SIGNATURE = 4096
MAX_PACKAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """An index and where it came from."""

    index: Index
    stale: str | None = None  # why the cached copy was used, when it was


class Registry(Protocol):
    location: str

    def fetch_index(self, allow_stale: bool = False) -> Fetched: ...

    def fetch_file(self, path: str, limit: int = 4 * 1024 * 1024) -> bytes: ...

    def fetch_archive(
        self, entry: IndexEntry, progress: Progress | None = None, max_size: int = MAX_PACKAGE
    ) -> Path: ...

    def publish(self, archive: Path, token: str | None = None) -> tuple[IndexEntry, bool]: ...


def open_registry(location: str, home: Path, keys: TrustStore, timeout: float = 15.0) -> Registry:
    """A :class:`Registry` for a URL or a folder whose index ``keys`` may sign."""
    if location.startswith(("http://", "https://")):
        return HttpRegistry(location, home, keys, timeout)
    if "://" in location:
        raise RegistryError(f"registry {location!r}: only http(s) URLs and folders are supported")
    return FolderRegistry(Path(location), home, keys)


def accept_index(
    data: bytes, signature: bytes | None, location: str, keys: TrustStore, serials: Serials
) -> Index:
    """The index in ``data`` once its signature and serial are checked (and remembered)."""
    verify_index(data, signature, keys, location)
    index = parse_index(data, f"{location}/{INDEX}")
    serials.check(location, index, data)
    serials.remember(location, index, data)
    return index


def check_declared_size(entry: IndexEntry, max_size: int, location: str) -> None:
    """Refuse, before any download, an archive the index says is over ``max_size``."""
    if entry.size > max_size:
        m = entry.manifest
        raise RegistryError(
            f"{m.name} {m.version}: registry {location} declares an archive of {entry.size} "
            f"bytes, over the {max_size} bytes this client accepts; refused before "
            "downloading. If you expect packages this large, raise [market] "
            "max_package_size in gateway.toml"
        )


def _checked_path(path: str) -> str:
    if path != PUBLIC and not SAFE_PATH.match(path):
        raise RegistryError(f"refusing registry path {path!r}")
    return path


class FolderRegistry:
    """A registry folder on this machine (or a mounted share)."""

    def __init__(self, root: Path, home: Path, keys: TrustStore) -> None:
        self.root = root
        self.location = str(root)
        self._dir = RegistryDir(root)
        self._cache = ArchiveCache(home)
        self._keys = keys
        self._serials = Serials(home)

    def fetch_index(self, allow_stale: bool = False) -> Fetched:
        try:
            return Fetched(self._accept())
        except UntrustedIndex:
            return Fetched(self._accept())  # a publish may have come between the two reads

    def _accept(self) -> Index:
        if not self._dir.exists():
            self._dir.read_index()  # raises, saying how to make one
        try:
            data = self._dir.index_path.read_bytes()
            try:
                with open(self._dir.signature_path, "rb") as f:
                    signature: bytes | None = f.read(MAX_SIGNATURE + 1)
            except FileNotFoundError:
                signature = None
        except OSError as exc:
            raise RegistryError(f"registry {self.root}: cannot read: {exc.strerror}") from None
        # By absolute path: "registry" next to two gateway.toml files is two registries.
        where = str(self.root.resolve())
        return accept_index(data, signature, where, self._keys, self._serials)

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

    def fetch_archive(
        self, entry: IndexEntry, progress: Progress | None = None, max_size: int = MAX_PACKAGE
    ) -> Path:
        check_declared_size(entry, max_size, self.location)
        cached = self._cache.get(entry)
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

    def __init__(self, url: str, home: Path, keys: TrustStore, timeout: float = 15.0) -> None:
        self.location = url.rstrip("/")
        self.timeout = timeout
        key = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        self._index_dir = cache_dir(home) / "indexes" / key
        self._cache = ArchiveCache(home)
        self._keys = keys
        self._serials = Serials(home)

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
        try:
            data, signature, etag = self._download_index(revalidate=True)
        except RegistryError as exc:
            return self._stale(exc, allow_stale)
        try:
            index = self._accept(data, signature)
        except UntrustedIndex:
            # A publish may have landed between the index and its signature: once more.
            try:
                data, signature, etag = self._download_index(revalidate=False)
            except RegistryError as exc:
                return self._stale(exc, allow_stale)
            index = self._accept(data, signature)
        try:
            self._index_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self._index_dir / INDEX, data)
            if signature is not None:
                write_atomically(self._index_dir / SIGNATURE, signature)
            if etag:
                write_atomically(self._index_dir / "etag", etag.encode())
            else:
                (self._index_dir / "etag").unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be written is only slower
        return Fetched(index)

    def _accept(self, data: bytes, signature: bytes | None) -> Index:
        return accept_index(data, signature, self.location, self._keys, self._serials)

    def _download_index(self, revalidate: bool) -> tuple[bytes, bytes | None, str | None]:
        """(index bytes, signature bytes or None, ETag); a 304 gives the cached bytes."""
        request = urllib.request.Request(self._url(INDEX))
        cached: bytes | None = None
        if revalidate:
            try:
                cached = (self._index_dir / INDEX).read_bytes()
                request.add_header("If-None-Match", (self._index_dir / "etag").read_text().strip())
            except OSError:
                cached = None
        source = f"{self.location}/{INDEX}"
        try:
            with self._open(request) as response:
                data: bytes = response.read(MAX_INDEX + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code != 304 or cached is None:
                raise RegistryError(f"{source}: HTTP {exc.code} {exc.reason}") from None
            data, etag = cached, exc.headers.get("ETag")
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"{source}: download failed: {exc!r}") from None
        if len(data) > MAX_INDEX:
            raise RegistryError(f"{source}: over {MAX_INDEX} bytes; refused")
        return data, self._download_signature(), etag

    def _download_signature(self) -> bytes | None:
        url = self._url(SIGNATURE)
        try:
            with self._open(urllib.request.Request(url)) as response:
                data: bytes = response.read(MAX_SIGNATURE + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RegistryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"{url}: download failed: {exc!r}") from None
        return data

    def _stale(self, error: RegistryError, allow: bool) -> Fetched:
        """The cached index, re-verified, when the registry cannot be reached."""
        if not allow:
            raise error
        try:
            cached = (self._index_dir / INDEX).read_bytes()
            signature = (self._index_dir / SIGNATURE).read_bytes()
            mtime = (self._index_dir / INDEX).stat().st_mtime
        except OSError:
            raise error from None
        from datetime import UTC, datetime

        index = self._accept(cached, signature)
        when = f" from {datetime.fromtimestamp(mtime, UTC):%Y-%m-%d %H:%M} UTC"
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

    def fetch_archive(
        self, entry: IndexEntry, progress: Progress | None = None, max_size: int = MAX_PACKAGE
    ) -> Path:
        check_declared_size(entry, max_size, self.location)
        cached = self._cache.get(entry)
        if cached is not None:
            return cached
        url = self._url(_checked_path(entry.archive))
        try:
            with self._open(urllib.request.Request(url)) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) != entry.size:
                    raise RegistryError(
                        f"{url}: the registry announces {length} bytes, but its index "
                        f"gives {entry.size} for this archive; refused before downloading"
                    )
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
