"""The files a configuration snapshot is built from (what a reload must follow).

Every file whose content ends up in a snapshot counts: the configuration file, the
Kubernetes manifests of ``[kubernetes]`` (and their folders, where a new file counts
too), ``gateway.lock``, the certificates, keys and CA bundles of ``[[certificates]]``,
``[server.tls]`` and TLS upstreams, and what each filter was built from: a ``.wasm``
module and the places its manifest is looked for, or the files a Python filter lists
in :meth:`plugin_sdk.Filter.watched_files`. Paths are absolute; relative ones in the
configuration are relative to its folder, those a filter lists to the working
directory (as the filter opens them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import GatewayConfig
from plugin_sdk.chain import FilterInstance


@dataclass(frozen=True)
class Inputs:
    """Files (and folders whose every file counts) a snapshot was built from."""

    files: frozenset[Path] = field(default_factory=frozenset)
    trees: frozenset[Path] = field(default_factory=frozenset)

    def __or__(self, other: Inputs) -> Inputs:
        return Inputs(self.files | other.files, self.trees | other.trees)


def config_inputs(cfg: GatewayConfig, path: Path) -> Inputs:
    """What ``cfg`` (read from ``path``) names; what its filters add is not included."""
    base = path.absolute().parent
    files: list[Path] = [path, *cfg.sources, base / cfg.market.lockfile]
    trees: list[Path] = []
    if cfg.kubernetes is not None:
        from core.ingress.objects import manifest_files

        folders = [base / m for m in cfg.kubernetes.manifests]
        trees += [f for f in folders if f.is_dir()]
        files += manifest_files(folders)
    for cert in cfg.certificates:
        files += [base / p for p in (cert.cert, cert.key, cert.client_ca) if p]
    if cfg.certificates and cfg.server.tls.client_ca:
        files.append(base / cfg.server.tls.client_ca)
    for up in cfg.upstreams:
        if up.tls:
            files += [base / p for p in (up.tls_ca, up.tls_cert, up.tls_key) if p]
    for d in cfg.filters.values():
        # Also found by the built instance; listed here for a configuration whose build
        # failed: creating the missing module then triggers the next try.
        files += [base / p for p in (d.wasm, d.manifest) if p]
    return Inputs(_absolute(files), _absolute(trees))


def snapshot_inputs(cfg: GatewayConfig, path: Path, filters: Iterable[FilterInstance]) -> Inputs:
    """Everything a snapshot of ``cfg`` with these filter instances was built from."""
    built = Inputs(_absolute(f for inst in filters for f in inst.files))
    return config_inputs(cfg, path) | built


def _absolute(paths: Iterable[Path]) -> frozenset[Path]:
    return frozenset(Path(os.path.normpath(Path(p).absolute())) for p in paths)
