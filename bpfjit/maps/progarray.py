"""`ProgArrayMap`: the tail-call table. Each slot holds a `Program` (what the interpreter's tail_call
continues in) and, in a u64 table the map descriptor points to (DATA), the address of that program's
JIT entry `bpf_tail_entry` (what JIT code jumps to; 0 = empty slot).

The JIT side of a program is compiled when it is put in a slot, with the config, helper registry and map
resolution of the map's Runtime (DEFAULT_CONFIG and the default registry without one), and its engine is
kept alive as long as the map. Programs tail-calling through this map should run with the same config.
A JIT tail-call target that calls Python helpers installs its own callback table on entry (the caller's
is restored when the chain ends).
"""
from __future__ import annotations

import threading

import numpy as np

from ..program import DEFAULT_CONFIG, Program
from . import layout as L
from .base import MapBase, MapError


def _default_helpers():
    """The registry of a prog array without a Runtime: the default one plus the map helpers."""
    from ..helpers import default_registry
    from ..helpers.map_helpers import register_map_helpers
    reg = default_registry()
    return reg if 1 in reg else register_map_helpers(reg.copy())


class ProgArrayMap(MapBase):
    map_type = "prog_array"
    kind = L.KIND_PROG_ARRAY

    def __init__(self, max_entries: int, runtime=None, *, name: str | None = None):
        super().__init__(4, 4, max_entries, name=name)
        self.runtime = runtime
        self._table = np.zeros(max_entries, dtype=np.uint64)
        self._programs: list[Program | None] = [None] * max_entries
        self._engines: dict[int, tuple[Program, object]] = {}
        self._retired: list[object] = []          # replaced engines stay alive (code may still run)
        self._lock = threading.Lock()
        self._fill(DATA=self._table.ctypes.data, DATA_SIZE=self._table.nbytes)
        self._publish()

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if (key_size, value_size) != (4, 4):
            raise ValueError("prog_array maps have 4-byte keys and values")
        return cls(max_entries, **kw)

    def attach(self, runtime) -> None:
        """Use `runtime` for the JIT side from now on (recompiling the programs already set)."""
        with self._lock:
            self.runtime = runtime
            self._retired.extend(engine for _, engine in self._engines.values())
            self._engines.clear()
            for i, prog in enumerate(self._programs):
                if prog is not None:
                    self._table[i] = self._jit_entry(prog)

    def _check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.max_entries:
            raise MapError(L.E2BIG, f"prog_array index {index!r} out of range (max_entries {self.max_entries})")
        return int(index)

    def _jit_entry(self, program: Program) -> int:
        hit = self._engines.get(id(program))
        if hit is not None and hit[0] is program:
            return hit[1].tail_entry_address
        from ..jit import JITEngine
        rt = self.runtime
        config = rt.config if rt is not None else DEFAULT_CONFIG
        registry = rt.helpers if rt is not None else _default_helpers()
        resolve = None
        if rt is not None:
            rt.check_program(program)
            resolve = lambda pc, src, imm, nimm: rt.resolve_lddw(program, pc, src, imm, nimm)  # noqa: E731
        program.validate(config)
        engine = JITEngine(program, config, registry, resolve)
        if hit is not None:
            self._retired.append(hit[1])
        self._engines[id(program)] = (program, engine)
        return engine.tail_entry_address

    def __setitem__(self, index: int, program: Program) -> None:
        i = self._check_index(index)
        if not isinstance(program, Program):
            raise TypeError(f"prog_array slots hold Programs, not {type(program).__name__}")
        with self._lock:
            addr = self._jit_entry(program)
            self._programs[i] = program
            self._table[i] = addr

    def __getitem__(self, index: int) -> Program:
        prog = self._programs[self._check_index(index)]
        if prog is None:
            raise KeyError(index)
        return prog

    def __delitem__(self, index: int) -> None:
        i = self._check_index(index)
        with self._lock:
            if self._programs[i] is None:
                raise KeyError(index)
            self._table[i] = 0
            self._programs[i] = None

    def program(self, index: int) -> Program | None:
        """The program in slot `index` (None if empty or out of range): what tail_call continues in."""
        return self._programs[index] if 0 <= index < self.max_entries else None

    def __len__(self) -> int:
        return sum(p is not None for p in self._programs)

    def __iter__(self):
        return (i for i, p in enumerate(self._programs) if p is not None)

    def keys(self) -> list[int]:
        return list(self)

    def items(self) -> list[tuple[int, Program]]:
        return [(i, p) for i, p in enumerate(self._programs) if p is not None]

    def clear(self) -> None:
        with self._lock:
            self._table[:] = 0
            self._programs = [None] * self.max_entries
