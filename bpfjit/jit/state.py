"""Layout of the per-run state block shared by JIT code and Python (an array of uint64 slots).

Only slot indexes and special codes live here; lower.py emits code that reads/writes them and engine.py
fills them in before a native call and decodes faults after it.
"""
from __future__ import annotations

F_KIND = 0        # fault kind (index into errors.FAULT_KINDS; EXIT0 for an implicit exit); 0 = none
F_PC = 1          # pc of the fault
F_ADDR = 2        # faulting address (memory faults)
F_SIZE = 3        # access size (memory faults)
COUNT = 4         # instruction meter: instructions charged so far
LIMIT = 5         # instruction limit
TABLE = 6         # address of the region table (uint64 [start, end, perms] rows)
NREGIONS = 7      # rows in the region table
MEM_START = 8     # packet data for legacy LD_ABS/LD_IND
MEM_LEN = 9
HELPERS = 10      # address of the Python-helper callback table (uint64 function pointers)
STACK_TOP = 11    # r10 of the entry frame (batch loops)
TAIL = 12         # tail calls taken so far in this run
TAIL_TARGET = 14  # pending tail call: address of the target module's bpf_tail_entry
TAIL_CTX = 15     # pending tail call: r1 for the target
TAIL_LIMIT = 16   # Config.tail_call_limit
ARG_R1 = 17       # bpf_run_mem inputs: r1 (mem address), r2 (mem length), permissions of the mem region
ARG_R2 = 18
ARG_PERMS = 19
BATCH_INDEX = 20  # run_batch: index of the record being run (for Python helpers' view of memory)
NSLOTS = 24

EXIT0 = 255       # F_KIND value for "program ended with r0 = 0" (legacy packet load out of bounds)
TAILCALL = 254    # F_KIND value for "a tail call is pending": unwind to the trampoline in bpf_run
