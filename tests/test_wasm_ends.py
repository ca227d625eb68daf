"""A stream's last three callbacks as one C call (``Instance.ends``, the C extension's
``ends``, core/wasm/_crossing_calls.c): ``proxy_on_done``, then ``proxy_on_log`` and
``proxy_on_delete`` unless on_done returned false; a trap names the callback that
trapped; each callback keeps its own CPU deadline; the three are charged to the CPU
budget as one call. (The ctypes path calls them one by one: tests/test_wasm_lifecycle.py
and tests/test_wasm_meter.py hold both paths to the same behaviour.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from core.wasm import vm

# on_done returns false for stream 2; on_log traps for stream 3; on_delete spins for 4.
WAT = """
(module
  (import "env" "seen" (func $seen (param i32 i32)))
  (func (export "proxy_on_done") (param $id i32) (result i32)
    (call $seen (i32.const 0) (local.get $id))
    (i32.ne (local.get $id) (i32.const 2)))
  (func (export "proxy_on_log") (param $id i32)
    (call $seen (i32.const 1) (local.get $id))
    (if (i32.eq (local.get $id) (i32.const 3)) (then unreachable)))
  (func (export "proxy_on_delete") (param $id i32)
    (call $seen (i32.const 2) (local.get $id))
    (if (i32.eq (local.get $id) (i32.const 4)) (then (loop $forever (br $forever))))))
"""


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[vm.Instance]:
    if vm._crossing is None:
        pytest.skip("the C path is not built here (make install needs gcc) or is switched off")
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "module-cache"))
    module, _ = vm.compile_module(wasmtime.wat2wasm(WAT))
    seen: list[tuple[int, int]] = []

    def record(which: int, stream: int) -> None:
        seen.append((which, stream))

    inst = vm.Instance(
        module,
        lambda _m, n, _ty: record if n == "seen" else None,
        memory_limit=1 << 20,
        deadline_ms=100,
        name="ends",
    )
    inst.seen = seen  # type: ignore[attr-defined]
    yield inst
    inst.close()


def test_ends_calls_the_three_in_order_and_stops_when_on_done_says_false(
    instance: vm.Instance,
) -> None:
    ends = instance.ends
    assert ends is not None
    assert ends(1) == 1
    assert ends(2) == 0  # the plugin calls proxy_done later: no on_log, no on_delete
    assert instance.seen == [(0, 1), (1, 1), (2, 1), (0, 2)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("stream", "name", "text"),
    [(3, "proxy_on_log", "unreachable"), (4, "proxy_on_delete", "CPU deadline exceeded")],
    ids=["trap-in-on-log", "deadline-in-on-delete"],
)
def test_a_trap_names_the_callback_it_came_from(
    instance: vm.Instance, stream: int, name: str, text: str
) -> None:
    ends = instance.ends
    assert ends is not None
    with pytest.raises(vm.CallFailed) as failed:
        ends(stream)
    index = failed.value.args[2]
    assert ("proxy_on_done", "proxy_on_log", "proxy_on_delete")[index] == name
    trap = str(instance.trap_of(name, failed.value))
    assert name in trap and text in trap
    # each callback had its own deadline: on_done and on_log ran before on_delete's spin
    assert [w for w, s in instance.seen if s == stream] == [0, 1, 2][: index + 1]  # type: ignore[attr-defined]


def test_the_three_are_charged_to_the_budget_as_one_call(instance: vm.Instance) -> None:
    charges: list[float] = []

    def on_charge(now: float, spent: float, pending: float) -> tuple[float, float]:
        charges.append(spent)
        return 0.0, 0.0  # (no slot: every call comes here)

    guest = instance.guest
    assert guest is not None and instance.ends is not None
    guest.set_meter(on_charge, 0.0, 0.0)
    instance.ends(1)
    assert len(charges) == 1 and charges[0] > 0
    guest.set_meter(None)
