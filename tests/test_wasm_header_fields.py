"""The header-map host functions' common cases answered in C (core/wasm/_crossing_headers.c)
and the Python host functions they stand in for (core/wasm/host.py), which stay the
fallback and the definition of the rules: the same sequences of
proxy_get/replace/add/remove_header_map_value, on two copies of one stream, give the same
statuses, the same values handed back and the same maps, request line and status.
One side calls through the guest (the C trampoline), the other calls the Python host
method directly. tests/wasm_modules/fuzz_hostcalls.wat exports a ``fuzz_NAME`` for each."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import WasmLimits
from core.wasm.abi import MapType
from core.wasm.host import Stream
from core.wasm.plugin import PluginVm
from core.wasm.vm import engine
from plugin_sdk import Context, Headers, Response
from plugin_sdk.testing import make_request

WAT = Path(__file__).parent / "wasm_modules" / "fuzz_hostcalls.wat"
KEY, VALUE = 1024, 2048  # where the key and the value go in guest memory
OUT_PTR, OUT_SIZE = 64, 68
MAX_HEADER_BYTES = 400

OPS = {
    "get": "proxy_get_header_map_value",
    "replace": "proxy_replace_header_map_value",
    "add": "proxy_add_header_map_value",
    "remove": "proxy_remove_header_map_value",
}
KEYS = st.sampled_from(
    [
        b"x-a",
        b"X-A",
        b"x-b",
        b"X-New",
        b"x-r",
        b"host",
        b":method",
        b":path",
        b":authority",
        b":scheme",
        b":status",
        b":other",
        b"a:b",
        b"a b",
        b"x\x85",
        b"\xa0",
        b"",
        b"k" * 300,
    ]
) | st.binary(max_size=8)
VALUES = st.sampled_from(
    [b"1", b"", b"v\r\nx: y", b"nul\0", b"PATCH", b"/new?q=2", b"204", b"v" * 500, b"\xff"]
) | st.binary(max_size=8)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(sorted(OPS)),
        st.sampled_from(
            [
                MapType.HTTP_REQUEST_HEADERS,
                MapType.HTTP_RESPONSE_HEADERS,
                MapType.HTTP_REQUEST_TRAILERS,
                77,
            ]
        ),
        KEYS,
        VALUES,
        st.booleans(),  # a key pointer out of bounds
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginVm]:
    module = wasmtime.Module(engine(), wasmtime.wat2wasm(WAT.read_text()))
    limits = WasmLimits(max_header_bytes=MAX_HEADER_BYTES)
    vm = PluginVm(
        f"fields-{uuid.uuid4().hex[:8]}",
        module,
        config=b"{}",
        deadline_ms=10_000,
        limits=limits,
    )
    vm.ensure()
    yield vm
    vm.close()


_ids = itertools.count(1)


def fresh_stream(response: bool) -> Stream:
    req = make_request(
        "POST", "/p?q=1", host="h.test", headers=[("X-A", "1"), ("x-b", "2"), ("x-a", "3")]
    )
    ctx = Context(req, route="r", upstream="u")
    if response:
        ctx.response = Response(200, Headers.of([("x-r", "1"), ("X-R", "2")]), b"")
    return Stream(next(_ids), ctx)


def state(stream: Stream) -> dict[str, Any]:
    ctx = stream.ctx
    req = ctx.request
    resp = ctx.response
    return {
        "request": list(req.headers.raw),
        "line": (req.method, req.wire_target(), req.host),
        "response": None if resp is None else (resp.status, list(resp.headers.raw)),
    }


def run(vm: PluginVm, stream: Stream, steps: list[Any], *, through_guest: bool) -> list[Any]:
    """Each step's status (and the value a get handed back)."""
    inst = vm.instance
    assert inst is not None
    size = inst.memory.data_len(inst.store) if inst.memory is not None else 0
    vm.host.stream = stream
    seen: list[Any] = []
    for op, kind, key, value, key_out_of_bounds in steps:
        assert inst.write(KEY, key) and inst.write(VALUE, value)
        assert inst.write(OUT_PTR, b"\0" * 8)
        key_ptr = size - 1 if key_out_of_bounds else KEY
        args: tuple[int, ...]
        if op == "get":
            args = (int(kind), key_ptr, len(key), OUT_PTR, OUT_SIZE)
        elif op == "remove":
            args = (int(kind), key_ptr, len(key))
        else:
            args = (int(kind), key_ptr, len(key), VALUE, len(value))
        if through_guest:
            status = inst.call(f"fuzz_{OPS[op]}", *args)
            assert status is not None
            status &= 0xFFFFFFFF
        else:
            status = getattr(vm.host, OPS[op])(*args)
        got = None
        if op == "get" and status == 0:
            ptr = int.from_bytes(inst.read(OUT_PTR, 4) or b"", "little")
            length = int.from_bytes(inst.read(OUT_SIZE, 4) or b"", "little")
            got = inst.read(ptr, length) if length else b""
        seen.append((int(status), got))
    return seen


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, response=st.booleans())
def test_c_and_python_header_functions_agree(
    vm: PluginVm, steps: list[Any], response: bool
) -> None:
    through_c, in_python = fresh_stream(response), fresh_stream(response)
    got_c = run(vm, through_c, steps, through_guest=True)
    got_py = run(vm, in_python, steps, through_guest=False)
    assert got_c == got_py
    assert state(through_c) == state(in_python)


def test_common_cases_do_not_call_the_python_host_functions(vm: PluginVm) -> None:
    """Where the extension is built, a read of a field or a pseudo-header, a replace, an
    add and a remove on the request's or response's headers run no Python host function."""
    from core.wasm import vm as vm_module

    if getattr(vm_module, "_crossing", None) is None:
        pytest.skip("the C path is off: WASMGATE_WASM_CTYPES=1, or not built (Debian package gcc)")
    steps = [
        ("get", MapType.HTTP_REQUEST_HEADERS, b":path", b"", False),
        ("get", MapType.HTTP_REQUEST_HEADERS, b":method", b"", False),
        ("get", MapType.HTTP_REQUEST_HEADERS, b"X-B", b"", False),
        ("replace", MapType.HTTP_REQUEST_HEADERS, b"x-a", b"new", False),
        ("add", MapType.HTTP_RESPONSE_HEADERS, b"x-added", b"1", False),
        ("remove", MapType.HTTP_RESPONSE_HEADERS, b"x-r", b"", False),
    ]
    called: list[str] = []

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code.co_name in OPS.values():
            called.append(frame.f_code.co_name)

    # A host compiled by mypyc runs no Python frame the profiler sees; every one of its
    # header functions reads the key through the instance's reader (an attribute of the
    # interpreted Instance), so a wrapper there catches a call either way.
    inst = vm.instance
    assert inst is not None
    reader = inst.reader

    def counting_reader(ptr: int, size: int) -> bytes | None:
        called.append("reader")
        return reader(ptr, size)

    stream = fresh_stream(True)
    inst.reader = counting_reader
    sys.setprofile(profile)
    try:
        seen = run(vm, stream, steps, through_guest=True)
    finally:
        sys.setprofile(None)
        inst.reader = reader
    assert called == []
    assert seen == [(0, b"/p?q=1"), (0, b"POST"), (0, b"2"), (0, None), (0, None), (0, None)]
    assert state(stream)["request"] == [(b"x-b", b"2"), (b"x-a", b"new")]
    assert state(stream)["response"] == (200, [(b"x-added", b"1")])
