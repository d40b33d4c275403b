"""Helper functions: the registry (id -> prototype + Python implementation + native implementation).

`registry.py` defines `Helper` and `HelperRegistry`; `builtin.py` registers the kernel helpers.
`default_registry()` returns the process-wide registry both engines use unless given another.
"""
from .registry import Helper, HelperContext, HelperRegistry, TailCall, default_registry, helper_ids

__all__ = ["Helper", "HelperRegistry", "HelperContext", "TailCall", "default_registry", "helper_ids"]
