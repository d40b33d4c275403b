"""Lowering of ALU, byte-swap and jump instructions (a mixin of lower.FunctionLowering).

BPF defines results where LLVM has undefined behaviour (division by zero, INT_MIN / -1, oversized
shifts): the guards live here. Memory, calls and entry points live in lower_mem / lower_calls /
lower_entry.
"""
from __future__ import annotations

from llvmlite import ir

from ..program import jump_target
from .irlib import I32, I64, c64, ity

_ICMP = {"jeq": ("u", "=="), "jne": ("u", "!="), "jgt": ("u", ">"), "jge": ("u", ">="), "jlt": ("u", "<"),
         "jle": ("u", "<="), "jsgt": ("s", ">"), "jsge": ("s", ">="), "jslt": ("s", "<"), "jsle": ("s", "<=")}
_SIMPLE = {"add": "add", "sub": "sub", "mul": "mul", "or": "or_", "and": "and_", "xor": "xor"}
_SHIFT = {"lsh": "shl", "rsh": "lshr", "arsh": "ashr"}


def alu(bld: ir.IRBuilder, op: str, a, b, bits: int):
    """BPF ALU semantics over LLVM values a, b of the operation width."""
    t = ity(bits)
    zero, one, minus1 = ir.Constant(t, 0), ir.Constant(t, 1), ir.Constant(t, -1)
    if op in _SIMPLE:
        return getattr(bld, _SIMPLE[op])(a, b)
    if op in _SHIFT:
        return getattr(bld, _SHIFT[op])(a, bld.and_(b, ir.Constant(t, bits - 1)))
    if op == "mov":
        return b
    if op in ("div", "mod"):
        bz = bld.icmp_unsigned("==", b, zero)
        safe = bld.select(bz, one, b)
        r = bld.udiv(a, safe) if op == "div" else bld.urem(a, safe)
        return bld.select(bz, zero if op == "div" else a, r)
    if op in ("sdiv", "smod"):
        bz = bld.icmp_unsigned("==", b, zero)
        bm1 = bld.icmp_unsigned("==", b, minus1)
        safe = bld.select(bld.or_(bz, bm1), one, b)
        if op == "sdiv":
            r = bld.select(bm1, bld.sub(zero, a), bld.sdiv(a, safe))
            return bld.select(bz, zero, r)
        r = bld.select(bm1, zero, bld.srem(a, safe))
        return bld.select(bz, a, r)
    if op.startswith("movsx"):
        n = int(op[5:])
        return bld.sext(bld.trunc(b, ity(n)), t) if n < bits else b
    if op == "neg":
        return bld.sub(zero, a)
    raise AssertionError(op)  # pragma: no cover


class AluMixin:
    """ALU, swaps and jumps; each returns the next pc, or None when the instruction ends the block."""

    def emit_alu(self, pc, f, ins):
        b = self.b
        bits = 64 if f.is64 else 32
        a = self.reg(ins.dst)
        bv = self.reg(ins.src) if f.srcreg else c64(ins.imm)
        if bits == 32:
            a, bv = b.trunc(a, I32), b.trunc(bv, I32)
        r = alu(b, f.op, a, bv, bits)
        self.set(ins.dst, b.zext(r, I64) if bits == 32 else r)
        return pc + 1

    def emit_swap(self, pc, f, ins):
        b = self.b
        v = self.reg(ins.dst)
        if f.width < 64:
            v = b.trunc(v, ity(f.width))
        if f.op != "le":
            v = b.call(self.low.module.declare_intrinsic("llvm.bswap", [ity(f.width)]), [v])
        self.set(ins.dst, b.zext(v, I64) if f.width < 64 else v)
        return pc + 1

    def emit_cond_jump(self, pc, f, ins):
        b = self.b
        bits = 64 if f.is64 else 32
        a = self.reg(ins.dst)
        bv = self.reg(ins.src) if f.srcreg else c64(ins.imm)
        if bits == 32:
            a, bv = b.trunc(a, I32), b.trunc(bv, I32)
        if f.op == "jset":
            cond = b.icmp_unsigned("!=", b.and_(a, bv), ir.Constant(ity(bits), 0))
        else:
            sign, pred = _ICMP[f.op]
            cond = (b.icmp_signed if sign == "s" else b.icmp_unsigned)(pred, a, bv)
        self.flush()
        b.cbranch(cond, self.blocks[pc + 1 + ins.off], self.blocks[pc + 1])
        return None

    def emit_ja(self, pc, f, ins):
        self.flush()
        self.b.branch(self.blocks[jump_target(pc, ins, f)])
        return None

    def emit_lddw(self, pc, f, ins):
        self.set(ins.dst, c64(self.low.lddw[pc]))
        return pc + 2
