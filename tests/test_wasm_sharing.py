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


def service_toml(module: Path, v1: str, vm_id: str) -> str:
    return sharing_toml(module, v1, vm_id=vm_id) + (
        f'\n[services.ticker]\nwasm = "{module}"\nvm_id = "{vm_id}"\n'
        'config = { role = "service" }\n'
    )


async def test_a_rebuilt_shared_vm_starts_every_root_context_again(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    from core.wasm.vm import WasmTrap
    from tests.test_wasm_host import wasm_vm

    module = wasm_file(tmp_path, "shared_vm.wat")
    vm_id = f"rebuilt-{uuid.uuid4().hex[:8]}"
    gw = await start_gateway(sharing_toml(module, upstream.address, vm_id=vm_id))
    before = [await headers_of(http, gw.url + p, upstream) for p in ("/a", "/b")]
    vm = wasm_vm(gw, "a")
    assert wasm_vm(gw, "b") is vm
    vm._trapped(WasmTrap("test"))  # what a trap does to the shared instance
    after = [await headers_of(http, gw.url + p, upstream) for p in ("/b", "/a")]
    assert [h["x-count"] for h in after] == ["1", "2"]  # a fresh instance, still one
    assert [h["x-config"] for h in after] == ['{"role": "filter-b"}', '{"role": "filter-a"}']
    assert [h["x-root"] for h in after] == [before[1]["x-root"], before[0]["x-root"]]
    assert vm.rebuilds == 1


def test_closing_the_snapshot_closes_services_and_shared_vms(tmp_path: Path) -> None:
    module = wasm_file(tmp_path, "shared_vm.wat")
    toml = service_toml(module, "127.0.0.1:1", f"close-{uuid.uuid4().hex[:8]}")
    source = str(tmp_path / "gw.toml")
    snap = Snapshot(loads_config(toml, source), source)
    vms = {id(inst.filter.vm): inst.filter.vm for inst in snap.filters()}  # type: ignore[attr-defined]
    assert len(vms) == 1  # a, b and the service: one VM
    (vm,) = vms.values()
    assert len(vm.roots) == 3
    snap.close()
    assert vm.closed and vm.instance is None and not vm.roots


def test_check_explain_lists_services(tmp_path: Path) -> None:
    from tests.test_cli import wasmgate

    module = wasm_file(tmp_path, "shared_vm.wat")
    path = tmp_path / "gateway.toml"
    path.write_text(service_toml(module, "127.0.0.1:1", "explained"))
    done = wasmgate("check", "-c", str(path), "--explain")
    assert done.returncode == 0, done.stderr
    assert f"service ticker (wasm {module}; vm_id explained; root-only, on no route)" in (
        done.stdout
    )


async def test_admin_plugins_lists_services(
    tmp_path: Path,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    from core import metrics
    from core.admin import Admin

    module = wasm_file(tmp_path, "shared_vm.wat")
    gw = await start_gateway(service_toml(module, upstream.address, f"adm-{uuid.uuid4().hex[:8]}"))
    assert gw.gateway is not None
    api = Admin(
        gw.gateway,
        None,
        token=None,
        render_metrics=lambda: (metrics.render(), metrics.CONTENT_TYPE),
    )
    await api.start("127.0.0.1:0")
    try:
        async with http.get(f"http://127.0.0.1:{api.port}/plugins") as resp:
            filters = {f["name"]: f for f in (await resp.json())["filters"]}
    finally:
        await api.stop()
    assert set(filters) == {"a", "b", "ticker"}
    assert filters["ticker"]["service"] is True and filters["ticker"]["phases"] == []
    assert "service" not in filters["a"]
