"""The packet-run entry point of packet programs (progtypes.PACKET_TYPES): `bpf_run_pkts`, one native loop.

    bpf_run_pkts(st, desc, count, r10, out, tmpl) -> packets done (count, or the index of the faulting one)

For packet i it copies row i of the descriptor table (packets.py: bounds, index, len, protocol ...) into the
internal context (packets.stores; first the UAPI template at `tmpl` when tmpl != 0, for programs that store
into their context), points the packet's region-table row at [data_meta, data_end) and the LD_ABS bounds
(MEM_START/MEM_LEN) at [data, data_end), runs subprogram 0 with r1 = the context, r2 = its UAPI size, and
stores r0 into out[i]. The region table is laid out by jit/pktrun.py: when no helper can move the packet
bounds, row 0 is the packet (checked inline, as SSA values) and row 2 the context; otherwise row 0 is the
context and the packet is row 2, re-read from memory by every check after a helper moved it.
Only emitted for packet programs; nothing else lives here.
"""
from __future__ import annotations

from llvmlite import ir

from .. import packets
from ..progtypes import prog_type
from . import state as S
from .irlib import I64, I64P, c64
from .lower_entry import _slot, call_program, table_rows

I8P = ir.IntType(8).as_pointer()


def packet_row(program) -> int:
    """Which region-table row holds the packet (0 unless a helper may move the packet's bounds)."""
    return 2 if packets.moves_bounds(program) else 0


def emit_run_pkts(low, inline: bool) -> None:
    ptype = prog_type(low.prog.prog_type)
    m = low.module
    fn = ir.Function(m, ir.FunctionType(I64, [I64P, I64P, I64, I64, I64P, I64]), "bpf_run_pkts")
    st, desc, count, r10, out, tmpl = fn.args
    entry, head, body, done, fault = (fn.append_basic_block(n) for n in ("entry", "head", "body", "done", "fault"))
    b = ir.IRBuilder(entry)
    prow = packet_row(low.prog)
    crow = 2 if prow == 0 else 0
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    ctx_lo, ctx_hi, ctx_perms = table_rows(b, st, (crow,))
    pkt_perms = b.load(b.gep(table, [c64(3 * prow + 2)]))
    row1 = table_rows(b, st, (1,))
    ctx8 = b.inttoptr(ctx_lo, I8P)
    uapi = packets.uapi_size(ptype)
    memcpy = m.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64])
    has_tmpl = b.icmp_unsigned("!=", tmpl, c64(0))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(c64(0), entry)
    b.cbranch(b.icmp_unsigned("<", i, count), body, done)
    b.position_at_end(body)
    row = b.gep(desc, [b.mul(i, c64(packets.NCOLS))])
    with b.if_then(has_tmpl, likely=False):
        b.call(memcpy, [ctx8, b.inttoptr(tmpl, I8P), c64(uapi), ir.Constant(ir.IntType(1), 0)])
    cols = {}

    def col(c):
        if c not in cols:
            cols[c] = b.load(b.gep(row, [c64(c)]))
        return cols[c]

    for c, off, size in packets.stores(ptype):
        t = ir.IntType(8 * size)
        v = col(c) if size == 8 else b.trunc(col(c), t)
        b.store(v, b.bitcast(b.gep(ctx8, [c64(off)]), t.as_pointer()), align=size)
    data, end, meta = col(packets.D_DATA), col(packets.D_END), col(packets.D_META)
    b.store(meta, b.gep(table, [c64(3 * prow)]))
    b.store(end, b.gep(table, [c64(3 * prow + 1)]))
    if low.uses_packet:
        b.store(data, _slot(b, st, S.MEM_START))
        b.store(b.sub(end, data), _slot(b, st, S.MEM_LEN))
    if low.metered:
        b.store(c64(0), _slot(b, st, S.COUNT))
    if low.calls_helpers:
        b.store(c64(0), _slot(b, st, S.TAIL))
        b.store(i, _slot(b, st, S.BATCH_INDEX))
    rows = [meta, end, pkt_perms] if prow == 0 else [ctx_lo, ctx_hi, ctx_perms]
    r0 = call_program(low, b, st, ctx_lo, c64(uapi), r10, rows + row1, inline)
    cont = fn.append_basic_block("cont")
    if low.may_signal:
        b.cbranch(b.icmp_unsigned("!=", b.load(_slot(b, st, S.F_KIND)), c64(0)), fault, cont)
    else:
        b.branch(cont)
    b.position_at_end(cont)
    b.store(r0, b.gep(out, [i]))
    i.add_incoming(b.add(i, c64(1)), cont)
    b.branch(head)
    b.position_at_end(done)
    b.ret(count)
    b.position_at_end(fault)
    b.ret(i)
