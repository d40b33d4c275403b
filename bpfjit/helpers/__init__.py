"""Helper functions: the registry (id -> prototype + Python implementation + native implementation).

`registry.py` defines `Helper` and `HelperRegistry` (the table, nothing built in); `builtin.py`,
`trace.py` and `map_helpers.py` define the kernel helpers; `defaults.py` builds the registries from them:
`default_registry()` (the process-wide one both engines use unless given another) and `runtime_registry()`.
"""
from .registry import Helper, HelperContext, HelperRegistry, TailCall

_DEFAULTS = ("default_registry", "helper_ids", "runtime_registry")


def __getattr__(name: str):
    """The registry builders come from defaults.py on first use (it imports the helper implementations)."""
    if name in _DEFAULTS:
        from . import defaults
        return getattr(defaults, name)
    raise AttributeError(f"module 'bpfjit.helpers' has no attribute {name!r}")

__all__ = ["Helper", "HelperRegistry", "HelperContext", "TailCall", "default_registry", "helper_ids",
           "runtime_registry"]
