"""`ProgArrayMap`: the tail-call table. Each slot holds a `Program` (what the interpreter's tail_call
continues in) and, in a u64 table the map descriptor points to (DATA), the address of that program's
JIT entry `bpf_tail_entry` (what JIT code jumps to; 0 = empty slot); the table's second half holds, per
slot, the address of the target engine's used-maps bitmap (what the target's map helpers accept; written
before the entry address, so a tail call that sees an entry sees its bitmap).

Tail-call targets run under their caller's rules, as in the kernel, where a prog_array is owned by the first
program that uses it: the first program prepared with this map (pipeline.prepare) becomes its owner, and
every target is prepared through the same pipeline with the owner's Config, helper registry, runtime and
program type. A program with other rules that uses the map is refused with a LoadError when its VM is
created (the kernel's bpf_prog_array_compatible), so no caller can reach a target built for weaker rules.
JIT entries are compiled once a JIT program uses the map (`need_native`), for the slots set so far and for
every slot set later; replaced engines stay alive while code may still run in them.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import LoadError
from ..program import Program
from . import layout as L
from .base import MapBase, MapError


def program_config(runtime):
    """The Config a slot's program is checked against before any program uses the map."""
    from ..program import DEFAULT_CONFIG
    return runtime.config if runtime is not None else DEFAULT_CONFIG


class ProgArrayMap(MapBase):
    map_type = "prog_array"
    kind = L.KIND_PROG_ARRAY

    def __init__(self, max_entries: int, runtime=None, *, name: str | None = None):
        super().__init__(4, 4, max_entries, name=name)
        self.runtime = runtime
        self._table = np.zeros(2 * max_entries, dtype=np.uint64)     # [entries | used-maps bitmaps]
        self._programs: list[Program | None] = [None] * max_entries
        self._engines: dict[int, tuple[Program, Any]] = {}
        self._retired: list[object] = []          # replaced engines stay alive (code may still run)
        self._lock = threading.RLock()
        self._owner: Any = None                   # pipeline.Prepared of the first program using this map
        self._native: Any = None                  # the JIT engine class, once a JIT program uses the map
        self._fill(DATA=self._table.ctypes.data, DATA_SIZE=self._table.nbytes)
        self._publish()

    @classmethod
    def create(cls, key_size, value_size, max_entries, **kw):
        if (key_size, value_size) != (4, 4):
            raise ValueError("prog_array maps have 4-byte keys and values")
        return cls(max_entries, **kw)

    def attach(self, runtime) -> None:
        """Remember the runtime this map was added to (its programs still run under their owner's rules)."""
        self.runtime = runtime

    @property
    def owner(self):
        """The pipeline.Prepared program whose rules the targets run under (None until one uses the map)."""
        return self._owner

    def bind_owner(self, prepared) -> None:
        """Called by pipeline.prepare for every program that uses this map: the first one becomes the owner
        (the targets set so far are prepared under its rules); a program with other rules is refused."""
        with self._lock:
            if self._owner is None:
                self._owner = prepared
                for prog in self._programs:
                    if prog is not None:
                        self._prepare_target(prog)
                self._rebuild_entries()
                return
            if prepared.owner_key() != self._owner.owner_key():
                o = self._owner
                raise LoadError(
                    f"prog_array {self.name or '?'} is used by {o.program.name!r} (type {o.ptype.name}, its "
                    f"Config, helpers and runtime); program {prepared.program.name!r} uses it with other rules: "
                    "tail-call targets run under their caller's rules, so every program using one prog_array "
                    "must share them (one Config, helper registry, runtime and program type)", None, "maps")

    def need_native(self, engine_class) -> None:
        """A JIT program uses this map: compile the JIT entries of its targets with `engine_class` (the
        JIT engine passes itself, so maps do not import the JIT), now and from now on."""
        with self._lock:
            if self._native is None:
                self._native = engine_class
                self._rebuild_entries()

    def _rebuild_entries(self) -> None:
        if self._native is None or self._owner is None:
            return
        self._retired.extend(engine for _, engine in self._engines.values())
        self._engines.clear()
        for i, prog in enumerate(self._programs):
            self._set_entry(i, self._jit_engine(prog) if prog is not None else None)

    def _check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.max_entries:
            raise MapError(L.E2BIG, f"prog_array index {index!r} out of range (max_entries {self.max_entries})")
        return int(index)

    def _prepare_target(self, program: Program):
        """`program` prepared under the owner's rules; LoadError if it cannot be (or has another type)."""
        owner = self._owner
        if program.prog_type != owner.ptype.name:
            raise LoadError(f"prog_array {self.name or '?'}: program {program.name!r} has type "
                            f"{program.prog_type!r}, the programs using this map have type {owner.ptype.name!r}",
                            None, "prog_type")
        return owner.tail_target(program)

    def _jit_engine(self, program: Program):
        hit = self._engines.get(id(program))
        if hit is not None and hit[0] is program:
            return hit[1]
        engine = self._native(self._prepare_target(program))
        if hit is not None:
            self._retired.append(hit[1])
        self._engines[id(program)] = (program, engine)
        return engine

    def _set_entry(self, i: int, engine) -> None:
        """Slot i of the native table: empty (engine None) or the engine's tail entry and used-maps bitmap."""
        if engine is None:
            self._table[i] = 0
            return
        entry = engine.tail_entry_address
        self._table[i] = 0
        self._table[self.max_entries + i] = engine.used_maps_address
        self._table[i] = entry

    def __setitem__(self, index: int, program: Program) -> None:
        i = self._check_index(index)
        if not isinstance(program, Program):
            raise TypeError(f"prog_array slots hold Programs, not {type(program).__name__}")
        with self._lock:
            if self._owner is None:
                program.validate(program_config(self.runtime))
                engine = None
            else:
                self._prepare_target(program)
                engine = self._jit_engine(program) if self._native is not None else None
            self._programs[i] = program
            self._set_entry(i, engine)

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
            self._table[:self.max_entries] = 0
            self._programs = [None] * self.max_entries
