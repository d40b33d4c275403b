"""Packet helpers of socket filter, XDP, tc and cgroup skb programs (kernel ids, prototypes, Python side).

skb_store_bytes 9, l3_csum_replace 10, l4_csum_replace 11, redirect 23, skb_load_bytes 26, csum_diff 28,
get_hash_recalc 34, skb_change_tail 38, skb_pull_data 39, xdp_adjust_head 44, get_socket_cookie 46,
redirect_map 51, xdp_adjust_meta 54, xdp_adjust_tail 65, jiffies64 118, ktime_get_boot_ns 125.

They run inside a packet run (packets.PacketRun, `ctx.pkt` of the helper context): the packet being run is
the one whose index the internal context holds; helpers that move its bounds call PacketRun.set_bounds.
Both engines call these Python implementations (the JIT through its ctypes callbacks), except where a
native twin exists (csum_diff, jiffies64, ktime_get_boot_ns: IR emitters below, registered in the JIT's
NATIVE table), which computes exactly what the Python one does. Checksums follow the kernel (RFC 1624 incremental updates, the generic
csum_partial / csum_fold / csum_replace of lib/checksum.c); values are 16-bit words in memory order, as the
program loads them. The model has no skb->csum (ip_summed is CHECKSUM_NONE): l4_csum_replace updates the
checksum field only, as the kernel does for such packets. Which program type may call which helper is in
the ProgType rows (progtypes.py). Nothing here knows an engine.
"""
from __future__ import annotations

import time

from llvmlite import ir

from ..errors import RuntimeFault
from ..jit.irlib import I32, I64, c64
from ..jit.native_helpers import NATIVE
from ..memory import PERM_R, PERM_W
from .irhelper import IRHelper
from .registry import Helper

M32, M64 = (1 << 32) - 1, (1 << 64) - 1
EINVAL, EFAULT, ENOMEM, ENOTSUPP, EACCES = 22, 14, 12, 524, 13
ETH_HLEN = 14
XDP_FRAME_SIZE = 40                 # sizeof(struct xdp_frame): the headroom adjust_head/meta must leave
XDP_META_MAX = 32                   # xdp_metalen_invalid: metadata is at most 32 bytes, a multiple of 4
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1, 2
BPF_F_HDR_FIELD_MASK, BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6 = 0xF, 0x10, 0x20, 0x40, 0x80
BPF_F_INGRESS = 1
BPF_F_ACTION_MASK = 3
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
XDP_ABORTED, XDP_REDIRECT = 0, 4
HZ = 250                            # jiffies per second (CONFIG_HZ_250, the common distribution setting)
CSUM_DIFF_MAX = 512                 # bytes of from + to (the kernel's per-CPU scratch buffer)


def _s32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v >> 31 else v


def _neg(err: int) -> int:
    return -err & M64


# ---------------------------------------------------------------- checksums (lib/checksum.c semantics)
def csum_add(a: int, b: int) -> int:
    """32-bit one's-complement add (end-around carry)."""
    s = (a & M32) + (b & M32)
    return (s + (s >> 32)) & M32


def fold16(s: int) -> int:
    """A 32-bit sum folded to 16 bits (not complemented)."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s & 0xFFFF


def csum_fold(s: int) -> int:
    return ~fold16(s) & 0xFFFF


def csum_partial(data: bytes, seed: int) -> int:
    """The generic csum_partial: 16-bit little-endian words summed and folded, then added to seed (32-bit)."""
    if len(data) & 1:
        data = data + b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2))
    return csum_add(fold16(s), seed)


def csum_replace_by_diff(old_sum: int, diff: int) -> int:
    """*sum = csum_fold(csum_add(diff, ~csum_unfold(*sum)))."""
    return csum_fold(csum_add(diff, ~old_sum & M32))


def csum_replace(old_sum: int, old: int, new: int, size: int) -> int:
    """RFC 1624 eqn. 3 for a 2- or 4-byte field change: HC' = ~(~HC + ~m + m')."""
    if size == 2:
        old, new = old & 0xFFFF, new & 0xFFFF
        return ~fold16((~old_sum & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF
    diff = csum_add(~old & M32, new & M32)
    return csum_replace_by_diff(old_sum, diff)


# ---------------------------------------------------------------- the packet being run
def _run(ctx):
    prun = getattr(ctx, "pkt", None)
    if prun is None:
        raise RuntimeFault("helper", -1, "a packet helper called outside a packet run")
    return prun


def _current(ctx, skb: int | None = None):
    """(PacketRun, index of the packet being run); skb, when given, must be the context pointer."""
    prun = _run(ctx)
    if skb is not None and skb != prun.kctx.__array_interface__["data"][0]:
        raise RuntimeFault("helper", -1, f"helper argument {skb:#x} is not the program's context")
    return prun, prun.index()


def _read(ctx, addr: int, size: int) -> bytes:
    data = ctx.aspace.read_bytes(addr, size)
    if data is None:
        raise RuntimeFault("load", -1, "helper source outside readable memory", addr, size)
    return data


def _write(ctx, addr: int, data: bytes) -> None:
    if data and ctx.aspace.find(addr, len(data), PERM_W) is None:
        raise RuntimeFault("store", -1, "helper destination outside writable memory", addr, len(data))
    ctx.aspace.write_bytes(addr, data)


# ---------------------------------------------------------------- skb helpers
def skb_load_bytes(ctx, skb=0, offset=0, to=0, length=0, r5=0) -> int:
    """26: copy len bytes at offset of the packet to `to`; -EFAULT (to zeroed) when out of the packet."""
    prun, i = _current(ctx, skb)
    data, end, *_ = prun.bounds(i)
    off, n = offset & M32, length & M32
    if n == 0:
        return _neg(EINVAL)
    if off > 0x7FFFFFFF or data + off + n > end:
        _write(ctx, to, bytes(n))
        return _neg(EFAULT)
    _write(ctx, to, prun.buffer(data + off, data + off + n).tobytes())
    return 0


def skb_store_bytes(ctx, skb=0, offset=0, frm=0, length=0, flags=0) -> int:
    """9: copy len bytes from `from` into the packet at offset (flags: RECOMPUTE_CSUM, INVALIDATE_HASH)."""
    prun, i = _current(ctx, skb)
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _neg(EINVAL)
    data, end, *_ = prun.bounds(i)
    off, n = offset & M32, length & M32
    if off > 0xFFFF or data + off + n > end:
        return _neg(EFAULT)
    src = _read(ctx, frm, n)
    prun.buffer(data + off, data + off + n)[:] = memoryview(src)
    return 0


def _csum_field(prun, i, offset):
    data, end, *_ = prun.bounds(i)
    off = offset & M32
    if off > 0xFFFF or off & 1 or data + off + 2 > end:
        return None
    return prun.buffer(data + off, data + off + 2)


def l3_csum_replace(ctx, skb=0, offset=0, frm=0, to=0, flags=0) -> int:
    """10: update the 16-bit checksum at offset for a field changed from `from` to `to` (flags & 0xf = its
    size, 2 or 4; 0: `to` is a csum_diff result)."""
    prun, i = _current(ctx, skb)
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return _neg(EINVAL)
    field = _csum_field(prun, i, offset)
    if field is None:
        return _neg(EFAULT)
    return _replace(field, frm, to, flags & BPF_F_HDR_FIELD_MASK)


def _replace(field, frm, to, size) -> int:
    old = int(field[0]) | int(field[1]) << 8
    if size == 0:
        if frm:
            return _neg(EINVAL)
        new = csum_replace_by_diff(old, to & M32)
    elif size in (2, 4):
        new = csum_replace(old, frm, to, size)
    else:
        return _neg(EINVAL)
    field[0], field[1] = new & 0xFF, new >> 8
    return 0


def l4_csum_replace(ctx, skb=0, offset=0, frm=0, to=0, flags=0) -> int:
    """11: as l3_csum_replace for a TCP/UDP checksum (flags also PSEUDO_HDR, MARK_MANGLED_0, IPV6)."""
    prun, i = _current(ctx, skb)
    if flags & ~(BPF_F_HDR_FIELD_MASK | BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_IPV6):
        return _neg(EINVAL)
    field = _csum_field(prun, i, offset)
    if field is None:
        return _neg(EFAULT)
    mmzero = flags & BPF_F_MARK_MANGLED_0
    if mmzero and not (field[0] | field[1]):
        return 0
    r = _replace(field, frm, to, flags & BPF_F_HDR_FIELD_MASK)
    if r == 0 and mmzero and not (field[0] | field[1]):
        field[0] = field[1] = 0xFF                  # CSUM_MANGLED_0
    return r


def csum_diff(ctx, frm=0, from_size=0, to=0, to_size=0, seed=0) -> int:
    """28: csum_partial of (~from words, to words) seeded with seed: a 32-bit checksum difference."""
    fs, ts = from_size & M32, to_size & M32
    if (fs | ts) & 3 or fs + ts > CSUM_DIFF_MAX:
        return _neg(EINVAL)
    old, new = _read(ctx, frm, fs) if fs else b"", _read(ctx, to, ts) if ts else b""
    inv = bytes(~b & 0xFF for b in old)
    return csum_partial(inv + new, seed & M32)


def get_hash_recalc(ctx, skb=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """34: the packet's flow hash (FNV-1a of the IPv4/IPv6 addresses, protocol and ports; of the whole
    packet otherwise), never 0; also stored in the context's `hash`."""
    prun, i = _current(ctx, skb)
    data, end, *_ = prun.bounds(i)
    pkt = prun.buffer(data, end).tobytes()
    nh = prun.nh
    key = pkt
    if len(pkt) >= nh + 20 and pkt[nh] >> 4 == 4:
        ihl = (pkt[nh] & 15) * 4
        key = pkt[nh + 12:nh + 20] + pkt[nh + 9:nh + 10] + pkt[nh + ihl:nh + ihl + 4]
    elif len(pkt) >= nh + 40 and pkt[nh] >> 4 == 6:
        key = pkt[nh + 8:nh + 40] + pkt[nh + 6:nh + 7] + pkt[nh + 40:nh + 44]
    h = 0x811C9DC5
    for b in key:
        h = ((h ^ b) * 0x01000193) & M32
    h = h or 1
    hoff = {f.name: f.off for f in prun.ptype.fields}.get("hash")
    if hoff is not None:
        prun.kctx[hoff:hoff + 4] = list(h.to_bytes(4, "little"))
    return h


def get_socket_cookie(ctx, skb=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """46: the packet's socket cookie: packets carry no socket here, each one counts as its own (index + 1)."""
    return _current(ctx, skb)[1] + 1


def skb_pull_data(ctx, skb=0, length=0, r3=0, r4=0, r5=0) -> int:
    """39: make len bytes direct-readable: packets are linear here, so 0 unless len exceeds the packet."""
    prun, i = _current(ctx, skb)
    data, end, *_ = prun.bounds(i)
    return 0 if (length & M32) <= end - data else _neg(ENOMEM)


def skb_change_tail(ctx, skb=0, length=0, flags=0, r4=0, r5=0) -> int:
    """38: trim or grow (zero-filled, into the tailroom) the packet to len bytes."""
    prun, i = _current(ctx, skb)
    data, end, meta, head, limit = prun.bounds(i)
    n = length & M32
    if flags or n > 0xFFFF or n < prun.nh:
        return _neg(EINVAL)
    new_end = data + n
    if new_end > limit:
        return _neg(ENOMEM)
    if new_end > end:
        prun.buffer(end, new_end)[:] = 0
    prun.set_bounds(i, data, new_end, meta)
    return 0


# ---------------------------------------------------------------- xdp helpers
def xdp_adjust_head(ctx, xdp=0, delta=0, r3=0, r4=0, r5=0) -> int:
    """44: move data by delta (negative: into the headroom); metadata moves with it."""
    prun, i = _current(ctx, xdp)
    data, end, meta, head, limit = prun.bounds(i)
    off = _s32(delta)
    metalen = data - meta
    new = data + off
    if new < head + XDP_FRAME_SIZE + metalen or new > end - ETH_HLEN:
        return _neg(EINVAL)
    if metalen:
        prun.buffer(meta + off, meta + off + metalen)[:] = prun.buffer(meta, data).copy()
    prun.set_bounds(i, new, end, meta + off)
    return 0


def xdp_adjust_meta(ctx, xdp=0, delta=0, r3=0, r4=0, r5=0) -> int:
    """54: move data_meta by delta (metadata between data_meta and data: at most 32 bytes, 4-aligned)."""
    prun, i = _current(ctx, xdp)
    data, end, meta, head, limit = prun.bounds(i)
    new = meta + _s32(delta)
    if new < head + XDP_FRAME_SIZE or new > data:
        return _neg(EINVAL)
    metalen = data - new
    if metalen > XDP_META_MAX or metalen & 3:
        return _neg(EACCES)
    prun.set_bounds(i, data, end, new)
    return 0


def xdp_adjust_tail(ctx, xdp=0, delta=0, r3=0, r4=0, r5=0) -> int:
    """65: move data_end by delta (growing zero-fills from the tailroom); at least 14 bytes stay."""
    prun, i = _current(ctx, xdp)
    data, end, meta, head, limit = prun.bounds(i)
    off = _s32(delta)
    new = end + off
    if off > 0 and new > limit:
        return _neg(EINVAL)
    if new < data + ETH_HLEN:
        return _neg(EINVAL)
    if off > 0:
        prun.buffer(end, new)[:] = 0
    prun.set_bounds(i, data, new, meta)
    return 0


# ---------------------------------------------------------------- redirects
def redirect(ctx, ifindex=0, flags=0, r3=0, r4=0, r5=0) -> int:
    """23: send the packet to interface `ifindex` (recorded in PacketRun.redirects): XDP_REDIRECT for XDP
    (flags must be 0, else XDP_ABORTED), TC_ACT_REDIRECT for tc (flags: BPF_F_INGRESS, else TC_ACT_SHOT)."""
    prun, i = _current(ctx)
    xdp = prun.ptype.packet == "xdp"
    if flags & M64 & (~0 if xdp else ~BPF_F_INGRESS):
        return XDP_ABORTED if xdp else TC_ACT_SHOT
    prun.redirects[i] = ("ifindex", ifindex & M32, flags & M64)
    return XDP_REDIRECT if xdp else TC_ACT_REDIRECT


def redirect_map(ctx, map_addr=0, key=0, flags=0, r4=0, r5=0) -> int:
    """51: send the packet to entry `key` of a redirect map: a devmap / devmap_hash / cpumap / xskmap entry
    holding a non-zero target (recorded as (map type, map name, key, target)), or any entry of another map
    (recorded as ("map", name, key)). When there is none, the low two bits of flags are the verdict."""
    from ..maps import arena
    prun, i = _current(ctx)
    m = arena.map_at(map_addr)
    k = key & M32
    if m is None:
        return flags & BPF_F_ACTION_MASK
    target = getattr(m, "target", None)
    if target is not None:
        t = target(k)
        if t is None:
            return flags & BPF_F_ACTION_MASK
        prun.redirects[i] = (m.map_type, m.name, k, t)
        return XDP_REDIRECT
    try:
        present = m.get(k.to_bytes(m.key_size, "little")[:m.key_size]) is not None if m.key_size else False
    except Exception:  # noqa: BLE001 - a map without a get by key: any index below max_entries
        present = k < getattr(m, "max_entries", 0)
    if not present:
        return flags & BPF_F_ACTION_MASK
    prun.redirects[i] = ("map", getattr(m, "name", "?"), k)
    return XDP_REDIRECT


# ---------------------------------------------------------------- clocks
def jiffies64(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """118: jiffies since boot (HZ = 250)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * HZ // 1_000_000_000


def ktime_get_boot_ns(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """125: CLOCK_BOOTTIME in nanoseconds (counts suspend, unlike ktime_get_ns)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


# ---------------------------------------------------------------- native twins (the JIT)
CLOCK_BOOTTIME = 7


def _boot_ns(h: IRHelper):
    b = h.b
    ts_t = ir.LiteralStructType([I64, I64])
    ts = b.alloca(ts_t)
    b.call(h.libc("clock_gettime", ir.FunctionType(I32, [I32, ts_t.as_pointer()])),
           [ir.Constant(I32, CLOCK_BOOTTIME), ts])
    sec, nsec = (b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, k)])) for k in (0, 1))
    return b.add(b.mul(sec, c64(1_000_000_000)), nsec)


def _emit_boot_ns(module, fn, checked):
    h = IRHelper(module, fn)
    h.b.ret(_boot_ns(h))


def _emit_jiffies(module, fn, checked):
    h = IRHelper(module, fn)
    h.b.ret(h.b.udiv(h.b.mul(_boot_ns(h), c64(HZ)), c64(1_000_000_000)))


def _emit_csum_diff(module, fn, checked):
    """csum_diff: the sum of the 16-bit words of ~from and to, folded, plus seed (32-bit end-around)."""
    h = IRHelper(module, fn)
    b = h.b
    frm, to, seed = fn.args[1], fn.args[3], b.and_(fn.args[5], c64(M32))
    fs, ts = b.and_(fn.args[2], c64(M32)), b.and_(fn.args[4], c64(M32))
    acc = h.var("acc")
    bad = b.or_(b.icmp_unsigned("!=", b.and_(b.or_(fs, ts), c64(3)), c64(0)),
                b.icmp_unsigned(">", b.add(fs, ts), c64(CSUM_DIFF_MAX)))
    einval, ok = fn.append_basic_block("einval"), fn.append_basic_block("sizes_ok")
    b.cbranch(bad, einval, ok)
    b.position_at_end(einval)
    b.ret(c64(_neg(EINVAL)))
    b.position_at_end(ok)
    for k, (addr, size, invert) in enumerate(((frm, fs, True), (to, ts, False))):
        if checked:        # as _read: an unreadable source faults "load" (nothing to read when size is 0)
            good, fault = fn.append_basic_block(f"src{k}_ok"), fn.append_basic_block(f"src{k}_bad")
            readable = b.or_(b.icmp_unsigned("==", size, c64(0)), h.check(addr, size, PERM_R))
            b.cbranch(readable, good, fault)
            b.position_at_end(fault)
            h.fault("load", addr, size)
            b.position_at_end(good)
        head, body, done = (fn.append_basic_block(f"words{k}_{n}") for n in ("head", "body", "done"))
        start = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(c64(0), start)
        b.cbranch(b.icmp_unsigned("<", i, size), body, done)
        b.position_at_end(body)
        w = b.zext(b.load(b.inttoptr(b.add(addr, i), I32.as_pointer()), align=1), I64)
        if invert:
            w = b.xor(w, c64(M32))
        b.store(b.add(b.load(acc), b.add(b.and_(w, c64(0xFFFF)), b.lshr(w, c64(16)))), acc)
        i.add_incoming(b.add(i, c64(4)), body)
        b.branch(head)
        b.position_at_end(done)
    s = b.load(acc)
    for _ in range(2):
        s = b.add(b.and_(s, c64(0xFFFF)), b.lshr(s, c64(16)))
    total = b.add(s, seed)
    b.ret(b.and_(b.add(total, b.lshr(total, c64(32))), c64(M32)))


NATIVE.add("csum_diff", _emit_csum_diff, may_fault=True)
NATIVE.add("jiffies64", _emit_jiffies)
NATIVE.add("ktime_get_boot_ns", _emit_boot_ns)
NATIVE_NAMES = {"csum_diff", "jiffies64", "ktime_get_boot_ns"}

_CTX = "ptr_to_ctx"
_TABLE = (
    (9, "skb_store_bytes", skb_store_bytes, (_CTX, "anything", "ptr_to_mem", "const_size", "anything")),
    (10, "l3_csum_replace", l3_csum_replace, (_CTX, "anything", "anything", "anything", "anything")),
    (11, "l4_csum_replace", l4_csum_replace, (_CTX, "anything", "anything", "anything", "anything")),
    (23, "redirect", redirect, ("anything", "anything")),
    (26, "skb_load_bytes", skb_load_bytes, (_CTX, "anything", "ptr_to_uninit_mem", "const_size")),
    (28, "csum_diff", csum_diff, ("ptr_to_mem", "const_size_or_zero", "ptr_to_mem", "const_size_or_zero",
                                  "anything")),
    (34, "get_hash_recalc", get_hash_recalc, (_CTX,)),
    (38, "skb_change_tail", skb_change_tail, (_CTX, "anything", "anything")),
    (39, "skb_pull_data", skb_pull_data, (_CTX, "anything")),
    (44, "xdp_adjust_head", xdp_adjust_head, (_CTX, "anything")),
    (46, "get_socket_cookie", get_socket_cookie, (_CTX,)),
    (51, "redirect_map", redirect_map, ("const_map_ptr", "anything", "anything")),
    (54, "xdp_adjust_meta", xdp_adjust_meta, (_CTX, "anything")),
    (65, "xdp_adjust_tail", xdp_adjust_tail, (_CTX, "anything")),
    (118, "jiffies64", jiffies64, ()),
    (125, "ktime_get_boot_ns", ktime_get_boot_ns, ()),
)
PACKET_HELPERS = [Helper(i, name, py, args, native=name if name in NATIVE_NAMES else None)
                  for i, name, py, args in _TABLE]
