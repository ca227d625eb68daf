"""Every market command, run as a user runs it: ``wasmgate ...`` in a subprocess, in the
forms docs/cli.md and docs/market.md show and with each common option they list,
against a real registry folder and a real ``wasmgate market serve`` HTTP registry.

One scenario per registry kind walks a publisher's and a gateway operator's whole
round trip; each step names the command it ran when it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.market.kit import ROOT, WASM_SCHEMA, served_registry, wasm_module, wasmgate

TOKEN = "s3cret"


@dataclass
class Site:
    """A publisher's home, a registry folder and a gateway folder using it."""

    tmp: Path
    home: Path  # $WASMGATE_HOME
    registry: Path
    site: Path  # where gateway.toml is
    config: Path

    def run(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return wasmgate(*args, cwd=cwd or self.site, home=self.home)

    def ok(self, *args: str | Path, cwd: Path | None = None) -> str:
        done = self.run(*args, cwd=cwd)
        command = "wasmgate " + " ".join(map(str, args))
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command}:\n{done.stderr}"
        return done.stdout

    def fails(self, *args: str | Path, cwd: Path | None = None) -> str:
        done = self.run(*args, cwd=cwd)
        command = "wasmgate " + " ".join(map(str, args))
        assert done.returncode == 1, f"{command}: exit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command}:\n{done.stderr}"
        return done.stderr

    def lock(self) -> dict[str, dict[str, str]]:
        data: dict[str, dict[str, str]] = json.loads((self.site / "gateway.lock").read_text())[
            "plugins"
        ]
        return data


def plugin_source(folder: Path, name: str, version: str, description: str) -> Path:
    """A plugin folder as `plugin pack` takes it: manifest.json, the module, a README."""
    src = folder / f"{name}-{version}-src"
    src.mkdir(parents=True)
    (src / "filter.wasm").write_bytes(wasm_module())
    manifest = {
        "name": name,
        "version": version,
        "kind": "wasm",
        "abi": "0.2.1",
        "description": description,
        "keywords": ["headers", "assemblyscript"],
        "payload": "filter.wasm",
        "config_schema": WASM_SCHEMA,
    }
    (src / "manifest.json").write_text(json.dumps(manifest))
    (src / "README.md").write_text(f"# {name}\n\nVersion {version}.\n")
    return src


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A publisher key pair (`plugin keygen`), three signed packages (`plugin pack`),
    and a registry folder accepting the key (`market init --publisher`)."""
    home = tmp_path / "home"
    s = Site(tmp_path, home, tmp_path / "registry", tmp_path / "site", tmp_path / "site" / "x")
    s.site.mkdir()
    out = s.ok("plugin", "keygen", cwd=tmp_path)
    assert "key id" in out
    keys = home / "keys"
    assert (keys / "publisher.key").is_file() and (keys / "publisher.pub").is_file()
    for version in ("0.1.0", "0.1.1", "0.2.0"):
        src = plugin_source(tmp_path / "src", "as-headers", version, "sets headers (demo)")
        s.ok("plugin", "pack", src, "--key", keys / "publisher.key", cwd=tmp_path)
        assert (tmp_path / f"as-headers-{version}.wgpkg").is_file()
    other = plugin_source(tmp_path / "src", "ip-allow", "1.0.0", "allow listed client ips")
    s.ok("plugin", "pack", other, "--key", keys / "publisher.key", "-o", tmp_path / "ip.wgpkg")
    out = s.ok("market", "init", s.registry, "--publisher", keys / "publisher.pub")
    assert "registry ready" in out
    return s


@contextmanager
def registry_of(kind: str, s: Site) -> Iterator[str]:
    if kind == "folder":
        yield str(s.registry)
    else:
        with served_registry(s.registry, token=TOKEN) as url:
            yield url


def write_config(s: Site, registry: str) -> None:
    """gateway.toml whose [market] names the registry and a trust store of its own."""
    s.config = s.site / "gateway.toml"
    s.config.write_text(f'[market]\nregistry = "{registry}"\ntrust = "trust"\n')


@pytest.mark.parametrize("kind", ["folder", "http"])
def test_every_market_command_as_documented(kind: str, site: Site) -> None:
    s = site
    pkg = s.tmp / "as-headers-0.1.0.wgpkg"
    pub = s.home / "keys" / "publisher.pub"
    token = ["--token", TOKEN] if kind == "http" else []
    with registry_of(kind, s) as reg:
        # A publisher publishes (docs/market.md: `plugin publish FILE --registry ... --token`).
        out = s.ok("plugin", "publish", pkg, "--registry", reg, *token, cwd=s.tmp)
        assert f"as-headers 0.1.0 published in {reg}" in out
        out = s.ok("plugin", "publish", pkg, "--registry", reg, *token, cwd=s.tmp)
        assert "already published" in out
        s.ok("plugin", "publish", s.tmp / "ip.wgpkg", "--registry", reg, *token, cwd=s.tmp)

        write_config(s, reg)
        trust = s.site / "trust"

        # The index is signed by the registry's key: until it is trusted, reads are
        # refused with the command that fixes it (docs/market.md, the signed index).
        err = s.fails("plugin", "install", "as-headers")
        assert "wasmgate plugin trust --registry-key" in err
        s.ok("plugin", "trust", "--registry-key", s.registry / "registry.pub")

        # Before trusting the publisher, an install is refused and says how to fix it ...
        err = s.fails("plugin", "install", "as-headers")
        assert "wasmgate plugin trust PUBFILE" in err
        # ... and following that advice (`plugin trust PUBFILE`, gateway.toml in the
        # current folder) fills the trust store the install uses: [market] trust.
        out = s.ok("plugin", "trust", pub)
        assert str(trust) in out
        assert len(list(trust.glob("*.pub"))) == 1
        assert not (s.home / "trust").exists()

        # search, info: every common option (-c, --registry, --trust) and --json.
        common = ["-c", s.config, "--registry", reg, "--trust", trust]
        out = s.ok("plugin", "search")
        assert out.splitlines()[0].startswith("as-headers") and "ip-allow" in out
        out = s.ok("plugin", "search", "headers", *common)
        assert out.split()[:2] == ["as-headers", "0.1.0"]
        rows = json.loads(s.ok("plugin", "search", "ip", "--json", *common))
        assert [r["name"] for r in rows] == ["ip-allow"]
        out = s.ok("plugin", "info", "as-headers", *common)
        assert "as-headers 0.1.0 (wasm)" in out and "config schema" in out
        info = json.loads(s.ok("plugin", "info", "as-headers@0.1.0", "--json", *common))
        assert info["entry"]["manifest"]["version"] == "0.1.0"

        # install without a constraint, then with one, then from the lockfile alone.
        out = s.ok("plugin", "install", "as-headers", *common)
        assert "+ as-headers 0.1.0" in out
        assert s.lock()["as-headers"]["constraint"] == "^0.1.0"
        out = s.ok("plugin", "install", "ip-allow@^1.0", "-c", s.config)
        assert "+ ip-allow 1.0.0" in out
        assert s.lock()["ip-allow"]["constraint"] == "^1.0"
        out = s.ok("plugin", "install", "-c", s.config, "--registry", reg, "--trust", trust)
        assert "= as-headers 0.1.0  (as locked)" in out

        # list (the demo's `plugin list | grep locked`) and schema see the installed plugin.
        locked = [line for line in s.ok("plugin", "list").splitlines() if "locked" in line]
        assert [line.split()[0] for line in locked] == ["as-headers", "ip-allow"]
        listed = json.loads(s.ok("plugin", "list", "--json", "-c", s.config))
        assert {r["name"]: r.get("version") for r in listed}["as-headers"] == "0.1.0"
        schema = json.loads(s.ok("plugin", "schema", "as-headers"))
        assert schema == WASM_SCHEMA
        assert json.loads(s.ok("plugin", "schema", "as-headers", "-c", s.config)) == WASM_SCHEMA

        # update: newer releases appear; ^0.1.0 takes 0.1.1 but not 0.2.0.
        for version in ("0.1.1", "0.2.0"):
            s.ok(
                "plugin",
                "publish",
                s.tmp / f"as-headers-{version}.wgpkg",
                "--registry",
                reg,
                *token,
                cwd=s.tmp,
            )
        out = s.ok("plugin", "update", "as-headers", *common)
        assert "~ as-headers 0.1.0 -> 0.1.1" in out
        out = s.ok("plugin", "update", "-c", s.config)
        assert "= as-headers 0.1.1  (up to date; 0.2.0 is outside ^0.1.0: " in out
        assert "`wasmgate plugin install as-headers@^0.2.0`" in out
        out = s.ok("plugin", "install", "as-headers@^0.2", *common)
        assert "~ as-headers 0.1.1 -> 0.2.0" in out

        # verify a package against the same trust store.
        out = s.ok("plugin", "verify", pkg, "--trust", trust, cwd=s.tmp)
        assert "OK, signed by a trusted key" in out
        assert json.loads(s.ok("plugin", "verify", pkg, "--json"))["version"] == "0.1.0"

        # remove, in every form the docs allow (it used to crash in all of them).
        out = s.ok("plugin", "remove", "ip-allow", *common)
        assert "- ip-allow 1.0.0" in out
        out = s.ok("plugin", "remove", "as-headers")
        assert "- as-headers 0.2.0" in out
        assert s.lock() == {}
        err = s.fails("plugin", "remove", "as-headers", "-c", s.config)
        assert "not installed: as-headers" in err


def test_trust_from_registry_into_the_configured_store(site: Site) -> None:
    s = site
    with served_registry(s.registry, token=TOKEN) as url:
        write_config(s, url)
        kid = json.loads((s.registry / "index.json").read_text())["keys"][0]
        out = s.ok("plugin", "trust", "--from-registry", kid, "-c", s.config)
        assert f"trusted key {kid}" in out and str(s.site / "trust") in out
        assert (s.site / "trust" / f"{kid}.pub").is_file()
        other = s.tmp / "elsewhere"
        out = s.ok("plugin", "trust", "--from-registry", kid, "--registry", url, "--trust", other)
        assert (other / f"{kid}.pub").is_file()


def test_trust_pubfile_honours_dash_c_outside_the_site(site: Site) -> None:
    s = site
    s.ok("plugin", "publish", s.tmp / "as-headers-0.1.0.wgpkg", "--registry", s.registry)
    write_config(s, str(s.registry))
    s.ok("plugin", "trust", "--registry-key", s.registry / "registry.pub", "-c", s.config)
    # An install run elsewhere with -c is refused; the command it advises, run where
    # the install ran, fills the trust store that install reads.
    err = s.fails("plugin", "install", "as-headers", "-c", s.config, cwd=s.tmp)
    advice = re.search(r"`(wasmgate plugin trust PUBFILE[^`]*)`", err)
    assert advice is not None, err
    assert f"-c {s.config}" in advice.group(1)
    command = shlex.split(advice.group(1).replace("PUBFILE", str(s.home / "keys/publisher.pub")))
    s.ok(*command[1:], cwd=s.tmp)
    assert "+ as-headers 0.1.0" in s.ok(
        "plugin", "install", "as-headers", "-c", s.config, cwd=s.tmp
    )
    shutil.rmtree(s.site / "trust")
    out = s.ok("plugin", "trust", s.home / "keys" / "publisher.pub", "-c", s.config, cwd=s.tmp)
    assert str(s.site / "trust") in out
    assert len(list((s.site / "trust").glob("*.pub"))) == 1
    assert not (s.home / "trust").exists()
    # --trust still wins over the configuration.
    s.ok("plugin", "trust", s.home / "keys" / "publisher.pub", "--trust", s.tmp / "t2")
    assert len(list((s.tmp / "t2").glob("*.pub"))) == 1


@pytest.mark.parametrize("kind", ["folder", "http"])
def test_publish_refusal_names_the_registry_side_fix(kind: str, site: Site) -> None:
    s = site
    stranger = s.tmp / "stranger"
    s.ok("plugin", "keygen", "--dir", stranger)
    src = plugin_source(s.tmp / "src2", "odd-one", "1.0.0", "from an unknown publisher")
    s.ok("plugin", "pack", src, "--key", stranger / "publisher.key", "-o", s.tmp / "odd.wgpkg")
    token = ["--token", TOKEN] if kind == "http" else []
    with registry_of(kind, s) as reg:
        err = s.fails("plugin", "publish", s.tmp / "odd.wgpkg", "--registry", reg, *token)
    assert "wasmgate market add-publisher" in err
    assert "wasmgate plugin trust" not in err
    # Following the advice makes the same publish succeed.
    s.ok("market", "add-publisher", s.registry, stranger / "publisher.pub")
    out = s.ok("plugin", "publish", s.tmp / "odd.wgpkg", "--registry", s.registry)
    assert "odd-one 1.0.0 published" in out


def demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wasmgate_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_commands_the_demo_prints(site: Site) -> None:
    """`make run` prints market commands to paste in examples/; each one works as printed
    (the demo's gateway.toml names the registry and trusts its publisher's keys)."""
    s = site
    (s.site / "registry").symlink_to(s.registry)
    s.ok("plugin", "publish", s.tmp / "as-headers-0.1.0.wgpkg", "--registry", s.registry)
    # As `make registry` does: a demo trust store beside the registry with its
    # publisher's key and the registry's index key.
    trust = s.registry / "trust"
    (trust / "registries").mkdir(parents=True)
    shutil.copy(s.home / "keys" / "publisher.pub", trust / "publisher.pub")
    shutil.copy(s.registry / "registry.pub", trust / "registries" / "registry.pub")
    (s.site / "gateway.toml").write_text(
        '[market]\nregistry = "http://127.0.0.1:8700"\ntrust = "registry/trust"\n'
    )
    with served_registry(s.registry, token=None) as url:
        port = int(url.rsplit(":", 1)[1])
        lines = demo_module().market_banner(port)
        prefix = "  ../.venv/bin/wasmgate "
        commands = [line for line in lines if line.startswith(prefix)]
        assert len(commands) >= 5, lines
        for line in commands:
            command, _, expected = line.partition("  # ")
            command = command.strip().replace(
                "../.venv/bin/wasmgate", f"{shlex.quote(sys.executable)} -m core.cli"
            )
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=s.site,
                env={**os.environ, "WASMGATE_HOME": str(s.home)},
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr, f"{line}\n{done.stderr}"
            if expected.startswith(("+ ", "- ")):  # the change line, before any comment
                assert expected.split(",")[0] in done.stdout, f"{line}\n{done.stdout}"
