"""Program types as data: what r1 points to (the context), its layout, and the rules for touching it.

- "raw" (the default): r1 = the run's mem, r2 = its length; mem is writable unless run read-only.
- "kprobe" (the seed, BPF_PROG_TYPE_KPROBE): r1 = an x86-64 `struct pt_regs` (21 u64 in kernel order,
  168 bytes), read-only: a store into it faults "store" in both engines. Loading one needs the runtime's
  kern_version (runtime.py checks it). The seed's access rule (inside the struct, reads only, aligned) is
  `valid_ctx_access`; at run time the region's bounds and read-only permission enforce the first two.

`pt_regs(...)` builds one context (a 0-d numpy array of the PT_REGS dtype), `pt_regs_array(n, ...)` a batch
for VM.run_batch. Running kprobe programs and storing their events lives in runtime.py; nothing here runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LoadError

PT_REGS_FIELDS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si",
                  "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS = np.dtype([(f, "<u8") for f in PT_REGS_FIELDS])
OFFSETS = {f: PT_REGS.fields[f][1] for f in PT_REGS_FIELDS}

# Function arguments at a kprobe on a function entry (x86-64 System V), the return value and stack/ip:
# the kernel's PT_REGS_PARM1..6, PT_REGS_RC, PT_REGS_SP, PT_REGS_IP.
PARM_REGS = ("di", "si", "dx", "cx", "r8", "r9")
PARM1, PARM2, PARM3, PARM4, PARM5, PARM6 = (OFFSETS[r] for r in PARM_REGS)
RC, SP, IP = OFFSETS["ax"], OFFSETS["sp"], OFFSETS["ip"]


def pt_regs(**regs: int) -> np.ndarray:
    """One pt_regs context, e.g. pt_regs(di=1, si=2, ip=0xffffffff81000000); unnamed registers are 0."""
    out = np.zeros((), dtype=PT_REGS)
    for name, value in regs.items():
        _field(name)
        out[name] = value & 0xFFFFFFFFFFFFFFFF
    return out


def pt_regs_array(n: int, **columns) -> np.ndarray:
    """n zeroed pt_regs records; columns (scalars or length-n arrays) fill registers by name."""
    out = np.zeros(n, dtype=PT_REGS)
    for name, values in columns.items():
        _field(name)
        out[name] = values
    return out


def _field(name: str) -> None:
    if name not in OFFSETS:
        raise KeyError(f"pt_regs has no register {name!r}; registers: {', '.join(PT_REGS_FIELDS)}")


@dataclass(frozen=True)
class ProgType:
    name: str
    ctx: str                      # what r1 points to
    ctx_size: int | None          # bytes of the context (None: any)
    ctx_dtype: np.dtype | None    # its layout, when fixed
    ctx_readonly: bool            # stores into the context fault "store"
    needs_kern_version: bool      # load needs Program.kern_version == Runtime.kern_version


PROG_TYPES = {
    "raw": ProgType("raw", "mem (r2 = its length)", None, None, False, False),
    "kprobe": ProgType("kprobe", "struct pt_regs (x86-64)", PT_REGS.itemsize, PT_REGS, True, True),
}


def prog_type(name: str) -> ProgType:
    t = PROG_TYPES.get(name)
    if t is None:
        raise LoadError(f"unknown program type {name!r}; known: {', '.join(PROG_TYPES)}")
    return t


def valid_ctx_access(ptype: ProgType, off: int, size: int, write: bool) -> bool:
    """The seed's kprobe_prog_is_valid_access for any type: inside the context, no writes to a read-only
    one, naturally aligned when the layout is fixed."""
    if ptype.ctx_size is not None and not (0 <= off and off + size <= ptype.ctx_size):
        return False
    if write and ptype.ctx_readonly:
        return False
    return ptype.ctx_dtype is None or off % size == 0
