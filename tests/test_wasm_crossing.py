"""The host <-> guest boundary (core/wasm/vm.py): the C extension core/wasm/_crossing.c
where it is built, and the ctypes path it replaces (kept as the fallback, forced with
``WASMGATE_WASM_CTYPES=1``). Both paths run the same probe in a child process: calls
with i32 and i64 arguments both ways, a host function that fails (status
INTERNAL_FAILURE) or exits (a trap), memory read in and out of bounds, a guest loop
cut off by the CPU deadline (also when called from a worker thread, which must not
hold the GIL meanwhile), and a call after a trap on a new instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent

WAT = """
(module
  (import "env" "add" (func $add (param i32 i64) (result i64)))
  (import "env" "fail" (func $fail (result i32)))
  (import "env" "bye" (func $bye (param i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "malloc") (param $size i32) (result i32)
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func (export "sum") (param $a i32) (param $b i64) (result i32)
    (i32.wrap_i64 (call $add (local.get $a) (local.get $b))))
  (func (export "negative") (result i32) (i32.const -7))
  (func (export "nothing") (param i32))
  (func (export "fails") (result i32) (call $fail))
  (func (export "exits") (call $bye (i32.const 3)))
  (func (export "spin") (loop $forever (br $forever)))
  (func (export "log") (param $level i32) (param $ptr i32) (param $size i32) (result i32)
    (call $log (local.get $level) (local.get $ptr) (local.get $size))))
"""

PROBE = r"""
import json, logging, sys, threading, time
import wasmtime
from core.wasm import vm

seen = []
def add(a, b):
    seen.append((a, b))
    return a + b
def fail():
    raise RuntimeError("a bug")
def bye(code):
    raise vm._GuestExit(f"proc_exit({code})")
logged = []
def proxy_log(level, ptr, size):  # as core.wasm.host's: asks the logger (fills its cache)
    if logger.isEnabledFor(LEVELS[level]):
        logged.append(level)
    return 0
logger = logging.getLogger("probe")
logger.setLevel(logging.WARNING)
LEVELS = (10, 10, 20, 30, 40, 50)
funcs = {"add": add, "fail": fail, "bye": bye, "proxy_log": proxy_log}
module, _ = vm.compile_module(wasmtime.wat2wasm(sys.argv[1]))

def instance():
    return vm.Instance(module, lambda m, n, ty: funcs.get(n), memory_limit=1 << 20,
                       deadline_ms=100, name="probe", log_gate=(logger, LEVELS))

def trap_of(inst, name):
    started = time.monotonic()
    try:
        inst.call(name)
    except vm.WasmTrap as exc:
        return str(exc), time.monotonic() - started
    return None, time.monotonic() - started

inst = instance()
out = {"boundary": "c" if getattr(vm, "_crossing", None) is not None else "ctypes"}
out["sum"] = inst.call("sum", 0xFFFFFFFF, 1 << 40)
out["seen"] = list(seen)
out["negative"] = inst.call("negative")
out["nothing"] = inst.call("nothing", 5)
out["fails"] = inst.call("fails")
out["exits"] = trap_of(inst, "exits")[0]
# Bytes handed to the guest in memory it allocates; pointers out of bounds refused
out["give"] = [inst.return_bytes(b"abc", 16, 20), inst.return_bytes(b"abc", (1 << 64) - 2, 16),
               inst.return_bytes(b"", 65534, 16)]
ptr, size = inst.read(16, 4), inst.read(20, 4)
out["given"] = inst.read(int.from_bytes(ptr, "little"), int.from_bytes(size, "little")).decode()
# What host functions read strings with (Guest.read on the C path): bounds as read's
out["reader"] = inst.reader != inst.read
out["reads"] = [None if r is None else r.hex() for r in (
    inst.reader(int.from_bytes(ptr, "little"), 3), inst.reader(65535, 1), inst.reader(65535, 2),
    inst.reader(65536, 0), inst.reader(65537, 0), inst.reader(-1, 1), inst.reader(0, -1),
    inst.reader((1 << 64) + 1, 1), inst.reader(1, 1 << 70))]
# proxy_log below the logger's level: answered without the host function on the C path
out["log_below"] = [inst.call("log", 2, 16, 5), inst.call("log", 2, 0xFFFFFF00, 16)]
out["logged_below"] = list(logged)
logger.setLevel(logging.INFO)  # a level changed at run time is seen at once
out["log_at_level"] = inst.call("log", 2, 16, 5)
out["logged_at_level"] = list(logged)
out["spin"], out["spin_s"] = trap_of(inst, "spin")
inst.close()
inst = instance()
out["after"] = inst.call("sum", 2, 3)

# A worker thread's guest call lets the other threads run (a rebuild off the loop).
ticks = 0
worker = threading.Thread(target=lambda: out.__setitem__("worker", trap_of(inst, "spin")[0]))
worker.start()
while worker.is_alive():
    ticks += 1
    time.sleep(0.001)
out["main_ticks"] = ticks
inst.close()
print(json.dumps(out))
"""


def probe(*, ctypes_path: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "WASMGATE_WASM_CTYPES"}
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


@pytest.fixture(autouse=True)
def _module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))


def test_the_c_boundary_is_built_and_used() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler: install the Debian package gcc, then make install")
    assert probe(ctypes_path=False)["boundary"] == "c"


@pytest.mark.parametrize("ctypes_path", [False, True], ids=["c", "ctypes"])
def test_calls_both_ways_traps_and_deadlines(ctypes_path: bool) -> None:
    out = probe(ctypes_path=ctypes_path)
    if ctypes_path:
        assert out["boundary"] == "ctypes"
    # i32 arguments reach the host unsigned, i64 as they are; an i32 result is signed.
    assert out["seen"] == [[0xFFFFFFFF, 1 << 40]]
    assert out["sum"] == -1  # the low 32 bits of 0xFFFFFFFF + 2**40, as an i32
    assert out["negative"] == -7
    assert out["nothing"] is None
    assert out["fails"] == 10  # INTERNAL_FAILURE: a host bug does not trap the guest
    assert out["give"] == [True, False, False]
    assert out["given"] == "abc"
    assert out["reader"] is not ctypes_path
    assert out["reads"] == ["616263", "00", None, "", None, None, None, None, None]
    if not ctypes_path:
        assert out["log_below"] == [0, 6]  # OK, and INVALID_MEMORY_ACCESS out of bounds
        assert out["logged_below"] == []
    assert out["log_at_level"] == 0
    assert out["logged_at_level"][-1] == 2
    assert "proc_exit(3)" in out["exits"]
    assert "CPU deadline exceeded" in out["spin"]
    assert out["spin_s"] < 5  # a 100 ms deadline: one to two of them, never a hang
    assert out["after"] == 5
    assert "CPU deadline exceeded" in out["worker"]
    assert out["main_ticks"] > 10  # the main thread ran while the worker's guest spun


BYTES = st.binary(max_size=6) | st.sampled_from([b"x-a", b"X-A", b"a:b", b"a b", b"\x85", b"\xa0"])


@settings(max_examples=300, deadline=None)
@given(
    name=BYTES,
    value=st.none() | BYTES,
    raw=st.lists(st.tuples(BYTES, BYTES), max_size=6),
    drop=st.booleans(),
)
def test_the_c_field_checks_agree_with_the_python_ones(
    name: bytes, value: bytes | None, raw: list[tuple[bytes, bytes]], drop: bool
) -> None:
    """core.wasm.fields in C (what a header edit runs) and its Python fallback."""
    from core.wasm import fields

    if fields.scan is fields._scan:
        pytest.skip("the C extension is not built (no C compiler: Debian package gcc)")
    assert fields.bad_field(name, value) == fields._bad_field(name, value)
    key = name.lower()
    assert fields.scan(raw, key, drop) == fields._scan(raw, key, drop)


ENGINE_KEPT = """
import gc, sys, time, weakref
from core.wasm import vm
if vm._crossing is None:
    print("no-c"); sys.exit(0)
eng = vm.engine()
ref = weakref.ref(eng)
del eng
vm._engine = None  # what interpreter exit does to the module's globals
gc.collect()
time.sleep(vm.EPOCH_MS * 5 / 1000)  # the native ticker runs on meanwhile
print("alive" if ref() is not None else "freed")
"""


def test_the_native_epoch_ticker_keeps_its_engine() -> None:
    # The ticker thread advances the engine's epoch until the process ends. When the
    # last Python reference went (module globals cleared at exit), wasmtime freed the
    # engine under it: a crash (exit status -11) at interpreter exit, seen with
    # core/wasm compiled by mypyc, whose modules tear down in another order.
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_KEPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no-c":
        pytest.skip("the C extension is not built (no C compiler: Debian package gcc)")
    assert done.stdout.strip() == "alive"
