"""VM sharing (filters naming the same module and ``vm_id`` run in one instance, a
root context each, as in Envoy) and service plugins (``[services.NAME]``: root-only,
no route) through the real gateway."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.gateway import Snapshot
from tests.conftest import StartGateway
from tests.harness import RecordingUpstream
from tests.test_wasm_host import wasm_file


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


def sharing_toml(module: Path, v1: str, *, vm_id: str, extra: str = "") -> str:
    """Filters a and b (the same module; ``vm_id`` set on both unless empty) on /a and /b."""
    vm = f'vm_id = "{vm_id}"' if vm_id else ""
    return f"""
[server]
listen = ["127.0.0.1:0"]
access_log = "off"

[[upstreams]]
name = "v1"
endpoints = ["{v1}"]

[filters.a]
wasm = "{module}"
config = {{ role = "filter-a" }}
{vm}

[filters.b]
wasm = "{module}"
config = {{ role = "filter-b" }}
{vm}

{extra}

[[routes]]
name = "a"
paths = ["/a"]
upstream = "v1"
filters = ["a"]

[[routes]]
name = "b"
paths = ["/b"]
upstream = "v1"
filters = ["b"]
"""


async def headers_of(
    http: aiohttp.ClientSession, url: str, upstream: RecordingUpstream
) -> dict[str, str]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        assert resp.status == 200
    return upstream.requests[-1].headers


async def test_filters_with_one_vm_id_share_an_instance_with_a_root_context_each(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    module = wasm_file(tmp_path, "shared_vm.wat")
    vm_id = f"shared-{uuid.uuid4().hex[:8]}"
    gw = await start_gateway(sharing_toml(module, upstream.address, vm_id=vm_id))
    seen = [await headers_of(http, gw.url + p, upstream) for p in ("/a", "/b", "/a")]
    assert [h["x-count"] for h in seen] == ["1", "2", "3"]  # one global: one instance
    assert [h["x-config"] for h in seen] == [
        '{"role": "filter-a"}',
        '{"role": "filter-b"}',
        '{"role": "filter-a"}',
    ]
    roots = [h["x-root"] for h in seen]
    assert roots[0] == roots[2] != roots[1]


async def test_filters_without_vm_id_get_an_instance_each(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    module = wasm_file(tmp_path, "shared_vm.wat")
    gw = await start_gateway(sharing_toml(module, upstream.address, vm_id=""))
    seen = [await headers_of(http, gw.url + p, upstream) for p in ("/a", "/b", "/a")]
    assert [h["x-count"] for h in seen] == ["1", "1", "2"]


async def test_service_plugin_ticks_and_feeds_a_filter_of_its_vm_through_a_queue(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    module = wasm_file(tmp_path, "shared_vm.wat")
    vm_id = f"svc-{uuid.uuid4().hex[:8]}"
    service = f"""
[services.ticker]
wasm = "{module}"
vm_id = "{vm_id}"
config = {{ role = "service" }}
"""
    gw = await start_gateway(sharing_toml(module, upstream.address, vm_id=vm_id, extra=service))
    first = await headers_of(http, gw.url + "/a", upstream)
    await asyncio.sleep(0.3)  # the service ticks every 20 ms
    later = await headers_of(http, gw.url + "/a", upstream)
    assert int(later["x-dequeued"]) > int(first["x-dequeued"])
    # Queue items go to the root context that registered the queue (the filters'),
    # never to the service's own; the last one to register was b.
    b = await headers_of(http, gw.url + "/b", upstream)
    assert later["x-ready-root"] == b["x-root"]
    assert gw.gateway is not None
    names = [inst.name for inst in gw.gateway.snapshot.filters()]
    assert "ticker" in names


def test_sharing_filters_must_agree_on_the_vm_settings(tmp_path: Path) -> None:
    module = wasm_file(tmp_path, "shared_vm.wat")
    toml = sharing_toml(module, "127.0.0.1:1", vm_id="one").replace(
        'config = { role = "filter-b" }', 'config = { role = "filter-b" }\nvm_config = "other"'
    )
    config = loads_config(toml, str(tmp_path / "gw.toml"))
    with pytest.raises(ConfigError) as err:
        Snapshot(config, str(tmp_path / "gw.toml"))
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert problem.startswith("filters.b:")
    assert "vm_id 'one'" in problem and "vm_config" in problem


def test_service_needs_a_module(tmp_path: Path) -> None:
    toml = """
[server]
listen = ["127.0.0.1:0"]
[[upstreams]]
name = "v1"
endpoints = ["127.0.0.1:1"]
[default]
upstream = "v1"
[services.ticker]
config = { a = 1 }
"""
    with pytest.raises(ConfigError) as err:
        loads_config(toml, str(tmp_path / "gw.toml"))
    assert any(p.startswith("services.ticker.wasm:") for p in err.value.problems)
