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
        # A prefix rewrite (whole elements; both prefixes without their trailing '/'):
        # (old prefix, old + "/", new prefix). Done in on_request itself, the common
        # case; a regex rewrite is a function (_regex_rewrite).
        self._prefix: tuple[str, str, str] | None = None
        self._path: PathRewrite | None = None
        if config.strip_prefix is not None:
            old = config.strip_prefix.rstrip("/")
            self._prefix = (old, old + "/", "")
        elif config.replace_prefix is not None:
            rp = config.replace_prefix
            old = rp.from_.rstrip("/")
            self._prefix = (old, old + "/", rp.to.rstrip("/"))
        elif config.regex is not None and config.replacement is not None:
            self._path = _regex_rewrite(config.regex, config.replacement)
        self._host = config.host
        if self._prefix is None and self._path is None and self._host is None:
            self.skip_phases.add("on_request")

    def on_request(self, ctx: Context) -> None:
        request = ctx.request
        prefix = self._prefix
        if prefix is not None:
            old, elem, new = prefix
            path = request.path
            if path == old or path.startswith(elem):
                path = (new + path[len(old) :]) or "/"
                if path != request.path:
                    request.path = path
        elif self._path is not None:
            changed = self._path(request.path)
            if changed is not None and changed != request.path:
                request.path = changed
        if self._host is not None:
            request.host = self._host
