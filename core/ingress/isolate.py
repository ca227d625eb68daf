"""Checking one Ingress's tables alone, so that one bad Ingress is skipped, not fatal.

:mod:`core.ingress.translate` translates each Ingress into tables and hands them here
before keeping them. :func:`check_tables` validates them exactly as ``gateway.toml``'s
own are validated (the route and upstream models of :mod:`core.config`, each filter's
config against its plugin's schema, found through the same entry points the chain
uses), and reports a name that the configuration file itself already uses. Any
problem makes the translator drop every table of that Ingress and say so in one
warning; the other Ingresses and the file's own tables are served. Only
``gateway.toml`` itself being invalid refuses to start. :func:`certificate_problems`
checks a TLS Secret's certificate the same way (a bad one is dropped, and its hosts
get the default certificate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from core.chain import PluginRegistry
from core.config import Certificate, Route, Upstream
from core.errors import PluginError


@cache
def _registry() -> PluginRegistry:
    return PluginRegistry()


def _model_problems(model: type[BaseModel], table: Mapping[str, Any], label: str) -> list[str]:
    try:
        model.model_validate(table)
    except ValidationError as exc:
        return [
            f"{label}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
    return []


def _filter_problems(name: str, table: Mapping[str, Any]) -> list[str]:
    plugin = str(table.get("plugin"))
    try:
        cls = _registry().load(plugin)
    except PluginError as exc:
        return [f"filter {name}: {exc}"]
    return _model_problems(cls.Config, table.get("config", {}), f"filter {name} ({plugin}) config")


def certificate_problems(table: Mapping[str, Any], label: str) -> list[str]:
    problems = _model_problems(Certificate, table, label)
    if problems or "cert_pem" not in table:
        return problems
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(str(table["cert_pem"]).encode())
        key = serialization.load_pem_private_key(str(table["key_pem"]).encode(), password=None)
    except (ValueError, TypeError) as exc:
        return [f"{label}: not a PEM certificate and key: {exc}"]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != key.public_key().public_bytes(serialization.Encoding.DER, public):
        return [f"{label}: the key does not belong to the certificate"]
    return []


def check_tables(
    upstreams: Iterable[Mapping[str, Any]],
    routes: Iterable[Mapping[str, Any]],
    filters: Mapping[str, Mapping[str, Any]],
    reserved: frozenset[str],
) -> list[str]:
    """Why the tables of one Ingress cannot be served (empty: they can).

    ``reserved`` holds the names the configuration file uses itself, as
    ``"upstream NAME"``, ``"route NAME"`` and ``"filter NAME"``."""
    problems: list[str] = []
    for up in upstreams:
        label = f"upstream {up.get('name')}"
        if label in reserved:
            problems.append(f"{label} is also defined in the configuration file")
        problems += _model_problems(Upstream, up, label)
    for route in routes:
        label = f"route {route.get('name')}"
        if label in reserved:
            problems.append(f"{label} is also defined in the configuration file")
        table = {k: v for k, v in route.items() if not k.startswith("_")}
        problems += _model_problems(Route, table, label)
    for name, spec in filters.items():
        if f"filter {name}" in reserved:
            problems.append(f"filter {name} is also defined in the configuration file")
        problems += _filter_problems(name, spec)
    return problems
