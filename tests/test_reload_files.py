"""A running ``wasmgate run`` follows every file its configuration was built from
(core/inputs.py, core/watch.py), not only gateway.toml: a rebuilt ``.wasm`` module, a
JWKS file, a key file, an htpasswd file or a certificate that is written, renamed
over, deleted and created again is served without SIGHUP. A change that cannot load
leaves the previous configuration serving, and fixing it is picked up too."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import get_default_algorithms
from wasmtime import wat2wasm

from core.certs import issue, make_ca
from plugin_sdk.testing import GatewayProcess, RecordingUpstream, free_port

MODULES = Path(__file__).parent / "wasm_modules"


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream("v1").start()
    yield up
    await up.stop()


def toml(port: int, upstream: RecordingUpstream, filters: str, extra: str = "") -> str:
    return (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\naccess_log = "off"\n{extra}\n'
        f'[[upstreams]]\nname = "app"\nendpoints = ["{upstream.address}"]\n'
        f'[[routes]]\nname = "main"\npaths = ["/"]\nupstream = "app"\nfilters = {filters}\n'
    )


def start(tmp_path: Path, text: str, port: int) -> GatewayProcess:
    return GatewayProcess(text, workdir=str(tmp_path)).start(port)


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over (what builds and editors do)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status


def logged(gw: GatewayProcess, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in gw.log()

    return check


# ---------------------------------------------------------------------- wasm


def wasm(abi: str) -> bytes:
    return wat2wasm((MODULES / f"abi_{abi.replace('.', '_')}.wat").read_text())


async def abi(url: str) -> str | None:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.headers.get("x-abi-response")


async def test_a_rebuilt_wasm_module_is_served_without_sighup(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    module = tmp_path / "filters" / "abi.wasm"
    module.parent.mkdir()
    module.write_bytes(wasm("0.2.0"))
    port = free_port()
    text = toml(port, upstream, '["abi"]', '[filters.abi]\nwasm = "filters/abi.wasm"\n')
    gw = start(tmp_path, text, port)
    try:
        assert await abi(gw.url) == "0.2.0"
        replace(module, wasm("0.2.1"))  # rebuilt: a new file renamed over the old one

        async def rebuilt() -> bool:
            return await abi(gw.url) == "0.2.1"

        await eventually(rebuilt)
        module.write_bytes(wasm("0.2.0"))  # and written in place

        async def rewritten() -> bool:
            return await abi(gw.url) == "0.2.0"

        await eventually(rewritten)
        assert "reloaded (files changed)" in gw.log()
    finally:
        assert gw.terminate() == 0


async def test_a_module_the_refused_config_names_is_picked_up_once_it_exists(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    (tmp_path / "old.wasm").write_bytes(wasm("0.2.0"))
    port = free_port()
    gw = start(
        tmp_path, toml(port, upstream, '["abi"]', '[filters.abi]\nwasm = "old.wasm"\n'), port
    )
    try:
        gw.config_path.write_text(
            toml(port, upstream, '["abi"]', '[filters.abi]\nwasm = "later/new.wasm"\n')
        )
        await eventually(logged(gw, "reload (files changed) failed"))
        assert await abi(gw.url) == "0.2.0"  # still the old configuration
        (tmp_path / "later").mkdir()
        replace(tmp_path / "later" / "new.wasm", wasm("0.2.1"))

        async def created() -> bool:
            return await abi(gw.url) == "0.2.1"

        await eventually(created)
    finally:
        assert gw.terminate() == 0


# ---------------------------------------------------------------------- auth files


async def test_a_replaced_jwks_file_is_served(tmp_path: Path, upstream: RecordingUpstream) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def jwks(key: Any, kid: str) -> bytes:
        jwk = get_default_algorithms()["ES256"].to_jwk(key.public_key(), as_dict=True)
        return json.dumps({"keys": [{**jwk, "kid": kid, "alg": "ES256"}]}).encode()

    def bearer(key: Any, kid: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"sub": "alice", "iat": now, "exp": now + 300}
        tok = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})
        return {"Authorization": f"Bearer {tok}"}

    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(old, "old"))
    port = free_port()
    filters = f'[{{ plugin = "jwt-auth", config = {{ jwks_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters), port)
    try:
        assert await status(gw.url, bearer(old, "old")) == 200
        assert await status(gw.url, bearer(new, "new")) == 401
        replace(path, jwks(new, "new"))

        async def rotated() -> bool:
            return await status(gw.url, bearer(new, "new")) == 200

        await eventually(rotated)
        assert await status(gw.url, bearer(old, "old")) == 401
    finally:
        assert gw.terminate() == 0


async def test_a_key_file_deleted_and_created_again_is_served(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:key-of-alice-0000000001\n")
    port = free_port()
    filters = f'[{{ plugin = "key-auth", config = {{ key_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters), port)
    alice = {"X-Api-Key": "key-of-alice-0000000001"}
    bob = {"X-Api-Key": "key-of-bob-000000000002"}
    try:
        assert await status(gw.url, alice) == 200
        assert await status(gw.url, bob) == 401
        path.unlink()
        await eventually(logged(gw, "No such file"))
        assert await status(gw.url, alice) == 200  # refused: the previous keys serve on
        path.write_text("bob:key-of-bob-000000000002\n")

        async def recreated() -> bool:
            return await status(gw.url, bob) == 200

        await eventually(recreated)
        assert await status(gw.url, alice) == 401
    finally:
        assert gw.terminate() == 0


async def test_an_edited_htpasswd_file_is_served(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    def line(user: str, password: str) -> str:
        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"

    def basic(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    path = tmp_path / "staff.htpasswd"
    path.write_text(line("ann", "pw-ann"))
    port = free_port()
    filters = f'[{{ plugin = "basic-auth", config = {{ htpasswd_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters), port)
    try:
        assert await status(gw.url, basic("ann", "pw-ann")) == 200
        assert await status(gw.url, basic("ben", "pw-ben")) == 401
        with path.open("a") as f:  # appended in place, as `htpasswd -B` does
            f.write(line("ben", "pw-ben"))

        async def added() -> bool:
            return await status(gw.url, basic("ben", "pw-ben")) == 200

        await eventually(added)
    finally:
        assert gw.terminate() == 0


async def test_polling_follows_the_files_too(tmp_path: Path, upstream: RecordingUpstream) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:key-of-alice-0000000001\n")
    port = free_port()
    filters = f'[{{ plugin = "key-auth", config = {{ key_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters, 'watch_files = "poll"'), port)
    try:
        path.write_text("bob:key-of-bob-000000000002\n")

        async def polled() -> bool:
            return await status(gw.url, {"X-Api-Key": "key-of-bob-000000000002"}) == 200

        await eventually(polled)
    finally:
        assert gw.terminate() == 0


# ---------------------------------------------------------------------- certificates


async def test_a_renewed_certificate_is_served_to_new_connections(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_key = make_ca("test-ca", pki)
    first = issue(ca, ca_key, ["first.test"], pki, stem="first")
    second = issue(ca, ca_key, ["second.test"], pki, stem="second")
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    crt.write_bytes(first[0].read_bytes())
    key.write_bytes(first[1].read_bytes())
    port, tls_port = free_port(), free_port()
    extra = (
        f'tls_listen = ["127.0.0.1:{tls_port}"]\n'
        '[[certificates]]\ncert = "server.crt"\nkey = "server.key"\n'
    )
    gw = start(tmp_path, toml(port, upstream, "[]", extra), port)
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False

    async def served_name() -> str:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=context, server_hostname="any.test"
        )
        cert = writer.get_extra_info("peercert")
        writer.close()
        return str(dict(cert["subjectAltName"])["DNS"])

    try:
        assert await served_name() == "first.test"
        replace(key, second[1].read_bytes())  # the key first: a moment of mismatch
        replace(crt, second[0].read_bytes())

        async def renewed() -> bool:
            return await served_name() == "second.test"

        await eventually(renewed)
    finally:
        assert gw.terminate() == 0


async def test_a_configmap_style_link_swap_is_served(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    # A Kubernetes ConfigMap volume: keys -> ..data/keys, ..data -> ..<timestamp>;
    # an update writes a new folder and renames a new ..data link over the old one.
    volume = tmp_path / "volume"
    (volume / "..v1").mkdir(parents=True)
    (volume / "..v1" / "keys").write_text("alice:key-of-alice-0000000001\n")
    (volume / "..data").symlink_to("..v1")
    (volume / "keys").symlink_to("..data/keys")
    port = free_port()
    filters = f'[{{ plugin = "key-auth", config = {{ key_file = "{volume / "keys"}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters), port)
    bob = {"X-Api-Key": "key-of-bob-000000000002"}
    try:
        assert await status(gw.url, bob) == 401
        (volume / "..v2").mkdir()
        (volume / "..v2" / "keys").write_text("bob:key-of-bob-000000000002\n")
        (volume / "..data_tmp").symlink_to("..v2")
        os.replace(volume / "..data_tmp", volume / "..data")

        async def swapped() -> bool:
            return await status(gw.url, bob) == 200

        await eventually(swapped)
    finally:
        assert gw.terminate() == 0


async def test_a_burst_of_writes_is_one_reload(tmp_path: Path, upstream: RecordingUpstream) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:key-of-alice-0000000001\n")
    port = free_port()
    filters = f'[{{ plugin = "key-auth", config = {{ key_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters), port)
    try:
        # An editor saving in place: truncate, then write in pieces. Loaded in between,
        # the empty file would lock everyone out until the next reload.
        with path.open("w") as f:
            f.flush()
            for piece in ("bob:", "key-of-bob-", "000000000002\n"):
                f.write(piece)
                f.flush()
        await eventually(logged(gw, "reloaded (files changed)"))
        await asyncio.sleep(1.0)  # room for a second reload, were there one
        assert gw.log().count("reloaded (files changed)") == 1, gw.log()
        assert await status(gw.url, {"X-Api-Key": "key-of-bob-000000000002"}) == 200
    finally:
        assert gw.terminate() == 0


async def test_with_watching_off_only_sighup_reloads(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:key-of-alice-0000000001\n")
    port = free_port()
    filters = f'[{{ plugin = "key-auth", config = {{ key_file = "{path}" }} }}]'
    gw = start(tmp_path, toml(port, upstream, filters, 'watch_files = "off"'), port)
    bob = {"X-Api-Key": "key-of-bob-000000000002"}
    try:
        path.write_text("bob:key-of-bob-000000000002\n")
        await asyncio.sleep(1.5)  # followed files reload within a few hundred ms
        assert await status(gw.url, bob) == 401
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        await eventually(logged(gw, "reloaded (SIGHUP)"))
        assert await status(gw.url, bob) == 200
        assert "files changed" not in gw.log()
    finally:
        assert gw.terminate() == 0
