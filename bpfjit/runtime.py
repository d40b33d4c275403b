"""`Runtime`: the kernel side shared by the VMs of one application: maps (by fd and by name), lddw map
resolution, the regions of map storage programs may touch, the trace buffer and the event output.

Map types live in maps/, helper implementations in helpers/; this module only keeps the tables that tie
them to programs. A VM created with `runtime=` resolves its lddw src 1/2/5/6 here and adds these regions to
its address space.
"""
from __future__ import annotations

import threading

from .errors import LoadError
from .helpers import default_registry

FIRST_FD = 3          # map fds start here (0..2 look like stdio, as in the kernel)


class Runtime:
    def __init__(self, config=None, helpers=None):
        from .program import DEFAULT_CONFIG
        self.config = config or DEFAULT_CONFIG
        self.helpers = helpers or default_registry()
        self._maps: dict[int, object] = {}         # fd -> map
        self._names: dict[str, int] = {}           # name -> fd
        self._lock = threading.Lock()
        self._regions_cache = None

    # ---- maps ----
    def add_map(self, m, name: str | None = None) -> int:
        """Register a map; returns its fd (what `lddw map_fd(N)` refers to)."""
        with self._lock:
            fd = FIRST_FD + len(self._maps)
            self._maps[fd] = m
            name = name or getattr(m, "name", None)
            if name:
                self._names[name] = fd
            self._regions_cache = None
        return fd

    def map(self, key):
        """A map by fd or by name."""
        fd = self._names.get(key) if isinstance(key, str) else key
        m = self._maps.get(fd)
        if m is None:
            raise KeyError(f"no map {key!r}")
        return m

    def fd_of(self, name: str) -> int:
        return self._names[name]

    @property
    def maps(self) -> dict[str, object]:
        return {n: self._maps[fd] for n, fd in self._names.items()}

    def regions(self):
        r = self._regions_cache
        if r is None:
            r = self._regions_cache = [reg for m in self._maps.values() for reg in m.regions()]
        return r

    def invalidate_regions(self) -> None:
        """Call when a map's storage changes (e.g. a ring buffer grows)."""
        self._regions_cache = None

    # ---- programs ----
    def check_program(self, program) -> None:
        """Load-time checks that need the runtime (license of GPL-only helpers, ...). Extended by issue 4."""

    def resolve_lddw(self, program, pc: int, src: int, imm: int, next_imm: int) -> int:
        """Value of an lddw pseudo instruction: map descriptor address (src 1, 5) or map value address
        (src 2, 6: value of key 0 of an array map plus next_imm)."""
        from .isa import LDDW_MAP_FD, LDDW_MAP_IDX, LDDW_MAP_IDX_VALUE, LDDW_MAP_VALUE
        if src in (LDDW_MAP_FD, LDDW_MAP_VALUE):
            m = self._maps.get(imm)
            if m is None:
                raise LoadError(f"lddw refers to map fd {imm}, which does not exist", pc, "imm")
        elif src in (LDDW_MAP_IDX, LDDW_MAP_IDX_VALUE):
            maps = getattr(program, "maps", None) or []
            if not 0 <= imm < len(maps):
                raise LoadError(f"lddw refers to map index {imm}; the program has {len(maps)} maps", pc, "imm")
            m = maps[imm]
            if isinstance(m, str):
                m = self.map(m)
        else:
            raise LoadError(f"lddw with src {src} is not supported by this runtime", pc, "src")
        if src in (LDDW_MAP_FD, LDDW_MAP_IDX):
            return m.desc_addr
        addr = m.direct_value_addr(next_imm)
        if addr is None:
            raise LoadError(f"lddw map value: map {getattr(m, 'name', '?')} has no direct value at offset "
                            f"{next_imm}", pc, "imm")
        return addr
