"""The plugin market: signed packages, registries, installs and ``gateway.lock``.

Packages
    :mod:`market.manifest` (what a package is), :mod:`market.signing` (Ed25519 keys,
    signatures, the trust store), :mod:`market.archive` (reading tars safely),
    :mod:`market.package` (pack, read and verify, unpack), :mod:`market.wheel` and
    :mod:`market.wheel_build` (the pure wheels of ``python`` packages).
Registries
    :mod:`market.index` (the layout, the index, publishing into a folder),
    :mod:`market.server` (``wasmgate market serve``), :mod:`market.client` (folder
    and HTTP registries with a cache), :mod:`market.search`.
Installing
    :mod:`market.version` (constraints), :mod:`market.installer` (all-or-nothing
    install, update, remove), :mod:`market.lockfile` (``gateway.lock`` and checking
    what is on disk), :mod:`market.source` (what the engine loads installed plugins
    through, by the ``wasmgate.plugin_sources`` entry point).
Commands
    :mod:`market.cli` and :mod:`market.client_cli` (``wasmgate plugin ...``),
    :mod:`market.registry_cli` (``wasmgate market ...``).

The market imports ``plugin_sdk`` but never ``core``; the engine never imports the
market. docs/market.md is the user's guide.
"""
