"""HTTPRoute filters → the built-in plugins' configs (see :mod:`core.gatewayapi.translate`).

Each method reads one filter of a rule, for one of its matches, and returns the
plugin config or ``None`` with a warning: a value the plugin would refuse (a bad
hostname, a path with a query, a header with CR/LF) is caught here, so one bad
HTTPRoute never refuses the configuration.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from core.config import HOST_RE
from core.gatewayapi.objects import BackendRef, RouteFilter, RouteMatch, RouteRule
from core.ingress.objects import Located
from core.ingress.translate import Translation

_MANAGED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)


def _plain_path(value: str) -> bool:
    return (
        value.startswith("/")
        and not value.startswith("//")
        and not any(c in value for c in "?#\\ \t\r\n\0")
    )


def _plain_host(value: str) -> bool:
    return bool(HOST_RE.match(value)) and not value.startswith("*.")


class RuleFilters:
    """The filter half of the HTTPRoute translator; ``upstream`` comes from the other."""

    out: Translation
    known_filters: Collection[str]

    def warn(self, text: str) -> None:
        self.out.warnings.append(text)

    def add_filter(self, name: str, plugin: str, config: dict[str, Any], note: str) -> str:
        self.out.filters[name] = {"plugin": plugin, "config": config}
        self.out.notes[f"filter {name}"] = note
        return name

    def upstream(self, ref: BackendRef, route: Located, where: str) -> str | None:
        raise NotImplementedError

    def header_ops(self, mod: Any, where: str) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        for kind in ("set", "add"):
            values = {}
            for hv in getattr(mod, kind):
                if hv.name.lower() in _MANAGED:
                    self.warn(f"{where}: header {hv.name} is managed by the gateway; not changed")
                elif any(c in hv.name for c in " \t\r\n:") or any(c in hv.value for c in "\r\n\0"):
                    self.warn(f"{where}: header {hv.name!r}: invalid name or value; not changed")
                else:
                    values[hv.name] = hv.value
            if values:
                ops[kind] = values
        remove = [n for n in mod.remove if n.lower() not in _MANAGED]
        if len(remove) < len(mod.remove):
            self.warn(f"{where}: headers managed by the gateway cannot be removed; skipped")
        if remove:
            ops["remove"] = remove
        return ops

    def rule_filters(
        self, route: Located, i: int, j: int, rule: RouteRule, match: RouteMatch, base: str
    ) -> tuple[list[str], bool, bool]:
        """(filter names, redirects, broken): the rule's filters for one match."""
        chain: list[str] = []
        redirects = broken = False
        note = f"HTTPRoute {route.key} ({route.where}) rules[{i}]"
        for k, f in enumerate(rule.filters):
            where = f"{route.where}: HTTPRoute {route.key} spec.rules[{i}].filters[{k}]"
            fname = f"{base}.{i}.{j}.f{k}"
            if f.type == "RequestHeaderModifier" and f.request_header_modifier:
                ops = self.header_ops(f.request_header_modifier, where)
                if ops:
                    chain.append(self.add_filter(fname, "headers", {"request": ops}, note))
            elif f.type == "ResponseHeaderModifier" and f.response_header_modifier:
                ops = self.header_ops(f.response_header_modifier, where)
                if ops:
                    chain.append(self.add_filter(fname, "headers", {"response": ops}, note))
            elif f.type == "RequestRedirect" and f.request_redirect:
                config = self.redirect(f, match, where)
                if config is not None:
                    chain.append(self.add_filter(fname, "redirect", config, note))
                    redirects = True
            elif f.type == "URLRewrite" and f.url_rewrite:
                config = self.rewrite(f, match, where)
                if config:
                    chain.append(self.add_filter(fname, "rewrite", config, note))
            elif f.type == "ExtensionRef" and f.extension_ref:
                name = f.extension_ref.name
                if name in self.known_filters:
                    chain.append(name)
                else:
                    self.warn(
                        f"{where}: ExtensionRef names filter {name!r}, which gateway.toml's "
                        "[filters] does not define; the rule answers 500"
                    )
                    broken = True
            elif f.type == "RequestMirror" and f.request_mirror:
                config = self.mirror(f, route, where)
                if config is not None:
                    chain.append(self.add_filter(fname, "mirror", config, note))
            else:
                self.warn(f"{where}: filter type {f.type} is not supported; ignored")
        return chain, redirects, broken

    def mirror(self, f: RouteFilter, route: Located, where: str) -> dict[str, Any] | None:
        rm = f.request_mirror
        assert rm is not None
        ref = BackendRef.model_validate(rm.backend_ref.model_dump(by_alias=True))
        name = self.upstream(ref, route, f"{where}.requestMirror.backendRef")
        if name is None:
            return None
        endpoints = next(u["endpoints"] for u in self.out.upstreams if u["name"] == name)
        if not endpoints:
            self.warn(f"{where}: the mirror Service has no endpoints; nothing is mirrored")
            return None
        config: dict[str, Any] = {"endpoints": endpoints}
        if rm.fraction is not None:
            config["percent"] = min(100.0, 100 * rm.fraction.numerator / rm.fraction.denominator)
        elif rm.percent is not None:
            config["percent"] = float(rm.percent)
        return config

    def redirect(self, f: RouteFilter, match: RouteMatch, where: str) -> dict[str, Any] | None:
        rr = f.request_redirect
        assert rr is not None
        config: dict[str, Any] = {"code": rr.status_code}
        if rr.scheme:
            config["scheme"] = rr.scheme
        if rr.hostname:
            if not _plain_host(rr.hostname.lower()):
                self.warn(f"{where}: invalid hostname {rr.hostname!r}; filter ignored")
                return None
            config["hostname"] = rr.hostname.lower()
        if rr.port:
            config["port"] = rr.port
        if rr.path is not None:
            path = self.path_change(rr.path, match, where)
            if path is None:
                return None
            config.update(path)
        if len(config) == 1:  # nothing replaced: it would redirect to itself
            self.warn(f"{where}: a RequestRedirect that changes nothing; ignored")
            return None
        return config

    def path_change(self, mod: Any, match: RouteMatch, where: str) -> dict[str, Any] | None:
        value = (
            mod.replace_full_path if mod.type == "ReplaceFullPath" else mod.replace_prefix_match
        ) or "/"
        if not _plain_path(value) or "$" in value:
            self.warn(f"{where}: path {value!r} is not a plain path; ignored")
            return None
        if mod.type == "ReplaceFullPath":
            return {"path": value}
        if match.path.type != "PathPrefix":
            self.warn(f"{where}: ReplacePrefixMatch needs a PathPrefix match; ignored")
            return None
        if not _plain_path(match.path.value):
            self.warn(f"{where}: the match's prefix is not a plain path; ignored")
            return None
        return {"replace_prefix": {"from": match.path.value, "to": value}}

    def rewrite(self, f: RouteFilter, match: RouteMatch, where: str) -> dict[str, Any]:
        rw = f.url_rewrite
        assert rw is not None
        config: dict[str, Any] = {}
        if rw.hostname:
            if _plain_host(rw.hostname.lower()):
                config["host"] = rw.hostname.lower()
            else:
                self.warn(f"{where}: invalid hostname {rw.hostname!r}; not rewritten")
        if rw.path is not None:
            change = self.path_change(rw.path, match, where)
            if change is not None and "path" in change:
                config.update({"regex": ".*", "replacement": change["path"]})
            elif change is not None:
                swap = change["replace_prefix"]
                if swap["from"].rstrip("/") != swap["to"].rstrip("/"):
                    config["replace_prefix"] = swap
        return config
