"""Where a faulting memory access went, in words a person can act on.

`describe_access(kind, addr, size, spans)` is THE one description of a load/store/atomic access that no
region allows, against the regions of the run (`Span` rows: what each region is called, where it is, its
permissions). Both engines call it through `RunEnv.locate` when they raise the fault, so the text is
identical: "load of 2 bytes at mem offset 12, 4 bytes past its end (length 10)", "store of 8 bytes at stack
offset -4104, below the 4096-byte stack: Config.max_call_depth 8 frames of Config.stack_size 512 bytes",
"store of 8 bytes at ctx (pt_regs, read-only) offset 8: the program may not write there". Offsets are relative (host addresses differ between runs and engines; the
fault keeps its address as a detail). Nothing here knows engines, maps or program types: runenv.py builds
the spans.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from .errors import Where
from .memory import PERM_R, PERM_RW, PERM_W

NULL_PAGE = 4096          # an access below this, in no region, is through a NULL pointer (+ offset)
NEAR = 1 << 16            # an access this close to a region is described relative to that region

VERBS = {"load": "load", "store": "store", "atomic": "atomic access"}
NEEDS = {"load": PERM_R, "store": PERM_W, "atomic": PERM_RW}
DENIED = {"load": "read", "store": "write", "atomic": "write"}


class Span(NamedTuple):
    """One region of a run as messages name it."""
    region: str               # the fault's `.region`: "mem", "record", "ctx", "stack", "map:NAME" ...
    label: str                # in the message: "mem", "ctx (pt_regs)", "map 'counts'" (", read-only" added)
    start: int
    end: int
    perms: int
    from_top: bool = False    # offsets count down from the end (the stack: r10 of the entry frame)
    detail: str = ""          # what the length is made of, e.g. "4 values of 8 bytes"


def _bytes(n: int) -> str:
    return f"{n} byte" + ("" if n == 1 else "s")


def _label(s: Span, kind: str) -> str:
    """The span's label, marked read-only when the access needed to write and may not."""
    if not NEEDS.get(kind, 0) & PERM_W or s.perms & PERM_W:
        return s.label
    return s.label[:-1] + ", read-only)" if s.label.endswith(")") else s.label + " (read-only)"


def _distance(s: Span, addr: int, size: int) -> int:
    """Bytes between the access [addr, addr + size) and the span (0 when they overlap)."""
    if addr + size <= s.start:
        return s.start - (addr + size)
    if addr >= s.end:
        return addr - s.end
    return 0


def describe_access(kind: str, addr: int, size: int, spans: Iterable[Span]) -> Where:
    """Where the `kind` access of `size` bytes at host address `addr` went, relative to the nearest span."""
    head = f"{VERBS.get(kind, kind)} of {_bytes(size)}"
    spans = [s for s in spans if s.end > s.start]
    for s in spans:                              # inside a region without the permission
        if s.start <= addr and addr + size <= s.end:
            off = addr - s.end if s.from_top else addr - s.start
            return Where(s.region, off, f"{head} at {_label(s, kind)} offset {off}: the program may not "
                                        f"{DENIED.get(kind, 'access')} there")
    if 0 <= addr < NULL_PAGE:
        return Where("null", addr, f"{head} at NULL + {addr} (a pointer that may be NULL, such as a map "
                                   "lookup's result, must be checked before use)")
    near = min(spans, key=lambda s: _distance(s, addr, size), default=None)
    if near is None or _distance(near, addr, size) > NEAR:
        return Where(None, None, f"{head} at an address in no region the program may access")
    length = near.end - near.start
    detail = f": {near.detail}" if near.detail else ""
    if near.from_top:
        off = addr - near.end
        if addr + size > near.end:
            return Where(near.region, off, f"{head} at {near.label} offset {off}, "
                                           f"{_bytes(addr + size - near.end)} above its top{detail}")
        return Where(near.region, off, f"{head} at {near.label} offset {off}, below the {length}-byte "
                                       f"{near.label}{detail}")
    off = addr - near.start
    if addr < near.start:
        return Where(near.region, off, f"{head} at {near.label} offset {off}, before its start "
                                       f"(length {length}{detail})")
    return Where(near.region, off, f"{head} at {near.label} offset {off}, {_bytes(addr + size - near.end)} "
                                   f"past its end (length {length}{detail})")
