"""The helper registry: one table of helpers, shared by assembler, interpreter, JIT and verifier.

A `Helper` is an id (the kernel's number), a name, a prototype (argument and return types, kept for the
verifier), whether it is GPL-only, a Python implementation `py(ctx, r1, r2, r3, r4, r5) -> int` used by the
interpreter (and wrapped in a ctypes callback by the JIT), and optionally the name of a native
implementation the JIT emits instead. Helper implementations live in builtin.py, not here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TypeVar

from ..log import get_logger

if TYPE_CHECKING:
    from ..program import Program

_log = get_logger(__name__)

# Argument types (the kernel's bpf_arg_type names, shortened), for prototypes and the verifier.
ARG_TYPES = ("anything", "const_map_ptr", "ptr_to_map_key", "ptr_to_map_value", "ptr_to_ctx",
             "ptr_to_mem", "ptr_to_uninit_mem", "const_size", "const_size_or_zero", "ptr_to_stack")
RET_TYPES = ("integer", "void", "map_value_or_null", "mem_or_null")
HelperFn = TypeVar("HelperFn", bound=Callable[..., int])


@dataclass(frozen=True)
class Helper:
    id: int
    name: str
    py: Callable[..., int]
    args: tuple[str, ...] = ()
    ret: str = "integer"
    gpl_only: bool = False
    native: str | None = None      # name of the JIT's native implementation, if any
    btf_id: int | None = None      # set for helpers callable with call src=2

    def __post_init__(self) -> None:
        if not 0 <= self.id < 1 << 31:
            raise ValueError(f"helper {self.name}: id {self.id} is outside 0..2**31-1")
        for a in self.args:
            if a not in ARG_TYPES:
                raise ValueError(f"helper {self.name}: unknown argument type {a!r}")
        if self.ret not in RET_TYPES:
            raise ValueError(f"helper {self.name}: unknown return type {self.ret!r}")
        if len(self.args) > 5:
            raise ValueError(f"helper {self.name}: at most 5 arguments")


@dataclass
class HelperContext:
    """What a Python helper sees of the current run: memory, the program, the VM's runtime."""
    aspace: object              # memory.AddressSpace
    program: object = None      # program.Program
    runtime: object = None      # per-VM runtime state (maps, trace buffer ...), may be None
    pc: int = -1                # pc of the call (set by the interpreter; -1 in the JIT)
    config: object = None       # program.Config of the run
    tail_calls: int = 0         # tail calls taken so far in this run (interpreter)
    used_maps: frozenset | None = None   # descriptor addresses of the maps the running program was loaded
                                         # with (map helpers refuse others); None: any live map


class TailCall(Exception):
    """Raised by a tail-call helper's Python implementation (interpreter): continue in `program` with
    r1 = ctx, r2 = 0 and a fresh frame; never returns to the caller. The JIT does the same natively
    (state.TAILCALL) through the trampoline in bpf_run."""

    def __init__(self, program: Program, ctx: int):
        super().__init__(program, ctx)
        self.program = program
        self.ctx = ctx


class HelperRegistry:
    """id -> Helper, plus name and BTF-id lookups. Thread-safe registration."""

    def __init__(self, helpers: Iterable[Helper] = ()):
        self._by_id: dict[int, Helper] = {}
        self._by_btf: dict[int, Helper] = {}
        self._lock = threading.Lock()
        self.version = 0          # bumped on every change (JIT caches key on it)
        for h in helpers:
            self.register(h)

    def register(self, helper: Helper, replace: bool = False) -> Helper:
        with self._lock:
            old = self._by_id.get(helper.id)
            if old is not None and not replace:
                raise ValueError(f"helper id {helper.id} is already registered ({old.name})")
            if old is not None:
                _log.info("helper %d: %s replaces %s", helper.id, helper.name, old.name)
            self._by_id[helper.id] = helper
            if helper.btf_id is not None:
                self._by_btf[helper.btf_id] = helper
            self.version += 1
        return helper

    def helper(self, id: int, name: str | None = None, args: Iterable[str] = (), ret: str = "integer",
               gpl_only: bool = False, btf_id: int | None = None) -> Callable[[HelperFn], HelperFn]:
        """Decorator: register a Python function as helper `id`."""
        def deco(fn: HelperFn) -> HelperFn:
            self.register(Helper(id, name or fn.__name__, fn, tuple(args), ret, gpl_only, btf_id=btf_id),
                          replace=True)
            return fn
        return deco

    def get(self, id: int) -> Helper | None:
        return self._by_id.get(id)

    def get_btf(self, btf_id: int) -> Helper | None:
        return self._by_btf.get(btf_id)

    def by_name(self, name: str) -> Helper | None:
        for h in self._by_id.values():
            if h.name == name:
                return h
        return None

    def names(self) -> dict[str, int]:
        return {h.name: h.id for h in self._by_id.values()}

    def copy(self) -> "HelperRegistry":
        return HelperRegistry(self._by_id.values())

    def __iter__(self) -> Iterator[Helper]:
        return iter(sorted(self._by_id.values(), key=lambda h: h.id))

    def __contains__(self, id: int) -> bool:
        return id in self._by_id


# The kernel's license_is_gpl_compatible(): exact strings (GPL-only helpers need one of them).
GPL_COMPATIBLE = frozenset({"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
                            "Dual MPL/GPL"})


def license_is_gpl_compatible(license: str) -> bool:
    return license in GPL_COMPATIBLE
