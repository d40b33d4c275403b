"""The one description of map descriptors and map constants, read by numpy (Python side) and by the IR
(native side): descriptor slot indexes, map type and implementation codes, errno values, update flags,
ring-buffer record header bits, the lookup/update cpu selectors.

A map's descriptor is DESC_SLOTS uint64 words in the descriptor arena (arena.py); its address is the map
pointer programs hold (`lddw map_fd(N)`) and what the map helpers receive in r1. Nothing here allocates
or runs anything.
"""
from __future__ import annotations

import errno as _errno

MAGIC = int.from_bytes(b"bpfjmap1", "little")   # slot MAGIC of a live descriptor (0 once freed)
DESC_SLOTS = 64                                   # u64 words per descriptor (a power of two)
DESC_BYTES = DESC_SLOTS * 8
MAX_MAPS = 4096                                   # descriptors in the arena (live maps per process)

# ---- descriptor slots (u64 index). Common fields first, then per implementation kind. ----
FIELDS: dict[str, int] = {
    "MAGIC": 0,          # MAGIC while the map lives
    "TYPE": 1,           # kernel map type code (MAP_TYPES)
    "KIND": 2,           # implementation kind (KIND_*)
    "KEY_SIZE": 3,
    "VALUE_SIZE": 4,
    "MAX_ENTRIES": 5,
    "MAP_FLAGS": 6,      # creation flags (kept, not interpreted)
    "NCPUS": 7,          # value copies per element: 1, or the cpu count of a per-cpu map / perf array
    "STRIDE": 8,         # bytes between value copies: value_size rounded up to 8
    "DATA": 9,           # address of the value storage / prog table / ring data
    "DATA_SIZE": 10,     # bytes at DATA
    "LRU": 11,           # 1: hash map evicting its least recently used element when full
    "SLOT": 12,          # index of this descriptor in the arena
    # hash kinds: preallocated entries, chained buckets of entry indexes (-1 ends a chain)
    "CAPACITY": 16,      # entries (= max_entries)
    "KEY_STRIDE": 17,    # key_size rounded up to 8
    "KEYS": 18,          # entry keys (CAPACITY * KEY_STRIDE bytes)
    "BUCKETS": 19,       # i64[NBUCKETS]: first entry of each chain
    "NBUCKETS": 20,      # a power of two
    "NEXT": 21,          # i64[CAPACITY]: next entry in the chain
    "FNEXT": 22,         # i64[CAPACITY]: next entry in the free list
    "HASHES": 23,        # u64[CAPACITY]: hash of the entry's key with HASH_USED set; 0 when free
    "FREE": 24,          # first free entry (-1: none)
    "COUNT": 25,         # entries in use
    "LRU_PREV": 26,      # i64[CAPACITY]: recency list (towards the most recent)
    "LRU_NEXT": 27,      # i64[CAPACITY]: recency list (towards the least recent)
    "LRU_HEAD": 28,      # most recently used entry (-1: none)
    "LRU_TAIL": 29,      # least recently used entry (-1: none)
    "LOCK": 32,          # spinlock word of updates/deletes (0 free, 1 held)
    # queue/stack: a circular array of SLOTS = max_entries + 1 values at DATA (STRIDE apart)
    "SLOTS": 33,
    "HEAD": 34,          # next slot to push into
    "TAIL": 35,          # oldest element (HEAD == TAIL: empty)
    # ring buffer: its control block (CTL_* words) lives in the descriptor at RING_CTL
    "RING_CTL": 40,
    # perf event array: per-cpu rings, each with a CTL_SLOTS control block at PERF_CTL + i * CTL_BYTES
    "PERF_CTL": 48,      # address of the control blocks
    "PERF_BUF": 49,      # bytes of each cpu's ring (a power of two); ring i data at DATA + i * PERF_BUF
    # LPM trie (a hash kind keyed by masked keys, see native_lpm.py)
    "LPM": 56,           # 1: the hash map is an LPM trie
    "LPM_MAXLEN": 57,    # max prefixlen: 8 * (key_size - 4)
    "LPM_COUNTS": 58,    # i64[LPM_MAXLEN + 1]: entries per prefix length
    "LPM_BITMAP": 59,    # u64 words: bit L set while LPM_COUNTS[L] > 0
    "LPM_ORIG": 60,      # keys as last written, KEY_STRIDE apart (entry order)
}
assert len(set(FIELDS.values())) == len(FIELDS) and max(FIELDS.values()) < DESC_SLOTS

# ring control block (u64 words from RING_CTL / each PERF_CTL row)
CTL_LOCK, CTL_PROD, CTL_CONS, CTL_LOST = 0, 1, 2, 3
CTL_SLOTS = 8                                     # one cache line per control block
CTL_BYTES = CTL_SLOTS * 8
assert FIELDS["RING_CTL"] + CTL_SLOTS <= FIELDS["PERF_CTL"]

# ---- map types (kernel enum bpf_map_type) and implementation kinds ----
MAP_TYPES: dict[str, int] = {
    "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5, "percpu_array": 6,
    "lru_hash": 9, "lru_percpu_hash": 10, "queue": 22, "stack": 23, "ringbuf": 27,
    "lpm_trie": 11,
    "devmap": 14, "cpumap": 16, "xskmap": 17, "devmap_hash": 25,
    "array_of_maps": 12, "hash_of_maps": 13,
}
KIND_ARRAY, KIND_HASH, KIND_PROG_ARRAY, KIND_RINGBUF, KIND_PERF, KIND_QUEUE = 1, 2, 3, 4, 5, 6
KV_KINDS = (KIND_ARRAY, KIND_HASH)               # maps with lookup/update/delete/get_next_key

# ---- errno (negative in helper results) ----
ENOENT, E2BIG, EAGAIN, ENOMEM, EFAULT, EEXIST, EINVAL, ENOSPC = (
    _errno.ENOENT, _errno.E2BIG, _errno.EAGAIN, _errno.ENOMEM, _errno.EFAULT, _errno.EEXIST, _errno.EINVAL,
    _errno.ENOSPC)

# ---- update flags ----
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

# ---- map creation flags ----
BPF_F_NO_PREALLOC = 1

# ---- cpu selectors of the native lookup/update (a cpu index >= 0 selects that copy) ----
CPU_CURRENT = -1      # the calling thread's cpu (per-cpu maps), copy 0 otherwise
CPU_ALL = -2          # update: the value buffer holds NCPUS values, STRIDE bytes apart
LOOKUP_NO_TOUCH = 1   # lookup flag: do not mark an LRU element as used (Python-side reads)

HASH_USED = 1 << 63   # set in every stored hash, so a free entry (hash 0) never matches

# ---- ring buffer records: an 8-byte header {u32 len | flags, u32 offset / 8} then the data, the whole
# record padded to 8 bytes. A record never wraps: when it does not fit before the end of the data area,
# the producer fills the rest with a discarded record and starts again at offset 0. ----
RB_BUSY = 1 << 31
RB_DISCARD = 1 << 30
RB_LEN_MASK = RB_DISCARD - 1
RB_HDR = 8
RB_MAX_SIZE = 1 << 30
# bpf_ringbuf_query flags; bpf_ringbuf_output/submit wake-up flags (accepted and ignored)
RB_QUERY = {"avail_data": 0, "ring_size": 1, "cons_pos": 2, "prod_pos": 3}
RB_WAKEUP_FLAGS = 3
# bpf_perf_event_output flags
F_INDEX_MASK = 0xFFFFFFFF
F_CURRENT_CPU = 0xFFFFFFFF

MAX_RINGS = 1024      # ring table rows (ring buffers alive at once), see arena.py


def round8(n: int) -> int:
    return (n + 7) & ~7
