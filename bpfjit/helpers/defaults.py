"""The default helper registries: the built-in kernel and packet helpers (`default_registry`, process-wide) and a
runtime's registry (`runtime_registry`: a copy plus the map helpers). `helper_ids()` is what the assembler
resolves `call NAME` with when no registry is given. Nothing else lives here.
"""
from __future__ import annotations

from .builtin import BUILTIN_HELPERS
from .packet import PACKET_HELPERS
from .registry import HelperRegistry

_DEFAULT: HelperRegistry | None = None


def default_registry() -> HelperRegistry:
    """The process-wide registry with the built-in kernel helpers."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = HelperRegistry(BUILTIN_HELPERS + PACKET_HELPERS)
    return _DEFAULT


def runtime_registry() -> HelperRegistry:
    """A new registry for one runtime: the built-in helpers plus the map helpers."""
    from .map_helpers import register_map_helpers
    return register_map_helpers(default_registry().copy())


def helper_ids() -> dict[str, int]:
    """name -> id of the default registry (the assembler resolves `call NAME` with it)."""
    return default_registry().names()
