"""Where a gateway's plugins, lockfile, trust store and registry are: ``[market]``.

:meth:`Workspace.load` reads the ``[market]`` table of ``gateway.toml`` (every field
checked, errors naming the file and ``market.FIELD``) and applies the CLI's flags.
``core/config.py`` validates the same table for ``wasmgate run`` and ``check``; the
market cannot import ``core/``, so the few checks are written twice and kept alike.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from market.client import MAX_PACKAGE, Registry, open_registry
from market.errors import InstallError, MarketError, RegistryError
from market.lockfile import DEFAULT_LOCKFILE, DEFAULT_PLUGIN_DIR
from market.signed_index import registry_keys
from market.signing import TrustStore

MARKET_KEYS = ("registry", "trust", "plugin_dir", "lockfile", "max_package_size")
_SIZE = re.compile(r"^\s*(\d+)\s*(|B|KiB|MiB|GiB)\s*$")
_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


@dataclass(frozen=True)
class Workspace:
    """Where a gateway's plugins, lockfile, trust store and registry are."""

    lockfile: Path
    plugin_dir: Path
    trust_dir: Path
    registry: str | None
    home: Path
    config: Path | None = None
    max_package_size: int = MAX_PACKAGE
    timeout: float = 15.0  # seconds for each network operation with the registry

    @classmethod
    def load(
        cls,
        config: Path | None,
        home: Path,
        registry: str | None = None,
        trust: Path | None = None,
    ) -> Workspace:
        """Settings from ``[market]`` of ``config`` (when given or ./gateway.toml exists),
        overridden by the flags; relative paths are relative to the config's folder."""
        if config is None and Path("gateway.toml").is_file():
            config = Path("gateway.toml")
        table: dict[str, object] = {}
        base = Path()
        if config is not None:
            base = config.parent
            table = _market_table(config)
        reg = registry if registry is not None else table.get("registry")
        if isinstance(reg, str) and "://" not in reg:
            reg = str(base / reg) if registry is None else reg
        trust_dir = trust
        if trust_dir is None:
            trust_dir = base / str(table["trust"]) if "trust" in table else home / "trust"
        max_size = table.get("max_package_size", MAX_PACKAGE)
        assert isinstance(max_size, int)
        return cls(
            lockfile=base / str(table.get("lockfile", DEFAULT_LOCKFILE)),
            plugin_dir=base / str(table.get("plugin_dir", DEFAULT_PLUGIN_DIR)),
            trust_dir=trust_dir,
            registry=reg if isinstance(reg, str) else None,
            home=home,
            config=config,
            max_package_size=max_size,
        )

    def open_registry(self, flag: str = "--registry") -> Registry:
        if not self.registry:
            where = f"[market] registry in {self.config}" if self.config else "[market] registry"
            raise RegistryError(
                f"no registry configured: set {where} or pass {flag} URL|DIR "
                "(or the WASMGATE_REGISTRY environment variable)"
            )
        return open_registry(self.registry, self.home, registry_keys(self.trust_dir), self.timeout)

    def trust_store(self) -> TrustStore:
        return TrustStore.from_dir(self.trust_dir)

    def trust_options(self) -> str:
        """The options that make `wasmgate plugin trust`, run in this folder, write to
        this workspace's trust store (none when it would anyway), for advice."""
        try:
            if Workspace.load(None, self.home).trust_dir == self.trust_dir:
                return ""
            configured = Workspace.load(self.config, self.home) if self.config else None
            if configured is not None and configured.trust_dir == self.trust_dir:
                return f" -c {shlex.quote(str(self.config))}"
        except MarketError:  # ./gateway.toml is unreadable: name the folder itself
            pass
        return f" --trust {shlex.quote(str(self.trust_dir))}"

    def registry_option(self) -> str:
        """``--registry`` for advice, when the configuration does not name this one."""
        if not self.registry:
            return ""
        try:
            if Workspace.load(self.config, self.home).registry == self.registry:
                return ""
        except MarketError:
            pass
        return f" --registry {shlex.quote(self.registry)}"


def _market_table(config: Path) -> dict[str, object]:
    try:
        with open(config, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise InstallError(f"{config}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"{config}: not valid TOML: {exc}") from None
    table = data.get("market", {})
    if not isinstance(table, dict):
        raise InstallError(f"{config}: market: expected a table")
    table = dict(table)
    for key, value in table.items():
        if key not in MARKET_KEYS:
            raise InstallError(
                f"{config}: market.{key}: unknown field (fields: {', '.join(MARKET_KEYS)})"
            )
        if key == "max_package_size":
            table[key] = _size(value, f"{config}: market.{key}")
        elif not isinstance(value, str) or not value:
            raise InstallError(f"{config}: market.{key}: expected a non-empty string")
    return table


def _size(value: object, where: str) -> int:
    """Bytes from ``1048576``, ``"1048576"``, ``"512KiB"``, ``"64MiB"`` or ``"1GiB"``."""
    m = _SIZE.match(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif m:
        size = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InstallError(f"{where}: expected a size in bytes (64MiB, 512KiB, 1048576)")
    if size < 1:
        raise InstallError(f"{where}: must be at least 1 byte")
    return size
