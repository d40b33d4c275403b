"""The LLVM JIT: lowering (lower.py), compilation and cache (compiler.py), native run loops and the
engine object (engine.py). `JITEngine` has the same `run` contract as the interpreter."""
from .engine import JITEngine

__all__ = ["JITEngine"]
