"""Built-in kernel helpers with the kernel's ids and prototypes (Python implementations).

Each helper's native twin for the JIT is named by `Helper.native` and emitted by jit/native_helpers.py.
Map and trace helpers are added by the runtime (issue 4); this module holds the ones that need no runtime.
"""
from __future__ import annotations

import time

from .registry import Helper


def ktime_get_ns(ctx, r1=0, r2=0, r3=0, r4=0, r5=0) -> int:
    """Monotonic clock in nanoseconds (helper 5). The conformance suite's helper 5 only needs to succeed."""
    return time.monotonic_ns()


BUILTIN_HELPERS = [
    Helper(5, "ktime_get_ns", ktime_get_ns, (), "integer", native="ktime_get_ns"),
]
