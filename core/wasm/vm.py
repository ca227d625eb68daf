"""The one module that imports wasmtime: compiling, caching and running Wasm modules.

Speed matters here (a Proxy-Wasm request makes seven to nine calls into the guest and
some host-function calls back), so calls in both directions go through wasmtime's
*unchecked* C API (raw 16-byte value slots), by one of two paths:

- **The C path** (:mod:`core.wasm._crossing`, the C extension ``core/wasm/_crossing.c``
  that ``pip install`` builds where a C compiler is): an export is a ``Callee`` that
  writes its int arguments into the slots and calls ``wasmtime_func_call_unchecked``;
  every host function is served by one C trampoline that turns the slots into ints and
  calls the Python function with ``PyObject_Vectorcall``. It needs no wasmtime
  headers: it gets the C functions' addresses from wasmtime-py's loaded library
  (:func:`_crossing.setup`), and refuses to load when the sizes of the types it
  declares differ from wasmtime-py's. Two host-side jobs are done there entirely:
  ``proxy_log`` below the logger's level (the pointer checked against the memory, the
  answer read from the logger's own ``isEnabledFor`` cache, so a level changed at run
  time counts at once), and returning bytes to the guest (``Guest.give``: the guest's
  allocator called, the bytes copied, the address and size stored). A top-level call
  times itself and charges the filter's CPU budget (``Guest.set_meter``, which
  :class:`~core.wasm.plugin.PluginVm` sets; not for :meth:`Instance.call`, the start
  functions' path), Python only when a new slot begins or the budget runs out. A
  stream's last three callbacks (``proxy_on_done``, ``proxy_on_log``,
  ``proxy_on_delete``) go as one C call, ``Instance.ends``, charged once. A call
  from the main thread keeps the GIL while the guest runs; a call from another thread
  (a rebuild in a worker) releases it.
- **The ctypes path** (the extension not built, or ``WASMGATE_WASM_CTYPES=1``): the
  same calls through ctypes, arguments packed with one precompiled struct per
  signature, one ctypes callback dispatching every host function; about 50 % more
  instructions per request for a header filter.

Host functions read and write guest memory through a memoryview, not through ctypes
calls: the engine never moves a linear memory (``memory_may_move = False``), so the
view stays valid as the memory grows, and its size is looked up again only when an
access reaches past what the view covers.

Sandbox: every module gets its own Store with a linear-memory cap, and every call from
the host runs under an epoch deadline: the engine's epoch advances every ``EPOCH_MS``
(from a native thread on the C path, since a looping guest may hold the GIL; from a
Python daemon thread on the ctypes path, which releases the GIL during calls), and a
callback renews the deadline for calls that started since it last ran (see
``_deadline_impl``; in C on the C path), so an infinite loop traps within two
deadlines. Any trap — deadline, memory, ``unreachable`` — is raised as
:class:`WasmTrap`; the caller throws the instance away and builds a new one.

Instances may be created in worker threads (a rebuild after a trap runs off the event
loop): the Engine is shared and thread-safe, a Store is only ever used by one thread at
a time, and the host-function table is filled under a lock.

Compiled modules are cached on disk (wasmtime's serialize/deserialize), keyed by the
module's sha256 and the wasmtime version, so a restart or a reload is fast.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _bindings
from wasmtime import _ffi as ffi

from core.errors import PluginError

try:  # the boundary in C (core/wasm/_crossing.c), built by `pip install` where gcc is
    from core.wasm import _crossing
except ImportError:  # not built: the ctypes path below does the same, slower
    _crossing = None  # type: ignore[assignment]
_C_TYPES = (ffi.wasmtime_func_t, ffi.wasmtime_memory_t, ffi.wasmtime_val_raw_t)
if _crossing is not None and (
    os.environ.get("WASMGATE_WASM_CTYPES")  # force the ctypes path (tests, comparisons)
    # a wasmtime whose C types differ from those _crossing.c declares
    or tuple(ctypes.sizeof(t) for t in _C_TYPES)
    != (_crossing.FUNC_SIZE, _crossing.MEMORY_SIZE, _crossing.VAL_SIZE)
):
    _crossing = None  # type: ignore[assignment]

log = logging.getLogger("wasmgate.wasm")

EPOCH_MS = 5  # how often the engine's epoch advances (deadline granularity)
ENGINE_TAG = "epoch-fixedmem"  # the engine settings a cached compiled module was made for
try:
    WASMTIME_VERSION = metadata.version("wasmtime")
except metadata.PackageNotFoundError:  # pragma: no cover - wasmtime imported, so present
    WASMTIME_VERSION = "unknown"

_VAL = ffi.wasmtime_val_raw_t
_SLOT_BYTES = ctypes.sizeof(_VAL)  # a raw value is 16 bytes

# Our own prototypes of the hot C functions (indexing the DLL gives fresh function
# objects, so wasmtime-py's own are untouched): integer results, no wrapper layer.
_dll: ctypes.CDLL = getattr(_bindings, "dll")  # noqa: B009 (not re-exported)
# No argtypes here: the arguments are ctypes objects made once (per instance and per
# export), which ctypes passes as they are; converting five Python ints through
# argtypes costs several times the call itself.
_call_unchecked = _dll["wasmtime_func_call_unchecked"]
_call_unchecked.restype = ctypes.c_void_p
_memory_data = _dll["wasmtime_memory_data"]
_memory_data.restype = ctypes.c_void_p
_memory_data.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_memory_size = _dll["wasmtime_memory_data_size"]
_memory_size.restype = ctypes.c_size_t
_memory_size.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
# Writers of n arguments into raw slots (u64 each), and the reader of an i32 result.
_ARGS = [struct.Struct("<" + "Q8x" * n).pack_into for n in range(32)]
_RESULT = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class WasmTrap(PluginError):
    """A Wasm instance trapped (deadline, memory cap, unreachable, ...)."""


class WasmLoadError(PluginError):
    """A module cannot be compiled or instantiated."""


class _NeverRaised(Exception):
    pass


# What an export's ``callee`` raises when the call traps (see Instance.trap_of).
CallFailed: type[Exception] = _NeverRaised if _crossing is None else _crossing.Failed


# ----------------------------------------------------------------------- the engine

_engine: wasmtime.Engine | None = None
_engine_pid = 0
_engine_lock = threading.Lock()


def engine() -> wasmtime.Engine:
    """The process-wide engine (epoch interruption on), started on first use.

    A forked worker makes its own: the parent's epoch thread does not survive fork.
    """
    global _engine, _engine_pid
    with _engine_lock:
        if _engine is None or _engine_pid != os.getpid():
            _engine_pid = os.getpid()
            config = wasmtime.Config()
            config.epoch_interruption = True
            # Linear memories grow in place (a 32-bit memory's 4 GiB is reserved up
            # front), so a memoryview of one stays valid: see Instance._refresh.
            config.memory_may_move = False
            _engine = wasmtime.Engine(config)
            if _crossing is not None:
                # A native thread: a guest looping in a call that holds the GIL (the C
                # path keeps it on the main thread) must still see the epoch advance.
                # The thread keeps a reference to the engine: it ticks until the process
                # ends, and at exit wasmtime would otherwise free the engine under it.
                address = ctypes.cast(_engine.ptr(), ctypes.c_void_p).value or 0
                _crossing.start_ticker(address, EPOCH_MS, _engine)
            else:
                ticker = threading.Thread(
                    target=_tick_epochs, args=(_engine,), name="wasm-epoch", daemon=True
                )
                ticker.start()
        return _engine


def _tick_epochs(eng: wasmtime.Engine) -> None:
    # ctypes releases the GIL while Wasm runs, so this thread keeps ticking even when a
    # guest is stuck in a loop.
    event = threading.Event()
    while True:
        event.wait(EPOCH_MS / 1000)
        eng.increment_epoch()


def cache_dir() -> Path:
    base = os.environ.get("WASMGATE_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "wasmgate" / "modules"


def compile_module(wasm: bytes, *, source: str = "<module>") -> tuple[wasmtime.Module, str]:
    """Compile ``wasm`` (or load it from the disk cache); (module, sha256 hex)."""
    digest = hashlib.sha256(wasm).hexdigest()
    eng = engine()
    cached = cache_dir() / f"{digest}-wasmtime{WASMTIME_VERSION}-{ENGINE_TAG}.cwasm"
    if cached.exists():
        try:
            return wasmtime.Module.deserialize_file(eng, str(cached)), digest
        except Exception as exc:  # stale or foreign cache entry: compile again
            log.warning("ignoring unusable cached module %s: %s", cached, exc)
    try:
        module = wasmtime.Module(eng, wasm)
    except Exception as exc:
        raise WasmLoadError(f"{source}: not a valid Wasm module: {exc}") from None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as tmp:
            tmp.write(module.serialize())
        os.replace(tmp.name, cached)
    except OSError as exc:
        log.warning("cannot cache the compiled module in %s: %s", cached.parent, exc)
    return module, digest


# ----------------------------------------------------------------------- host functions

# One C callback serves every host function; ``env`` is an index into _HOST_FUNCS.
HostFunc = Callable[..., int | None]
# env -> (function, reads its arguments from the slots, writes its result there (None
#         for no result), the ctypes type of its slots, the instance it serves)
_HOST_FUNCS: dict[int, tuple[HostFunc, Any, Any, Any, Instance]] = {}
_next_id = 0
_register_lock = threading.Lock()  # instances are also built in worker threads
_MASK64 = 0xFFFFFFFFFFFFFFFF


def _layout(wide: Sequence[bool]) -> struct.Struct:
    """How values sit in raw slots: one per 16-byte slot, an i32 as its low 4 bytes (read
    unsigned), an i64 as its low 8."""
    return struct.Struct("<" + "".join("Q8x" if w else "I12x" for w in wide))


def _dispatch_impl(env: int | None, _caller: int | None, slots: int | None, count: int) -> int:
    entry = _HOST_FUNCS.get(env or 0)
    if entry is None:  # an instance closed under a call (should not happen): trap it
        return _trap("host function of a closed instance")
    func, unpack, pack, view, _inst = entry
    raw = view.from_address(slots or 0)
    try:
        result = func(*unpack(raw))
    except _GuestExit as exc:
        return _trap(str(exc))
    except Exception as exc:  # a bug of ours must not crash the process
        log.error("host function %s failed: %r", getattr(func, "__name__", func), exc)
        result = 10  # INTERNAL_FAILURE
    if pack is not None:
        pack(raw, 0, (result or 0) & _MASK64)
    return 0


# The callback takes plain addresses (cheaper than ctypes pointer objects) and is
# cast once to the prototype the linker expects.
_dispatch_c = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)(_dispatch_impl)
_dispatch = ctypes.cast(_dispatch_c, ffi.wasmtime_func_unchecked_callback_t)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _forget(env: int | None) -> None:
    _HOST_FUNCS.pop(env or 0, None)


# The epoch deadline is not set before every call (a ctypes call each time): it is
# set once, and when the epoch passes it wasmtime asks this callback, which lets the
# guest go on for another deadline unless the same top-level call was already running
# when it last asked (then the call has had at least one full deadline: it traps).
_DEADLINE_TEXT = "CPU deadline exceeded (epoch interrupt)"
_DEADLINES: dict[int, Instance] = {}


def _deadline_impl(_ctx: int | None, env: int | None, delta: Any, kind: Any) -> int:
    inst = _DEADLINES.get(env or 0)
    if inst is None or inst._calls == inst._calls_seen:
        data = _DEADLINE_TEXT.encode()
        error = ffi.wasmtime_error_new(ctypes.create_string_buffer(data))
        return ctypes.cast(error, ctypes.c_void_p).value or 0
    inst._calls_seen = inst._calls
    delta[0] = inst._ticks
    kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
    return 0


_deadline_c = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)(_deadline_impl)
_set_deadline_callback = _dll["wasmtime_store_epoch_deadline_callback"]
_set_deadline_callback.restype = None
_set_deadline_callback.argtypes = [ctypes.c_void_p] * 4


class _GuestExit(Exception):
    """Raised by a host function to trap the guest (proc_exit)."""


def _trap(message: str) -> int:
    data = message.encode()
    trap = ffi.wasmtime_trap_new(data, len(data))
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def _register(func: HostFunc, wide: tuple[bool, ...], has_result: bool, inst: Instance) -> int:
    global _next_id
    n = max(len(wide), int(has_result), 1)  # slots the C side passes
    view = ctypes.c_char * (n * _SLOT_BYTES)
    pack = _layout((True,)).pack_into if has_result else None
    with _register_lock:
        _next_id += 1
        _HOST_FUNCS[_next_id] = (func, _layout(wide).unpack_from, pack, view, inst)
        return _next_id


# The header-map host functions the C path answers in their common cases (see
# core/wasm/_crossing_headers.c), by op number, and their two ABI signatures.
_FIELDS_REMOVE = 4
_FIELD_OPS = {
    "proxy_get_header_map_value": 1,
    "proxy_replace_header_map_value": 2,
    "proxy_add_header_map_value": 3,
    "proxy_remove_header_map_value": _FIELDS_REMOVE,
}
_FIELD_SIGNATURES = ("(i32, i32, i32, i32, i32) -> i32", "(i32, i32, i32) -> i32")


def _host_failed(func: HostFunc, exc: BaseException) -> str | None:
    """What the C trampoline does with a host function's exception: the text to trap
    the guest with (proc_exit), or None for status INTERNAL_FAILURE (a bug of ours)."""
    if isinstance(exc, _GuestExit):
        return str(exc)
    log.error("host function %s failed: %r", getattr(func, "__name__", func), exc)
    return None


def _address(name: str) -> int:
    return ctypes.cast(_dll[name], ctypes.c_void_p).value or 0


if _crossing is not None:
    _crossing.setup(
        _address("wasmtime_func_call_unchecked"),
        _address("wasmtime_trap_new"),
        _address("wasmtime_error_new"),
        _address("wasmtime_engine_increment_epoch"),
        _address("wasmtime_memory_data"),
        _address("wasmtime_memory_data_size"),
        _host_failed,
        lambda env: _HOST_FUNCS.pop(env, None),  # as _forget does on the ctypes path
        threading.main_thread().ident or 0,
    )
    _trampoline = ffi.wasmtime_func_unchecked_callback_t(_crossing.TRAMPOLINE)
    _forget_c = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_crossing.FORGET)


# ----------------------------------------------------------------------- instances


class _Export:
    __slots__ = (
        "c_func",
        "c_n",
        "c_slots",
        "callee",
        "func",
        "n",
        "nparams",
        "nresults",
        "slots",
    )

    def __init__(self, func: wasmtime.Func, ty: wasmtime.FuncType, guest: Any) -> None:
        self.func = func._func
        self.nparams = len(ty.params)
        self.nresults = len(ty.results)
        # The C path's callable (None on the ctypes path): ints in, an i32 or None out.
        self.callee: Any = None
        if guest is not None:
            address = ctypes.addressof(self.func)
            self.callee = _crossing.Callee(guest, address, self.nparams, self.nresults)
        self.n = max(self.nparams, self.nresults, 1)
        self.slots = (_VAL * self.n)()
        # wasmtime_func_call_unchecked's arguments, as ready-made ctypes values
        self.c_func = ctypes.c_void_p(ctypes.addressof(self.func))
        self.c_slots = ctypes.c_void_p(ctypes.addressof(self.slots))
        self.c_n = ctypes.c_size_t(self.n)


Resolver = Callable[[str, str, wasmtime.FuncType], HostFunc | None]


class Instance:
    """One instantiated module in its own Store, with fast calls both ways."""

    def __init__(
        self,
        module: wasmtime.Module,
        resolve: Resolver,
        *,
        memory_limit: int,
        deadline_ms: int,
        name: str = "wasm",
        log_gate: tuple[logging.Logger, tuple[int, ...]] | None = None,
    ) -> None:
        """``log_gate``: the logger ``env.proxy_log`` logs to and the Python level of
        each Proxy-Wasm level (0 to 5); with it, a call below the logger's level is
        answered on the C path without calling the host function."""
        self.name = name
        eng = engine()
        self.store = wasmtime.Store(eng)
        self.store.set_limits(memory_size=memory_limit)
        self._ticks = max(1, -(-deadline_ms // EPOCH_MS))
        self._calls = 0  # top-level calls into the guest so far (see _deadline_impl)
        self._calls_seen = -1
        self._ctx = self.store._context()
        self._ctx_addr = ctypes.cast(self._ctx, ctypes.c_void_p).value
        self._trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._c_trap = ctypes.c_void_p(ctypes.addressof(self._trap))
        self._c_ctx = ctypes.c_void_p(self._ctx_addr)
        self._depth = 0
        # The C path's per-instance state (calls counted for the deadline), or None.
        self._guest: Any = (
            None if _crossing is None else _crossing.Guest(self._ctx_addr or 0, self._ticks)
        )
        gate = None
        if self._guest is not None and log_gate is not None:
            logger, levels = log_gate
            cache = getattr(logger, "_cache", None)  # what isEnabledFor answered so far
            if isinstance(cache, dict):
                self._guest.set_log(cache, levels)
                gate = self._guest
        self._mem_addr = 0
        #: read(ptr, size) -> bytes | None, in C when the extension is built (a bound
        #: method of the Guest; else :meth:`read`).
        self.reader: Callable[[int, int], bytes | None] = self.read
        # A view of the guest's memory as far as it reached when last looked at (see
        # _refresh); memories only grow, and in place, so it stays valid as it is.
        self._mem: memoryview = memoryview(b"")
        self._mem_size = 0
        # Host functions this instance registered. Their entries point back at the
        # plugin (and so at this Store) from a module-level table, a cycle through C
        # that Python's collector cannot see: close() breaks it.
        self._envs: list[int] = []
        linker = wasmtime.Linker(eng)
        # A linker holds one definition per (module, name), and a module may import the
        # same pair more than once (Go's runtime and syscall package both import
        # wasi_snapshot_preview1.fd_write): the first definition serves every copy.
        defined: dict[tuple[str, str], str] = {}
        for imp in module.imports:
            ty = imp.type
            key = (imp.module, imp.name or "")
            if not isinstance(ty, wasmtime.FuncType):
                raise WasmLoadError(f"{name}: {_unsatisfiable(key, ty)}")
            signature = _signature(ty)
            seen = defined.get(key)
            if seen is not None:
                if seen != signature:
                    raise WasmLoadError(
                        f"{name}: cannot link {key[0]}.{key[1]}: the module imports it "
                        f"twice with different types, {seen} and {signature}; one host "
                        "function has one type"
                    )
                continue
            defined[key] = signature
            func = resolve(key[0], key[1], ty) or _unimplemented(*key)
            wide = tuple(str(p) == "i64" for p in ty.params)
            if _crossing is not None:
                mask = sum(1 << i for i, w in enumerate(wide) if w)
                logs = key == ("env", "proxy_log") and signature == "(i32, i32, i32) -> i32"
                op = _FIELD_OPS.get(key[1], 0) if key[0] == "env" else 0
                if op and signature != _FIELD_SIGNATURES[op == _FIELDS_REMOVE]:
                    op = 0
                env = _crossing.entry(
                    func,
                    mask,
                    len(wide),
                    bool(ty.results),
                    gate if logs else None,
                    self._guest if op else None,
                    op,
                )
                _HOST_FUNCS[env] = (func, None, None, None, self)
                callback, forget = _trampoline, _forget_c
            else:
                env = _register(func, wide, bool(ty.results), self)
                callback, forget = _dispatch, _forget
            self._envs.append(env)
            mod, nm = key[0].encode(), key[1].encode()
            error = ffi.wasmtime_linker_define_func_unchecked(
                linker.ptr(), mod, len(mod), nm, len(nm), ty.ptr(), callback, env, forget
            )
            if error:
                reason = str(wasmtime.WasmtimeError._from_ptr(error)).strip().splitlines()
                raise WasmLoadError(
                    f"{name}: cannot define {key[0]}.{key[1]} {signature}: "
                    f"{reason[-1] if reason else 'refused by the linker'}"
                )
        self.store.set_epoch_deadline(self._ticks * 40)  # start functions get more time
        try:
            self._instance = linker.instantiate(self.store, module)
        except wasmtime.Trap as exc:
            raise WasmTrap(f"{name}: trapped while starting: {_trap_text(exc)}") from None
        except Exception as exc:
            raise WasmLoadError(f"{name}: cannot instantiate: {exc}") from None
        # From now on the deadline callback keeps the deadline (see _deadline_impl).
        store_ptr = ctypes.cast(self.store.ptr(), ctypes.c_void_p).value
        if self._guest is not None:
            self._deadline_env = 0
            _set_deadline_callback(store_ptr, _crossing.DEADLINE, self._guest.address, None)
        else:
            self._deadline_env = id(self)
            _DEADLINES[self._deadline_env] = self
            _set_deadline_callback(
                store_ptr, ctypes.cast(_deadline_c, ctypes.c_void_p).value, self._deadline_env, None
            )
        self.store.set_epoch_deadline(self._ticks)
        self.exports: dict[str, _Export] = {}
        self.memory: wasmtime.Memory | None = None
        for export_name, item in self._instance.exports(self.store).items():
            if isinstance(item, wasmtime.Func):
                self.exports[export_name] = _Export(item, item.type(self.store), self._guest)
            elif isinstance(item, wasmtime.Memory) and export_name == "memory":
                self.memory = item
                self._mem_addr = ctypes.addressof(item._memory)
                if self._guest is not None:
                    self._guest.set_memory(self._mem_addr)
                    self.reader = self._guest.read
        self._alloc_name = "proxy_on_memory_allocate"
        self._alloc = self.exports.get(self._alloc_name)
        if self._alloc is None:
            self._alloc_name = "malloc"
            self._alloc = self.exports.get("malloc")
        if self._guest is not None:
            self._guest.set_alloc(self._alloc.callee if self._alloc is not None else None)
        # A stream's first two and last three callbacks, as the C path's callees when
        # the module has all of them with the ABI's arity (else None: the general way).
        self.opens = self._callees(("proxy_on_context_create", 2), ("proxy_on_request_headers", 3))
        # ... and the last three as one C call, ends(id) (see _crossing_calls.c's
        # call_ends): on_done's result; a trap raises CallFailed(error, trap, index).
        ends = self._callees(("proxy_on_done", 1), ("proxy_on_log", 1), ("proxy_on_delete", 1))
        self.ends: Callable[[int], int | None] | None = (
            None if ends is None else partial(_crossing.ends, *ends)
        )

    def _callees(self, *wanted: tuple[str, int]) -> tuple[Any, ...] | None:
        found = []
        for name, nparams in wanted:
            export = self.exports.get(name)
            if export is None or export.callee is None or export.nparams != nparams:
                return None
            found.append(export.callee)
        return tuple(found)

    def close(self) -> None:
        """Release the instance: its host-function entries, exports and memory, so
        the Store (and the compiled module's mapping) are freed with this object."""
        for env in self._envs:
            if _HOST_FUNCS.pop(env, None) is not None and self._guest is not None:
                _crossing.clear(env)  # its function is called no more, and released
        self._envs.clear()
        _DEADLINES.pop(getattr(self, "_deadline_env", 0), None)
        self.exports.clear()
        self.opens = self.ends = None
        self.memory = None
        self._alloc = None
        if self._guest is not None:
            self._guest.set_alloc(None)  # (a Callee holds its Guest: no cycle left)
            self._guest.set_meter(None)  # (its callback holds the plugin)
        self._mem = memoryview(b"")  # never a view of a freed Store's memory
        self._mem_size = 0

    @property
    def guest(self) -> Any:
        """The C path's per-instance state (a ``_crossing.Guest``), or None."""
        return self._guest

    def has(self, name: str) -> bool:
        return name in self.exports

    def arity(self, name: str) -> int:
        return self.exports[name].nparams

    def call(self, name: str, *args: int) -> int | None:
        """Call export ``name`` with integer arguments; raises WasmTrap. Not charged to a
        CPU budget (start functions; :class:`~core.wasm.plugin.PluginVm` meters its
        callbacks)."""
        export = self.exports.get(name)
        if export is None:
            return None
        guest = self._guest
        if guest is None or guest.held:
            return self.call_export(export, name, args)
        guest.held = True
        try:
            return self.call_export(export, name, args)
        finally:
            guest.held = False

    def call_export(self, export: _Export, name: str, args: Sequence[int]) -> int | None:
        """:meth:`call` for an export already looked up (the hot path)."""
        callee = export.callee
        if callee is not None:
            try:
                return callee(*args)  # type: ignore[no-any-return]
            except CallFailed as exc:
                raise self.trap_of(name, exc) from None
        if args:
            # Arguments are non-negative (ids, sizes, flags): one u64 per slot fits both
            # i32 and i64 parameters.
            _ARGS[len(args)](export.slots, 0, *args)
        if self._depth == 0:
            self._calls += 1
        self._depth += 1
        try:
            error = _call_unchecked(
                self._c_ctx, export.c_func, export.c_slots, export.c_n, self._c_trap
            )
        finally:
            self._depth -= 1
        if error or self._trap:
            raise WasmTrap(f"{self.name}: {name} trapped: {self._failure(error)}")
        if not export.nresults:
            return None
        return int(_RESULT(export.slots)[0])  # an i32, signed

    def trap_of(self, name: str, failed: Exception) -> WasmTrap:
        """The WasmTrap for a :data:`CallFailed` raised by export ``name``'s callee."""
        error, trap = failed.args[:2]
        return WasmTrap(f"{self.name}: {name} trapped: {_failure_text(error, trap)}")

    def _failure(self, error: Any) -> str:
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._trap = ctypes.POINTER(ffi.wasm_trap_t)()
            self._c_trap = ctypes.c_void_p(ctypes.addressof(self._trap))
            return _trap_text(trap)
        pointer = ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
        text = str(wasmtime.WasmtimeError._from_ptr(pointer))
        return _DEADLINE_TEXT if _DEADLINE_TEXT in text else text

    # -- linear memory

    def _refresh(self) -> int:
        """The memory's current size, looked up in wasmtime (and the view rebuilt when
        it grew). Only needed when an access goes past what the view covers: guest code
        may have grown the memory since, never shrunk it, and the engine never moves a
        memory (``memory_may_move = False``), so the old view stays valid meanwhile."""
        if not self._mem_addr:
            return 0
        size = int(_memory_size(self._ctx_addr, self._mem_addr))
        if size != self._mem_size:
            base = _memory_data(self._ctx_addr, self._mem_addr) or 0
            self._mem = memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")
            self._mem_size = size
        return size

    def in_bounds(self, ptr: int, size: int) -> bool:
        if ptr < 0 or size < 0:
            return False
        end = ptr + size
        return end <= self._mem_size or end <= self._refresh()

    def read(self, ptr: int, size: int) -> bytes | None:
        """``size`` bytes at ``ptr``, or None when out of bounds."""
        end = ptr + size
        if ptr < 0 or size < 0 or (end > self._mem_size and end > self._refresh()):
            return None
        return self._mem[ptr:end].tobytes()

    def write(self, ptr: int, data: bytes) -> bool:
        end = ptr + len(data)
        if ptr < 0 or (end > self._mem_size and end > self._refresh()):
            return False
        self._mem[ptr:end] = data
        return True

    def write_u32(self, ptr: int, value: int) -> bool:
        if ptr < 0 or (ptr + 4 > self._mem_size and ptr + 4 > self._refresh()):
            return False
        _U32.pack_into(self._mem, ptr, value & 0xFFFFFFFF)
        return True

    def write_u64(self, ptr: int, value: int) -> bool:
        if ptr < 0 or (ptr + 8 > self._mem_size and ptr + 8 > self._refresh()):
            return False
        _U64.pack_into(self._mem, ptr, value & 0xFFFFFFFFFFFFFFFF)
        return True

    def allocate(self, data: bytes) -> int | None:
        """Copy ``data`` into guest memory it allocated; the pointer, or None."""
        alloc = self._alloc
        if alloc is None:
            return None
        ptr = self.call_export(alloc, self._alloc_name, (len(data) or 1,))
        if not ptr:
            return None
        ptr &= 0xFFFFFFFF
        return ptr if self.write(ptr, data) else None

    def return_bytes(self, data: bytes, ptr_ptr: int, size_ptr: int) -> bool | None:
        """Copy ``data`` into memory the guest allocates and store its address and size
        at ``ptr_ptr`` / ``size_ptr`` (zeros for empty data): True; None when the guest
        cannot allocate; False when a pointer is out of bounds."""
        alloc = self._alloc
        if self._guest is not None and alloc is not None:  # the C path: one call
            try:
                status = self._guest.give(alloc.callee, data, ptr_ptr, size_ptr)
            except CallFailed as exc:
                raise self.trap_of(self._alloc_name, exc) from None
            return True if status == 0 else None if status == 10 else False
        ptr: int | None = 0
        if data:
            ptr = self.allocate(data)
            if ptr is None:
                return None
        mem_size = self._mem_size
        if ptr_ptr < 0 or size_ptr < 0 or ptr_ptr + 4 > mem_size or size_ptr + 4 > mem_size:
            mem_size = self._refresh()
            if ptr_ptr < 0 or size_ptr < 0 or ptr_ptr + 4 > mem_size or size_ptr + 4 > mem_size:
                return False
        _U32.pack_into(self._mem, ptr_ptr, ptr)
        _U32.pack_into(self._mem, size_ptr, len(data))
        return True


def _failure_text(error: int, trap: int) -> str:
    """Why a call on the C path failed: its trap, or its error (addresses it owns)."""
    if trap:
        return _trap_text(
            wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
        )
    pointer = ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
    text = str(wasmtime.WasmtimeError._from_ptr(pointer))
    return _DEADLINE_TEXT if _DEADLINE_TEXT in text else text


def _trap_text(trap: Any) -> str:
    """A one-line reason: the trap code (interrupt = deadline, unreachable, ...) and the
    last line of wasmtime's message, which names the cause."""
    code = getattr(trap, "trap_code", None)
    message = (getattr(trap, "message", None) or str(trap)).strip().splitlines()
    reason = message[-1].strip() if message else "trap"
    if code is not None:
        name = getattr(code, "name", str(code)).lower()
        if name == "interrupt":
            return "CPU deadline exceeded (epoch interrupt)"
        return f"{name}: {reason}" if name not in reason.lower() else reason
    return reason


def _signature(ty: wasmtime.FuncType) -> str:
    params = ", ".join(str(p) for p in ty.params)
    results = ", ".join(str(r) for r in ty.results) or "()"
    return f"({params}) -> {results}"


def _unsatisfiable(key: tuple[str, str], ty: Any) -> str:
    """Why a non-function import cannot be linked (the host provides only functions)."""
    kind = {
        wasmtime.MemoryType: "a memory",
        wasmtime.TableType: "a table",
        wasmtime.GlobalType: "a global",
    }.get(type(ty), f"a {type(ty).__name__}")
    hint = " (build it to export its own memory)" if kind == "a memory" else ""
    return (
        f"cannot link {key[0]}.{key[1]}: the module imports {kind}, but a Proxy-Wasm "
        f"host provides only functions{hint}"
    )


def _unimplemented(module: str, name: str) -> HostFunc:
    # WASI code expects an errno: NOSYS (52) says "this system lacks the call", as a
    # WASI runtime without it would; to a Proxy-Wasm SDK, status UNIMPLEMENTED (12).
    status = 52 if module.startswith("wasi_") else 12

    def stub(*_args: int) -> int:
        return status

    stub.__name__ = f"unimplemented:{module}.{name}"
    return stub


def exported_markers(module: wasmtime.Module, markers: Sequence[str]) -> list[str]:
    names = {e.name for e in module.exports}
    return [m for m in markers if m in names]
