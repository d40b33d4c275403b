"""The on-disk store of compiled object code: one `<key>.o` (the object) and one `<key>.json` (its size
and whatever the caller needs to load it) per key, in a per-user directory, bounded in size.

Location: $BPFJIT_CACHE_DIR if set ("0" or "" turns the disk cache off), else $XDG_CACHE_HOME/bpfjit,
else ~/.cache/bpfjit. Bound: `LIMIT` bytes ($BPFJIT_CACHE_MAX, default 256 MiB); the least recently used
entries are evicted. Writes are atomic (temporary file + rename), so concurrent processes never read a
half-written entry; a damaged entry reads as a miss. Keys come from the caller (compiler.cache_key);
nothing here knows about LLVM or programs.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

LIMIT = int(os.environ.get("BPFJIT_CACHE_MAX", 256 << 20))


def default_cache_dir() -> Path | None:
    """Where compiled code is kept across processes (None: disk cache off)."""
    env = os.environ.get("BPFJIT_CACHE_DIR")
    if env is not None:
        return None if env.strip() in ("", "0") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "bpfjit"


_DIR: Path | None = default_cache_dir()


def set_disk_cache(path: str | os.PathLike | None) -> None:
    """Keep compiled objects in `path` across processes (None turns the disk cache off)."""
    global _DIR
    _DIR = Path(path) if path is not None else None


def disk_cache_dir() -> Path | None:
    return _DIR


def _paths(key: str) -> tuple[Path, Path]:
    assert _DIR is not None, "the disk cache is off"
    return _DIR / f"{key}.o", _DIR / f"{key}.json"


def load(key: str) -> tuple[bytes, dict] | None:
    """(object bytes, metadata) stored under key, or None."""
    if _DIR is None:
        return None
    obj_p, meta_p = _paths(key)
    try:
        meta = json.loads(meta_p.read_text())
        obj = obj_p.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("size") != len(obj):
        return None
    try:
        os.utime(meta_p)                 # recently used: evicted last
    except OSError:
        pass
    return obj, meta


def store(key: str, obj: bytes, meta: dict) -> None:
    if _DIR is None:
        return
    try:
        _DIR.mkdir(parents=True, exist_ok=True)
        obj_p, meta_p = _paths(key)
        for p, data in ((obj_p, obj), (meta_p, json.dumps(dict(meta, size=len(obj))).encode())):
            tmp = p.with_suffix(p.suffix + f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        evict()
    except OSError:
        pass


def evict() -> None:
    """Keep the directory under LIMIT bytes: remove the least recently used entries."""
    entries, total = [], 0
    if _DIR is None:
        return
    for meta in _DIR.glob("*.json"):
        obj = meta.with_suffix(".o")
        try:
            size = meta.stat().st_size + obj.stat().st_size
            entries.append((meta.stat().st_mtime, meta, obj, size))
        except OSError:
            continue
        total += size
    entries.sort()
    while total > LIMIT and entries:
        _, meta, obj, size = entries.pop(0)
        for p in (meta, obj):
            try:
                p.unlink()
            except OSError:
                pass
        total -= size
