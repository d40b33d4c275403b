"""`LpmTrieMap` (BPF_MAP_TYPE_LPM_TRIE): longest-prefix-match map with the kernel's key layout
`{u32 prefixlen (host order); u8 data[key_size - 4] (network order)}`.

Creation rules as the kernel's trie_alloc: key_size 5..260 (1..256 data bytes), value_size >= 1,
map_flags must include BPF_F_NO_PREALLOC (the default here) and nothing outside the kernel's mask.
Lookup (`m[key]`, map_lookup_elem) returns the value of the longest stored prefix that matches the key's
first prefixlen bits; update and delete act on the exact prefix (trailing data bits are ignored, as in the
kernel); a full map refuses new prefixes with ENOSPC. get_next_key / iteration follow the kernel's order
(post-order of the trie: more specific prefixes first, the 0-branch before the 1-branch).

Python keys: raw key bytes, `(prefixlen, data)` with data as bytes (zero-padded), an int (big-endian) or
an ipaddress address, or a string "10.0.0.0/8" / "2001:db8::/32" / "10.1.2.3" (full length).
Iteration yields `(prefixlen, data bytes)` tuples (or `key_type` values when one is given).
Storage is a hash map of masked keys plus per-length counts; the operations are native_lpm.py's.
"""
from __future__ import annotations

import ipaddress

import numpy as np

from ..errors import ConfigError
from . import layout as L
from .base import from_bytes, storage
from .hash import HashMap

LPM_DATA_MAX = 256
# kernel LPM_CREATE_FLAG_MASK: BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
LPM_FLAG_MASK = L.BPF_F_NO_PREALLOC | 0x4 | 0x8 | 0x10 | 0x80 | 0x100


class LpmTrieMap(HashMap):
    map_type = "lpm_trie"

    def __init__(self, key_size=None, value_size=None, max_entries: int = 1, *, flags: int = L.BPF_F_NO_PREALLOC,
                 **kw):
        if not flags & L.BPF_F_NO_PREALLOC:
            raise ConfigError("an LPM trie needs BPF_F_NO_PREALLOC in map_flags (as in the kernel)", "flags")
        if flags & ~LPM_FLAG_MASK:
            raise ConfigError(f"unsupported LPM trie map_flags {flags:#x}", "flags")
        super().__init__(key_size, value_size, max_entries, flags=flags, **kw)

    def _setup(self):
        ks = self.key_size
        if not 5 <= ks <= 4 + LPM_DATA_MAX:
            raise ConfigError(f"LPM trie keys are 4 + 1..{LPM_DATA_MAX} bytes, not {ks}", "key_size")
        values = super()._setup()
        self.data_size = ks - 4
        self.max_prefixlen = 8 * self.data_size
        n = self.max_prefixlen + 1
        self._counts = storage(8 * n)
        self._bitmap = storage(8 * ((n + 63) // 64))
        self._orig = storage(self.max_entries * L.round8(ks))
        self._hashes = np.ndarray(self.max_entries, dtype=np.uint64, buffer=self._meta,
                                  offset=int(self._field("HASHES") - self._meta.ctypes.data))
        self._fill(LPM=1, LPM_MAXLEN=self.max_prefixlen, LPM_COUNTS=self._counts.ctypes.data,
                   LPM_BITMAP=self._bitmap.ctypes.data, LPM_ORIG=self._orig.ctypes.data)
        return values

    # ---- keys ----
    def _data(self, data) -> bytes:
        if isinstance(data, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            data = data.packed
        elif isinstance(data, str):
            data = ipaddress.ip_address(data).packed
        elif isinstance(data, int):
            if not 0 <= data < 1 << (8 * self.data_size):
                raise ValueError(f"LPM data {data:#x} does not fit in {self.data_size} bytes")
            data = data.to_bytes(self.data_size, "big")
        data = bytes(data)
        if len(data) > self.data_size:
            raise ValueError(f"LPM data of {len(data)} bytes is longer than the map's {self.data_size}")
        return data.ljust(self.data_size, b"\0")

    def _key(self, key) -> bytes:
        if isinstance(key, str):
            if "/" in key:
                net = ipaddress.ip_network(key, strict=False)
                key = (net.prefixlen, net.network_address)
            else:
                addr = ipaddress.ip_address(key)
                key = (8 * len(addr.packed), addr)
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[0], int):
                raise ValueError("an LPM key tuple is (prefixlen, data)")
            if not 0 <= key[0] <= 0xFFFFFFFF:
                raise ValueError(f"prefixlen {key[0]} out of range")
            return key[0].to_bytes(4, "little") + self._data(key[1])
        return super()._key(key)

    # ---- the kernel's get_next_key order ----
    def _entries(self) -> list[bytes]:
        """Stored keys (as last written) in the kernel's iteration order."""
        used = np.flatnonzero(self._hashes).tolist()
        kstride = L.round8(self.key_size)
        mv = memoryview(self._orig)
        keys = [bytes(mv[e * kstride:e * kstride + self.key_size]) for e in used]
        return sorted(keys, key=self._order)

    def _order(self, raw: bytes) -> str:
        plen = int.from_bytes(raw[:4], "little")
        bits = format(int.from_bytes(raw[4:], "big"), f"0{self.max_prefixlen}b")[:plen]
        return bits + "2"          # post-order: a prefix after everything below it, 0-branch first

    def _masked(self, raw: bytes) -> tuple[int, str]:
        plen = int.from_bytes(raw[:4], "little")
        return plen, format(int.from_bytes(raw[4:], "big"), f"0{self.max_prefixlen}b")[:plen]

    def _next_raw(self, raw: bytes | None) -> bytes | None:
        keys = self._entries()
        if not keys:
            return None
        if raw is None or int.from_bytes(raw[:4], "little") > self.max_prefixlen:
            return keys[0]
        want = self._masked(raw)
        for i, k in enumerate(keys):
            if self._masked(k) == want:
                return keys[i + 1] if i + 1 < len(keys) else None
        return keys[0]                       # not in the map: restart (kernel)

    def get_next_key(self, key=None):
        nxt = self._next_raw(None if key is None else self._key(key))
        return None if nxt is None else self._typed_key(nxt)

    def _typed_key(self, raw: bytes):
        if self.key_type is not None:
            return from_bytes(raw, self.key_type)
        return int.from_bytes(raw[:4], "little"), raw[4:]

    def __iter__(self):
        for raw in self._entries():
            yield self._typed_key(raw)

    def items(self) -> list:
        return [(k, self._read_value(self.lib.py_lookup(self.desc_addr, raw, 0, L.LOOKUP_NO_TOUCH)))
                for raw, k in ((r, self._typed_key(r)) for r in self._entries())]

    def lookup_exact(self, key):
        """The value stored for exactly this prefix (no longest-prefix match), or None."""
        raw = self._key(key)
        want = self._masked(raw)
        for k in self._entries():
            if self._masked(k) == want:
                return self._read_value(self.lib.py_lookup(self.desc_addr, k, 0, L.LOOKUP_NO_TOUCH))
        return None

    def clear(self) -> None:
        super().clear()


__all__ = ["LpmTrieMap"]
