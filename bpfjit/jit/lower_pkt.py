"""The packet-run entry point of packet programs (progtypes.PACKET_TYPES): `bpf_run_pkts`, one native loop.

    bpf_run_pkts(st, args, count, r10) -> packets done (count, or the index of the faulting one)

`args` is packets.ARGS (buffer base, head/tailroom, addresses of the offsets / lengths arrays, of the final
bounds (programs that may move them), of the context template (programs that store into their context)
and of the r0 array). For packet i it fills the internal context with packets.stores (the values
packets.PacketRun.values computes for the interpreter: data = base + offsets[i], data_end = data +
lengths[i], ...; protocol / pkt_type from the packet's first bytes as packets.header_values), points the
packet's region-table row at [data_meta, data_end) and the LD_ABS bounds (MEM_START/MEM_LEN) at
[data, data_end), runs subprogram 0 with r1 = the context, r2 = its UAPI size, and stores r0. The region
table is laid out by jit/pktrun.py: when no helper can move the packet bounds, row 0 is the packet
(checked inline, as SSA values) and row 2 the context; otherwise row 0 is the context and the packet is
row 2, re-read from memory by every check after a helper moved it. Only emitted for packet programs.
"""
from __future__ import annotations

from llvmlite import ir

from .. import packets
from ..progtypes import prog_type
from . import state as S
from .irlib import I64, I64P, c64
from .lower_entry import _slot, clear_stale_interrupt, poll_stop_every, run_program, table_rows

I8 = ir.IntType(8)
I32 = ir.IntType(32)
PREFETCH = 16           # packets ahead
I8P = I8.as_pointer()


def packet_row(program) -> int:
    """Which region-table row holds the packet (0 unless a helper may move the packet's bounds)."""
    return 2 if packets.moves_bounds(program) else 0


def _load(b, addr, bits):
    t = ir.IntType(bits)
    return b.load(b.inttoptr(addr, t.as_pointer()), align=1)


def emit_run_pkts(low) -> None:
    ptype = prog_type(low.prog.prog_type)
    m = low.module
    fn = ir.Function(m, ir.FunctionType(I64, [I64P, I64P, I64, I64]), "bpf_run_pkts")
    st, args, count, r10 = fn.args
    entry, head, body, done, fault = (fn.append_basic_block(n) for n in ("entry", "head", "body", "done", "fault"))
    b = ir.IRBuilder(entry)

    def arg(name, ptr=False):
        v = b.load(b.gep(args, [c64(packets.A[name])]))
        return b.inttoptr(v, I64P) if ptr else v

    base, headroom, tailroom = arg("base"), arg("headroom"), arg("tailroom")
    offs, lens, bounds, out = arg("offsets", True), arg("lengths", True), arg("bounds", True), arg("out", True)
    tmpl = arg("template")
    room = packets.moves_bounds(low.prog)
    headers = packets.needs_headers(low.prog, ptype)
    nh = packets.net_header_off(ptype)
    prow = packet_row(low.prog)
    crow = 2 if prow == 0 else 0
    table = b.inttoptr(b.load(_slot(b, st, S.TABLE)), I64P)
    ctx_lo, ctx_hi, ctx_perms = table_rows(b, st, (crow,))
    pkt_perms = b.load(b.gep(table, [c64(3 * prow + 2)]))
    row1 = table_rows(b, st, (1,))
    ctx8 = b.inttoptr(ctx_lo, I8P)
    uapi = packets.uapi_size(ptype)
    reset = any(f is not None and (f.op in ("st", "stx") or f.op.startswith("lock_")) and low.insns[pc].dst != 10
                for pc, f in enumerate(low.forms))
    memcpy = m.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64]) if reset else None
    prefetch = m.globals.get("llvm.prefetch.p0") or ir.Function(
        m, ir.FunctionType(ir.VoidType(), [I8P, I32, I32, I32]), "llvm.prefetch.p0")
    clear_stale_interrupt(low, b, st)
    pre = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(c64(0), pre)
    b.cbranch(b.icmp_unsigned("<", i, count), body, done)
    b.position_at_end(body)
    poll_stop_every(low, b, st, i, fault)
    if reset:
        b.call(memcpy, [ctx8, b.inttoptr(tmpl, I8P), c64(uapi), ir.Constant(ir.IntType(1), 0)])
    # prefetch the first bytes of the packet PREFETCH ahead: a batch streams through memory far larger
    # than the caches, and each packet's header is one miss the out-of-order core cannot see coming
    ahead = b.add(i, c64(PREFETCH))
    ahead = b.select(b.icmp_unsigned("<", ahead, count), ahead, i)
    b.call(prefetch, [b.inttoptr(b.add(base, b.load(b.gep(offs, [ahead]))), I8P), ir.Constant(I32, 0),
                      ir.Constant(I32, 3), ir.Constant(I32, 1)])
    ln = b.load(b.gep(lens, [i]))
    data = b.add(base, b.load(b.gep(offs, [i])))
    end = b.add(data, ln)
    v = {"data": data, "data_end": end, "data_meta": data, "index": i, "head": b.sub(data, headroom),
         "end": b.add(end, tailroom), "len": ln}
    if headers:
        v["protocol"], v["pkt_type"] = _emit_headers(fn, b, data, ln, nh)
    for name, off, size in packets.stores(ptype, headers):
        t = ir.IntType(8 * size)
        val = v[name] if size == 8 else b.trunc(v[name], t)
        b.store(val, b.bitcast(b.gep(ctx8, [c64(off)]), t.as_pointer()), align=size)
    b.store(data, b.gep(table, [c64(3 * prow)]))
    b.store(end, b.gep(table, [c64(3 * prow + 1)]))
    if low.uses_packet:
        b.store(data, _slot(b, st, S.MEM_START))
        b.store(ln, _slot(b, st, S.MEM_LEN))
    if low.metered:
        b.store(c64(0), _slot(b, st, S.COUNT))
    if low.calls_helpers:
        b.store(c64(0), _slot(b, st, S.TAIL))
        b.store(i, _slot(b, st, S.BATCH_INDEX))
    rows = [data, end, pkt_perms] if prow == 0 else [ctx_lo, ctx_hi, ctx_perms]
    r0 = run_program(low, b, st, ctx_lo, c64(uapi), r10, rows + row1)
    cont = fn.append_basic_block("cont")
    if low.may_signal:
        b.cbranch(b.icmp_unsigned("!=", b.load(_slot(b, st, S.F_KIND)), c64(0)), fault, cont)
    else:
        b.branch(cont)
    b.position_at_end(cont)
    b.store(r0, b.gep(out, [i]))
    if room:                              # the final bounds: the context's hidden fields after the run
        hid = dict(ptype.hidden)
        for k, name in enumerate(("data", "data_end", "data_meta")):
            val = b.load(b.bitcast(b.gep(ctx8, [c64(hid[name])]), I64P))
            b.store(val, b.gep(bounds, [b.add(b.mul(i, c64(3)), c64(k))]))
    i.add_incoming(b.add(i, c64(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    b.ret(count)
    b.position_at_end(fault)
    b.ret(i)


def _emit_headers(fn, b, data, ln, nh):
    """(protocol, pkt_type) as i64 values, the rules of packets.header_values (loads only where the packet
    is long enough)."""
    zero = c64(0)
    start = b.block
    if nh == 0:
        has = b.icmp_signed(">=", ln, c64(1))
        yes, join = fn.append_basic_block("ver"), fn.append_basic_block("ver_done")
        b.cbranch(has, yes, join)
        b.position_at_end(yes)
        ver = b.lshr(b.zext(_load(b, data, 8), I64), c64(4))
        p = b.select(b.icmp_unsigned("==", ver, c64(4)), c64(0x0008),
                     b.select(b.icmp_unsigned("==", ver, c64(6)), c64(0xDD86), zero))
        b.branch(join)
        b.position_at_end(join)
        proto = b.phi(I64)
        proto.add_incoming(zero, start)
        proto.add_incoming(p, yes)
        return proto, zero
    eth, mac = fn.append_basic_block("eth"), fn.append_basic_block("mac")
    after_eth = fn.append_basic_block("eth_done")
    b.cbranch(b.icmp_signed(">=", ln, c64(14)), eth, after_eth)
    b.position_at_end(eth)
    p = b.zext(_load(b, b.add(data, c64(12)), 16), I64)
    b.branch(after_eth)
    b.position_at_end(after_eth)
    proto = b.phi(I64)
    proto.add_incoming(zero, start)
    proto.add_incoming(p, eth)
    mid = b.block
    done = fn.append_basic_block("mac_done")
    b.cbranch(b.icmp_signed(">=", ln, c64(6)), mac, done)
    b.position_at_end(mac)
    first = _load(b, data, 8)
    mc = b.icmp_unsigned("!=", b.and_(first, ir.Constant(I8, 1)), ir.Constant(I8, 0))
    bc = b.and_(b.icmp_unsigned("==", _load(b, data, 32), ir.Constant(ir.IntType(32), 0xFFFFFFFF)),
                b.icmp_unsigned("==", _load(b, b.add(data, c64(4)), 16), ir.Constant(ir.IntType(16), 0xFFFF)))
    t = b.select(mc, b.select(bc, c64(packets.PACKET_BROADCAST), c64(packets.PACKET_MULTICAST)),
                 c64(packets.PACKET_HOST))
    b.branch(done)
    b.position_at_end(done)
    ptype_v = b.phi(I64)
    ptype_v.add_incoming(zero, mid)
    ptype_v.add_incoming(t, mac)
    return proto, ptype_v
