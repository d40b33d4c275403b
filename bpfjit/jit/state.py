"""Layout of the per-run state block shared by JIT code and Python: ONE table (`SLOTS`) from which the
Python slot indexes (module constants F_KIND, COUNT, ...), `NSLOTS`, the IR type of the block
(`ir_type()`) and the numpy dtype (`DTYPE`, one named uint64 field per slot) are generated.

Only the layout and special codes live here; the lowering emits code that reads/writes the slots and
engine.py fills them in before a native call and decodes faults after it.
"""
from __future__ import annotations

import numpy as np

# (name, index, meaning); every slot is a uint64; indexes not listed are spare
SLOTS = (
    ("F_KIND", 0, "fault kind (index into errors.FAULT_KINDS; EXIT0 / TAILCALL below); 0 = none"),
    ("F_PC", 1, "pc of the fault"),
    ("F_ADDR", 2, "faulting address (memory faults)"),
    ("F_SIZE", 3, "access size (memory faults)"),
    ("COUNT", 4, "instruction meter: instructions charged so far"),
    ("LIMIT", 5, "instruction limit"),
    ("TABLE", 6, "address of the region table (uint64 [start, end, perms] rows)"),
    ("NREGIONS", 7, "rows in the region table"),
    ("MEM_START", 8, "packet data for legacy LD_ABS/LD_IND: start"),
    ("MEM_LEN", 9, "packet data for legacy LD_ABS/LD_IND: length"),
    ("HELPERS", 10, "address of the Python-helper callback table (uint64 function pointers)"),
    ("STACK_TOP", 11, "r10 of the entry frame"),
    ("TAIL", 12, "tail calls taken so far in this run"),
    ("TAIL_TARGET", 14, "pending tail call: address of the target's bpf_tail_entry"),
    ("TAIL_CTX", 15, "pending tail call: r1 for the target"),
    ("TAIL_LIMIT", 16, "Config.tail_call_limit"),
    ("ARG_R1", 17, "bpf_entry input: r1 of the first run (mem address)"),
    ("ARG_R2", 18, "bpf_entry input: r2 of every run (mem length)"),
    ("ARG_PERMS", 19, "bpf_entry input: permissions of the mem region"),
    ("BATCH_INDEX", 20, "run_batch: index of the record being run (Python helpers' view of memory)"),
    ("SCRATCH", 21, "where the accesses of a cold copy go after its first failed check (support.bpf_cold_addr)"),
    ("ARG_STRIDE", 22, "bpf_entry input: bytes from one record to the next (run_batch; 0 for run and bench)"),
    ("ARG_COUNT", 23, "bpf_entry input: runs to do (1 for run)"),
    ("ARG_OUT", 24, "bpf_entry input: address of the uint64 r0 results, run i writes out[i & ARG_OMASK]"),
    ("ARG_OMASK", 25, "bpf_entry input: all ones for run_batch (one result per record), 0 for run and bench"),
    ("DONE", 13, "bpf_entry output: runs completed (the run at this index faulted when < ARG_COUNT)"),
    ("RESULT", 26, "r0 of run and bench (where ARG_OUT points for them)"),
    ("USED_MAPS", 27, "address of the running program's used-maps bitmap (one bit per arena slot: the maps it "
                      "was loaded with); checked map helpers refuse other maps; a tail call installs its target's"),
    ("STOP", 31, "stop request polled at meter points of checked code: STOP_TIMEOUT or STOP_INTERRUPT (set by "
                 "runenv's watchdog thread); 0 = run on"),
)
NSLOTS = 32

F_KIND = F_PC = F_ADDR = F_SIZE = COUNT = LIMIT = TABLE = NREGIONS = MEM_START = MEM_LEN = HELPERS = 0
STACK_TOP = TAIL = TAIL_TARGET = TAIL_CTX = TAIL_LIMIT = ARG_R1 = ARG_R2 = ARG_PERMS = BATCH_INDEX = SCRATCH = 0
ARG_STRIDE = ARG_COUNT = ARG_OUT = ARG_OMASK = DONE = RESULT = USED_MAPS = STOP = 0
globals().update({name: idx for name, idx, _ in SLOTS})      # the constants above, from the table
assert len({idx for _, idx, _ in SLOTS}) == len(SLOTS) and max(i for _, i, _ in SLOTS) < NSLOTS

_BY_INDEX = {idx: name for name, idx, _ in SLOTS}
DTYPE = np.dtype({"names": [_BY_INDEX.get(i, f"_spare{i}") for i in range(NSLOTS)],
                  "formats": [np.uint64] * NSLOTS})

EXIT0 = 255       # F_KIND value for "program ended with r0 = 0" (legacy packet load out of bounds)
TAILCALL = 254    # F_KIND value for "a tail call is pending": unwind to the trampoline of the entry point
STOP_TIMEOUT = 1      # STOP values: the run's timeout passed (RuntimeFault "timeout")
STOP_INTERRUPT = 2    # Ctrl-C on the main thread (KeyboardInterrupt); entry points clear a stale one


def ir_type():
    """The state block as an LLVM type ([NSLOTS x i64]; code addresses slot i as element i of an i64*)."""
    from llvmlite import ir
    return ir.ArrayType(ir.IntType(64), NSLOTS)
