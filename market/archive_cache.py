"""The download cache of archives: ``$WASMGATE_HOME/cache/archives/<sha256>.wgpkg``.

Archives are stored by the sha256 the registry's index gives, re-hashed on every use
(a file of the wrong size is dropped without being read), and written only through
:meth:`ArchiveCache.put_stream`: a temporary file, renamed into place once its size
and sha256 match the index. Anything else (too long, cut short, other bytes, an
interruption) removes the temporary file, so nothing refused stays behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from market.errors import RegistryError
from market.index import IndexEntry

Progress = Callable[[int, int], None]
CHUNK = 64 * 1024


def cache_dir(home: Path) -> Path:
    return home / "cache"


class ArchiveCache:
    """Downloaded archives by sha256; every hit is re-hashed before use."""

    def __init__(self, home: Path) -> None:
        self.dir = cache_dir(home) / "archives"

    def get(self, entry: IndexEntry) -> Path | None:
        sha256 = entry.sha256
        path = self.dir / f"{sha256}.wgpkg"
        try:
            if path.stat().st_size != entry.size:
                path.unlink()  # not what the index lists: never read it whole
                return None
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
                    # One byte past the declared size is enough to know it is too long.
                    chunk = read(min(CHUNK, entry.size - done + 1))
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
