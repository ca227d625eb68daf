"""The ``rewrite`` plugin: rewrite the request path and Host on the way upstream.

At most one path rewrite per filter — ``strip_prefix``, ``replace_prefix`` or
``regex`` + ``replacement`` — plus, independently, ``host``::

    [filters.user-api]
    plugin = "rewrite"
    config.strip_prefix = "/user"          # /user/api/x -> /api/x, /user -> /

    [filters.v1-to-v2]
    plugin = "rewrite"
    config.replace_prefix = { from = "/v1", to = "/v2" }   # /v1/items -> /v2/items

    [filters.rewrite-target]
    plugin = "rewrite"
    config.regex = "/something(/|$)(.*)"   # NGINX Ingress rewrite-target
    config.replacement = "/$2"             # /something -> /, /something/new -> /new
    config.host = "internal.svc"

Rules:

* Prefixes match whole path elements, like route prefixes: ``/user`` matches ``/user``
  and ``/user/...``, never ``/username``. A trailing ``/`` in a prefix is ignored.
* ``regex`` is matched at the start of the path (``re.match``; add ``$`` to anchor the
  end). On a match the whole path becomes ``replacement`` with ``$1`` .. ``$9``
  replaced by the groups (an unmatched group is empty) — NGINX's ``rewrite`` — so a
  part of the path the pattern does not capture is dropped. No match: unchanged.
  A result that does not start with ``/`` gets one.
* The query string is always kept as it was.
* ``host`` sets ``request.host``: the upstream sees it as ``Host`` when the upstream
  has ``preserve_host = true`` (the default). Routing has already happened.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from plugin_sdk import Context, Filter
from plugins.rewrite.config import _GROUP, RewriteConfig

PathRewrite = Callable[[str], str | None]  # the new path, or None to leave it


def _prefix_rewrite(old: str, new: str) -> PathRewrite:
    """``old`` prefix (whole elements) -> ``new``; both without their trailing '/'."""
    elem = old + "/"
    cut = len(old)

    def rewrite(path: str) -> str | None:
        if path == old or path.startswith(elem):
            return (new + path[cut:]) or "/"
        return None

    return rewrite


def _regex_rewrite(pattern: str, replacement: str) -> PathRewrite:
    match = re.compile(pattern).match
    # "/a$1b$2" -> ["/a", 1, "b", 2]: literals and group numbers, split once here.
    parts: list[str | int] = []
    pos = 0
    for m in _GROUP.finditer(replacement):
        if m.start() > pos:
            parts.append(replacement[pos : m.start()])
        parts.append(int(m.group(1)))
        pos = m.end()
    if pos < len(replacement):
        parts.append(replacement[pos:])
    if all(isinstance(p, str) for p in parts):
        fixed = replacement if replacement.startswith("/") else "/" + replacement

        def constant(path: str) -> str | None:
            return fixed if match(path) else None

        return constant

    def rewrite(path: str) -> str | None:
        m = match(path)
        if m is None:
            return None
        out = "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)
        return out if out.startswith("/") else "/" + out

    return rewrite


class Rewrite(Filter[RewriteConfig]):
    """Rewrite the path (prefix or regex) and the Host; the query string is kept."""

    Config = RewriteConfig

    def __init__(self, config: RewriteConfig) -> None:
        super().__init__(config)
        self._path: PathRewrite | None = None
        if config.strip_prefix is not None:
            self._path = _prefix_rewrite(config.strip_prefix.rstrip("/"), "")
        elif config.replace_prefix is not None:
            rp = config.replace_prefix
            self._path = _prefix_rewrite(rp.from_.rstrip("/"), rp.to.rstrip("/"))
        elif config.regex is not None and config.replacement is not None:
            self._path = _regex_rewrite(config.regex, config.replacement)
        self._host = config.host
        if self._path is None and self._host is None:
            self.skip_phases.add("on_request")

    def on_request(self, ctx: Context) -> None:
        request = ctx.request
        if self._path is not None:
            path = self._path(request.path)
            if path is not None and path != request.path:
                request.path = path
        if self._host is not None:
            request.host = self._host
