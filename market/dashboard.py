"""The market as the admin dashboard sees it (the ``wasmgate.admin_market`` entry point).

:func:`open_market` takes the running gateway's configuration file and answers with
the catalogue of the registry its ``[market]`` names, and installs with the same
:class:`~market.installer.Installer` as ``wasmgate plugin install``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from market.cli import home
from market.errors import MarketError
from market.installer import Installer, Workspace
from market.search import search

READMES = 20  # the hits whose README is fetched along with the search


@dataclass(frozen=True)
class DashboardMarket:
    ws: Workspace

    def search(self, text: str) -> dict[str, Any]:
        if not self.ws.registry:
            where = self.ws.config or "the gateway's configuration file"
            return {
                "registry": None,
                "plugins": [],
                "note": f"No plugin registry is configured. To browse and install plugins "
                f"here, set [market] registry in {where} to a registry folder or an "
                "http(s) URL (wasmgate market serve), then reload.",
            }
        registry = self.ws.open_registry("[market] registry")
        fetched = registry.fetch_index(allow_stale=True)
        # READMEs only while the caller still waits: past the timeout it has gone.
        deadline = time.monotonic() + self.ws.timeout
        out = []
        for i, hit in enumerate(search(fetched.index, text)):
            entry = hit.latest
            m = entry.manifest
            readme = None
            if entry.readme and not fetched.stale and i < READMES and time.monotonic() < deadline:
                try:
                    readme = registry.fetch_file(entry.readme).decode("utf-8", "replace")
                except MarketError:
                    readme = None
            out.append(
                {
                    "name": hit.name,
                    "version": m.version,
                    "versions": list(hit.versions),
                    "kind": m.kind,
                    "description": m.description,
                    "keywords": list(m.keywords),
                    "signer": entry.signer,
                    "published": entry.published,
                    "config_schema": m.config_schema,
                    "readme": readme,
                }
            )
        return {"registry": self.ws.registry, "stale": fetched.stale or None, "plugins": out}

    def install(self, name: str, constraint: str) -> dict[str, Any]:
        text = f"{name}@{constraint}" if constraint else name
        notes: list[str] = []
        changes = Installer(self.ws, say=notes.append).install([text])
        return {"changes": [str(c) for c in changes], "notes": notes}


def open_market(config: Path, timeout: float = 15.0) -> DashboardMarket:
    """The market of ``config``; ``timeout``: seconds for each network operation (the
    dashboard passes its ``"registry"`` pool's timeout, so no thread outlives it long)."""
    return DashboardMarket(replace(Workspace.load(config, home()), timeout=timeout))
