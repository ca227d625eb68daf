"""The CPU budget charged around every callback (core/wasm/plugin.py): by the call
itself on the C path (core/wasm/_crossing_meter.c, settling the common case without
Python), by PluginVm on the ctypes path. Both paths run the same probe in a child
process: a filter whose request callback spins for about two milliseconds is called
until its budget cuts it off; the guest time it got by then must be what the budget
allows (neither much more, nor cut off early), charged across several of the budget's
slots; on the C path, what the meter settled alone reaches the budget when the
instance is dropped after a trap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

WAT = """
(module
  (memory (export "memory") 1)
  (global $spins (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $n i32)
    (local.set $n (global.get $spins))
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (i32.gt_s (local.get $n) (i32.const 0))))
    (i32.const 0))
  (func (export "set_spins") (param $n i32) (global.set $spins (local.get $n)))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (unreachable))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
"""

PROBE = r"""
import json, sys, time
import wasmtime
from core.config import WasmLimits
from core.wasm import vm as wasm_vm
from core.wasm.plugin import PluginVm, WasmUnavailable
from plugin_sdk import Context
from plugin_sdk.testing import make_request

module, _ = wasm_vm.compile_module(wasmtime.wat2wasm(sys.argv[1]))
limits = WasmLimits(cpu_budget=0.05, cpu_window=1.0, cooldown=30.0)  # 50 ms a second
plugin = PluginVm("meter", module, config=b"", limits=limits, deadline_ms=1000)
inst = plugin.ensure()
out = {"boundary": "c" if inst.guest is not None else "ctypes"}

# Spins for about 2 ms a call (calibrated here: machines differ)
spins = 100_000
while True:
    inst.call("set_spins", spins)
    started = time.perf_counter()
    inst.call("proxy_on_request_headers", 1, 0, 1)
    took = time.perf_counter() - started
    if took >= 0.002 or spins > 1 << 29:
        break
    spins *= 2

def request():
    ctx = Context(make_request("GET", "/"))
    started = time.perf_counter()
    stream, _ = plugin.start_stream(ctx, plugin.roots[plugin.root_id], 4, 1)
    took = time.perf_counter() - started
    plugin.done(stream)
    return took

guest_time, calls, refused, slots = 0.0, 0, None, set()
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        slots.add(int(time.monotonic() / plugin.budget.width))
        took = request()
    except WasmUnavailable as exc:
        refused = exc.reason
        break
    guest_time += took
    calls += 1
    time.sleep(0.004)  # spread over several of the budget's tenth-of-a-second slots
out.update(refused=refused, throttles=plugin.throttles, guest_time=guest_time, calls=calls,
           call_time=took, slots=len(slots), cooling=plugin.budget.cooling(time.monotonic()))

# What the C meter settled alone (pending) reaches the budget when a trap drops the instance
plugin2 = PluginVm("meter2", module, config=b"", limits=WasmLimits(cpu_budget=0.9))
inst2 = plugin2.ensure()
inst2.call("set_spins", spins)
# Start in the first half of one of the budget's slots: a request callback that ran
# past the slot's end would be handed to Python at once, leaving nothing pending.
width = plugin2.budget.width
while time.monotonic() % width > width / 2:
    time.sleep(0.002)
stream, _ = plugin2.start_stream(Context(make_request("GET", "/")), plugin2.roots[1], 4, 1)
pending = inst2.guest.pending if inst2.guest is not None else None
used = plugin2.budget.used
try:
    plugin2.call(stream, "proxy_on_response_headers", stream.id, 1, 1)
except wasm_vm.WasmTrap:
    out["trapped"] = True
out.update(pending=pending, used_before=used, used_after=plugin2.budget.used,
           rebuilt_pending=None)
plugin2.ensure()  # rebuilt: a fresh meter
if plugin2.instance.guest is not None:
    out["rebuilt_pending"] = plugin2.instance.guest.pending
plugin.close()
plugin2.close()
print(json.dumps(out))
"""


def probe(*, ctypes_path: bool, cache: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "WASMGATE_WASM_CTYPES"}
    env["WASMGATE_CACHE_DIR"] = str(cache)
    if ctypes_path:
        env["WASMGATE_WASM_CTYPES"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, WAT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("ctypes_path", [False, True], ids=["c", "ctypes"])
def test_each_callback_is_charged_to_the_cpu_budget(ctypes_path: bool, tmp_path: Path) -> None:
    out = probe(ctypes_path=ctypes_path, cache=tmp_path)
    if not ctypes_path and out["boundary"] != "c":
        pytest.skip("the C extension is not built (needs gcc: see test_wasm_crossing.py)")
    assert out["boundary"] == ("ctypes" if ctypes_path else "c")
    # Cut off by the budget (50 ms of guest time a second), once, for the cool-down
    assert out["refused"] == "cpu_budget", out
    assert out["throttles"] == 1, out
    assert 25 < out["cooling"] <= 30, out
    # ... after the time the budget allows: not early (every call counted in full,
    # the meter's settled charges too), not late (none forgotten). The bounds allow
    # for the time a call spends outside the guest (the probe times it from outside).
    assert out["guest_time"] >= 0.05 * 0.9, out
    assert out["guest_time"] <= 0.05 + 3 * out["call_time"] + 0.02, out
    assert out["slots"] >= 2, out  # charges crossed slots (the meter's slow path)
    assert out["trapped"], out
    if ctypes_path:
        assert out["pending"] is None
    else:
        # the C meter settled the request callback alone; the trap's drop hands it over
        # (> 0, not a size: a call calibrated at ~2 ms may run shorter on a busy machine)
        assert out["pending"] > 0.0, out
        assert out["used_before"] < out["pending"], out
        assert out["used_after"] >= out["pending"], out
        assert out["rebuilt_pending"] == 0.0, out


def test_a_rooted_stream_starts_as_a_stream_does() -> None:
    """RootedStream sets Stream's fields itself (one call less per request): the same
    fields, the same starting values, and its own lists and dicts."""
    from core.wasm.host import Stream
    from core.wasm.sharing import Root, RootedStream
    from plugin_sdk import Context
    from plugin_sdk.testing import make_request

    ctx = Context(make_request("GET", "/"))
    plain, rooted = Stream(7, ctx), RootedStream(7, ctx, Root(1, "r", "", b""))
    fields = [name for cls in Stream.__mro__ for name in getattr(cls, "__slots__", ())]
    assert {f: getattr(rooted, f) for f in fields} == {f: getattr(plain, f) for f in fields}
    other = RootedStream(8, ctx, rooted.root)
    assert other.body is not rooted.body and other.properties is not rooted.properties
