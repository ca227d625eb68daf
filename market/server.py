"""``wasmgate market serve``: a registry folder over HTTP (aiohttp).

Routes (all read-only but the last):

- ``GET /index.json``: the index, with a strong ``ETag`` (its sha256) and
  ``Cache-Control: no-cache``; ``If-None-Match`` gets a 304.
- ``GET /index.sig``: the registry's signature over the index, and ``GET
  /registry.pub``: the registry's public key (:mod:`market.signed_index`). The
  private key in ``ROOT/.registry/`` is never served.
- ``GET /packages/NAME/FILE`` and ``GET /keys/FILE``: archives, READMEs and
  publisher keys; only names the registry layout allows, never a path outside ROOT.
- ``GET /``: a short plain-text summary (what is published).
- ``POST /api/v1/packages``: publish (the body is a ``.wgpkg``), only when the server
  was started with a publish token and the request carries it as
  ``Authorization: Bearer TOKEN``; answers ``{"entry": ..., "new": bool}`` or
  ``{"error": "..."}`` with 400 (not a valid package), 401 (no or wrong token), 403
  (publishing disabled), 409 (the version exists with other content), 413 (too large).

Publishing goes through :meth:`market.index.RegistryDir.publish` in a worker thread,
so the folder's lock serializes it with any other publisher, HTTP or local.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import tempfile
from pathlib import Path

from aiohttp import web

from market.errors import PublishError, RegistryError
from market.index import INDEX, SAFE_PATH, RegistryDir
from market.signed_index import PUBLIC, SIGNATURE
from plugin_sdk import pools

MAX_UPLOAD = 64 * 1024 * 1024


def make_app(root: Path, publish_token: str | None = None) -> web.Application:
    registry = RegistryDir(root)
    registry.init()

    async def index(request: web.Request) -> web.StreamResponse:
        data = await pools.offload("files", registry.index_path.read_bytes)
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type="application/json", headers=headers)

    async def signature(request: web.Request) -> web.StreamResponse:
        data = registry.signature_path.read_bytes()
        return web.Response(body=data, content_type="application/json", headers=_NO_CACHE)

    async def public_key(request: web.Request) -> web.StreamResponse:
        return web.Response(body=(root / PUBLIC).read_bytes(), content_type="text/plain")

    async def files(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        if not SAFE_PATH.match(rel):
            raise web.HTTPNotFound(text="not found\n")
        path = root / rel
        if not path.is_file():
            raise web.HTTPNotFound(text="not found\n")
        return web.FileResponse(path, headers={"Cache-Control": "max-age=31536000, immutable"})

    async def summary(request: web.Request) -> web.StreamResponse:
        idx = registry.read_index()
        count = len(idx.packages)
        packages = f"{count} package" + ("" if count == 1 else "s")
        lines = [f"wasmgate registry: {packages}, updated {idx.updated}"]
        for name, versions in sorted(idx.packages.items()):
            lines.append(f"  {name:24} {', '.join(versions)}")
        lines.append(f"index: /{INDEX}")
        return web.Response(text="\n".join(lines) + "\n")

    async def publish(request: web.Request) -> web.StreamResponse:
        if publish_token is None:
            return _error(403, "publishing is disabled on this registry (start it with --token)")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {publish_token}".encode()):
            return _error(401, "publishing needs the registry's token (--token)")
        if request.content_length is not None and request.content_length > MAX_UPLOAD:
            return _error(413, f"a package may be at most {MAX_UPLOAD} bytes")
        fd, tmp = tempfile.mkstemp(prefix=".upload.", suffix=".wgpkg", dir=root)
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        return _error(413, f"a package may be at most {MAX_UPLOAD} bytes")
                    f.write(chunk)
            try:
                # Not bounded by a timeout: the upload is removed when publish returns.
                entry, new = await asyncio.wrap_future(
                    pools.pool("files").submit(lambda: registry.publish(Path(tmp)))
                )
            except pools.OffloadBusy as exc:
                return _error(503, str(exc))
            except PublishError as exc:
                status = _STATUS.get(exc.reason, 400)
                return _error(status, str(exc).replace(tmp, "the upload"))
            except RegistryError as exc:
                return _error(500, str(exc))
        finally:
            Path(tmp).unlink(missing_ok=True)
        return web.json_response(
            {"entry": entry.model_dump(mode="json", exclude_none=True), "new": new},
            status=201 if new else 200,
        )

    app = web.Application(client_max_size=MAX_UPLOAD + 1024)
    app.router.add_get("/", summary)
    app.router.add_get(f"/{INDEX}", index)
    app.router.add_get(f"/{SIGNATURE}", signature)
    app.router.add_get(f"/{PUBLIC}", public_key)
    app.router.add_get("/{path:(packages|keys)/.+}", files)
    app.router.add_post("/api/v1/packages", publish)
    return app


_NO_CACHE = {"Cache-Control": "no-cache"}
_STATUS = {"conflict": 409, "untrusted": 403, "invalid": 400, "unavailable": 503}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def serve(root: Path, host: str, port: int, publish_token: str | None = None) -> None:
    """Serve the registry at ``root`` until interrupted."""
    app = make_app(root, publish_token)
    print(f"serving registry {root} on http://{host}:{port}/", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
