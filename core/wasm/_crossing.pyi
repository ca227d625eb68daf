"""Types of the C extension core/wasm/_crossing.c (see its header comment)."""

from collections.abc import Callable

TRAMPOLINE: int
FORGET: int
DEADLINE: int
FUNC_SIZE: int
MEMORY_SIZE: int
VAL_SIZE: int

class Failed(Exception): ...

class Guest:
    def __init__(self, context: int, ticks: int, /) -> None: ...
    @property
    def address(self) -> int: ...
    @property
    def calls(self) -> int: ...
    def set_memory(self, memory: int, /) -> None: ...
    def set_alloc(self, alloc: Callee | None, /) -> None: ...
    def set_log(self, cache: dict[int, bool], levels: tuple[int, ...], /) -> None: ...
    def give(self, alloc: Callee, data: bytes, ptr_ptr: int, size_ptr: int, /) -> int: ...
    def read(self, ptr: int, size: int, /) -> bytes | None: ...
    def set_meter(
        self,
        on_charge: Callable[[float, float, float], tuple[float, float]] | None,
        slot_end: float = ...,
        room: float = ...,
        /,
    ) -> None: ...
    @property
    def pending(self) -> float: ...
    held: bool
    header_bound: int

def ends(on_done: Callee, on_log: Callee, on_delete: Callee, id: int, /) -> int | None: ...

class Callee:
    def __init__(self, guest: Guest, func: int, params: int, results: int, /) -> None: ...
    def __call__(self, *args: int) -> int | None: ...

def setup(
    call_unchecked: int,
    trap_new: int,
    error_new: int,
    increment_epoch: int,
    memory_data: int,
    memory_size: int,
    on_error: Callable[[Callable[..., int | None], BaseException], str | None],
    on_forget: Callable[[int], object],
    main_thread: int,
    /,
) -> None: ...
def entry(
    func: Callable[..., int | None],
    wide: int,
    params: int,
    has_result: bool,
    log_gate: Guest | None = None,
    fields_gate: Guest | None = None,
    op: int = 0,
    /,
) -> int: ...
def clear(env: int, /) -> None: ...
def scan(raw: list[tuple[bytes, bytes]], key: bytes, drop: bool, /) -> tuple[bool, int]: ...
def bad_field(name: bytes, value: bytes | None, /) -> bool: ...
def start_ticker(engine: int, ms: int, owner: object, /) -> None: ...
