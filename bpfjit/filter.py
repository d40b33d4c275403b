"""`Filter`: one program applied to many fixed-size records, on all cores, in chunks, with progress.

    f = Filter(source)                       # Program, assembly text, raw bytecode, or a BPF ELF object
    f.mask(records, threads=None)  -> bool array (r0 != 0 per record)
    f.apply(records, threads=None) -> the records whose r0 != 0 (same type as the input)
    f.r0(records, threads=None)    -> uint64 array of r0 per record
    f.stream(chunks, mode="mask")  -> one result per chunk of an iterator of record arrays

Lives here: the record adapters (numpy structured or 2-D uint8 arrays, np.memmap views, pandas DataFrames,
pyarrow RecordBatch/Table of fixed-width columns: each becomes C-contiguous rows of packed bytes, one chunk
at a time), the split of a batch into chunks run by a pool of Python threads (each calls `VM.run_batch`,
which runs natively with the GIL released in the JIT, on per-thread state), the conversion of a fault's
chunk-local record index into the global one, and the optional progress bar (tqdm).
Not here: executing programs (vm.py and the engines), Dask (dask.py), map merging (dask.py).
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ConfigError, RuntimeFault
from .program import Config, Program

__all__ = ["Filter", "open_records", "record_dtype", "default_threads", "MIN_CHUNK"]

MIN_CHUNK = 1 << 16          # records per native call when splitting: amortises the ~µs call overhead
MAX_CHUNK = 1 << 20          # records per chunk when streaming a large array (bounds memory and progress steps)
MODES = ("mask", "apply", "r0")


def default_threads() -> int:
    """The cores this process may run on (sched_getaffinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------------------------ record adapters
def _kind(records) -> str:
    """"numpy" | "pandas" | "arrow" for an accepted record container; ConfigError otherwise."""
    if isinstance(records, np.ndarray):
        return "numpy"
    mod = type(records).__module__
    if mod.startswith("pandas") and type(records).__name__ == "DataFrame":
        return "pandas"
    if mod.startswith("pyarrow") and type(records).__name__ in ("RecordBatch", "Table"):
        return "arrow"
    raise ConfigError("must be a numpy array (2-D uint8 or 1-D structured, np.memmap included), a pandas "
                      f"DataFrame or a pyarrow RecordBatch/Table; got a {type(records).__name__}", "records")


def _arrow_dtype(table) -> np.dtype:
    import pyarrow as pa  # type: ignore[import-untyped]
    fields = []
    for field in table.schema:
        t = field.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_fixed_size_binary(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t)):
            raise ConfigError(f"column {field.name!r} has type {t}, which is not fixed-width (integers, floats, "
                              "booleans, timestamps, durations, fixed_size_binary)", "records")
        if pa.types.is_fixed_size_binary(t):
            fields.append((field.name, f"V{t.byte_width}"))
        elif pa.types.is_boolean(t):
            fields.append((field.name, "?"))
        else:
            fields.append((field.name, np.dtype(t.to_pandas_dtype()).newbyteorder("<")))
    return np.dtype(fields)


def record_dtype(records) -> np.dtype:
    """The record layout a program sees for `records`: numpy arrays keep theirs (a 2-D uint8 row is a
    record); DataFrame and Arrow columns are packed in column order with no padding, little-endian."""
    kind = _kind(records)
    if kind == "numpy":
        return records.dtype if records.ndim == 1 else np.dtype((records.dtype, records.shape[1:]))
    if kind == "pandas":
        return np.dtype([(str(c), records[c].to_numpy().dtype.newbyteorder("<")) for c in records.columns])
    return _arrow_dtype(records)


def _length(records) -> int:
    if isinstance(records, np.ndarray):
        if records.ndim == 0:
            raise ConfigError("must have one record per row; got a 0-d array", "records")
        return len(records)
    return records.num_rows if hasattr(records, "num_rows") else len(records)


def _rows(records, kind: str, start: int, stop: int) -> np.ndarray:
    """Records start..stop as a C-contiguous numpy array for VM.run_batch (a view when the input already
    is one, e.g. a memmap; a packed copy of the chunk for DataFrames, Arrow and strided arrays)."""
    if kind == "numpy":
        part = records[start:stop]
        return part if part.flags.c_contiguous else np.ascontiguousarray(part)
    if kind == "pandas":
        part = records.iloc[start:stop]
        dt = record_dtype(records)
        out = np.empty(len(part), dtype=dt)
        for name, col in zip(dt.names or (), part.columns):
            out[name] = part[col].to_numpy()
        return out
    part = records.slice(start, stop - start)
    dt = _arrow_dtype(part)
    out = np.empty(part.num_rows, dtype=dt)
    for name in dt.names or ():
        col = part.column(name)
        if col.null_count:
            raise ConfigError(f"column {name!r} has {col.null_count} nulls; a record needs every field",
                              "records")
        arr = col.to_numpy(zero_copy_only=False) if hasattr(col, "to_numpy") else np.asarray(col)
        out[name] = arr.view(dt[name]) if dt[name].kind == "V" else arr
    return out


def _select(records, kind: str, mask: np.ndarray):
    if kind == "numpy":
        return records[mask]
    if kind == "pandas":
        return records[mask]
    import pyarrow as pa
    return records.filter(pa.array(mask))


def open_records(path, dtype=None, *, record_size: int | None = None, mode: str = "r") -> np.ndarray:
    """A file of fixed-size records as an np.memmap (pages are read as chunks touch them, so a file larger
    than memory streams through): 1-D of `dtype`, or 2-D uint8 rows of `record_size` bytes."""
    if (dtype is None) == (record_size is None):
        raise ConfigError("give exactly one of dtype= and record_size=", "open_records")
    dt = np.dtype(dtype) if dtype is not None else np.dtype((np.uint8, (record_size,)))
    size = Path(path).stat().st_size
    if dt.itemsize <= 0 or size % dt.itemsize:
        raise ConfigError(f"{path}: {size} bytes is not a whole number of {dt.itemsize}-byte records",
                          "open_records")
    n = size // dt.itemsize
    if n == 0:
        return np.zeros(0, dtype=dt)
    shape = (n, dt.itemsize) if dtype is None else (n,)
    return np.memmap(path, dtype=np.uint8 if dtype is None else dt, mode=mode, shape=shape)  # type: ignore[call-overload]


# ------------------------------------------------------------------------------------------------ progress
class _Quiet:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, progress, desc: str = "bpfjit filter"):
    """A tqdm bar when `progress` is True, or None (auto) and stderr is a terminal; quiet otherwise (also when
    tqdm is not installed: `pip install bpfjit[progress]`)."""
    if progress is False or (progress is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())):
        return _Quiet()
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return _Quiet()
    return tqdm(total=total, desc=desc, unit="rec", unit_scale=True, file=sys.stderr, leave=False)


# -------------------------------------------------------------------------------------------------- Filter
def _load(source, engine: str, config, runtime, helpers, maps, program: str | None):
    """(VM, runtime) for any accepted source."""
    from .vm import VM
    if maps:
        from .runtime import Runtime
        if runtime is None:
            runtime = Runtime(config=config)
        for name, m in maps.items():
            runtime.add_map(m, name)
    is_path = isinstance(source, os.PathLike)
    if is_path or isinstance(source, (bytes, bytearray)) and bytes(source[:4]) == b"\x7fELF":
        return _load_elf(source, engine, config, runtime, program)
    if isinstance(source, str):
        prog = runtime.assemble(source) if runtime is not None else Program.from_asm(source, config or Config())
    elif isinstance(source, (bytes, bytearray)):
        prog = Program.from_bytes(bytes(source), config or Config())
    elif isinstance(source, Program):
        prog = source
    else:
        raise ConfigError("must be a Program, assembly text, raw bytecode (bytes) or the path of a BPF ELF "
                          f"object; got a {type(source).__name__}", "source")
    return VM(prog, engine, config, helpers=helpers, runtime=runtime), runtime


def _load_elf(source, engine: str, config, runtime, name: str | None):
    from .elf import ObjectFile
    from .runtime import Runtime
    from .vm import VM
    obj = ObjectFile.open(bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source))
    if name is None:
        if len(obj.programs) != 1:
            raise ConfigError(f"{obj.name} has {len(obj.programs)} programs; choose one with program= "
                              f"({', '.join(obj.programs) or 'none'})", "program")
        name = next(iter(obj.programs))
    spec = obj.programs[name]
    if runtime is None:
        kv = {} if spec.kern_version is None else {"kern_version": spec.kern_version}
        runtime = Runtime(config=config, **kv)
    loaded = obj.load(runtime, config, programs=[spec.name])
    return VM(loaded.programs[spec.name], engine, config, runtime=loaded.runtime), loaded.runtime


class Filter:
    """A program applied to batches of records. `source`: a Program, assembly text, raw bytecode, or a BPF
    ELF object (a path or its bytes; `program=` names one when it has several). `maps`: name -> map, added
    to a Runtime (made for you unless `runtime=` is given) so assembly can say `map(NAME)`.

    threads=None runs on every core (JIT; the interpreter holds the GIL, so it defaults to one thread);
    progress=None shows a tqdm bar on long jobs when stderr is a terminal, False never, True always.
    """

    def __init__(self, source, *, engine: str = "jit", config: Config | None = None, runtime=None, helpers=None,
                 maps: dict | None = None, program: str | None = None, progress=None, chunk: int | None = None,
                 readonly: bool = True):
        self.source = source
        self.vm, self.runtime = _load(source, engine, config, runtime, helpers, maps, program)
        self.engine = engine
        self.maps = dict(maps or {})
        self.progress = progress
        self.chunk = chunk
        self.readonly = readonly

    open_records = staticmethod(open_records)       # Filter.open_records(path, dtype): a memmap of records
    default_threads = staticmethod(default_threads)   # the cores threads=None uses

    def __repr__(self) -> str:
        return f"<Filter {self.engine} {len(self.vm.program.insns)} instructions>"

    # ---- public API ----
    def r0(self, records, threads: int | None = None, *, progress=None) -> np.ndarray:
        """uint64 r0 of every record."""
        return self._run(records, threads, progress)

    def mask(self, records, threads: int | None = None, *, progress=None) -> np.ndarray:
        """True where the program returned non-zero."""
        return self._run(records, threads, progress) != 0

    def apply(self, records, threads: int | None = None, *, progress=None):
        """The records the program keeps (r0 != 0), in the input's own type."""
        kind = _kind(records)
        return _select(records, kind, self.mask(records, threads, progress=progress))

    def stream(self, chunks: Iterable, mode: str = "mask", threads: int | None = None, *, progress=None,
               total: int | None = None) -> Iterator:
        """Run over an iterator of record arrays (any accepted type), yielding mask / apply / r0 per chunk.
        A fault's `.record` is the index counted from the first record of the stream."""
        if mode not in MODES:
            raise ConfigError(f"must be one of {', '.join(MODES)}; got {mode!r}", "mode")
        bar = progress_bar(total, self.progress if progress is None else progress)
        done = 0
        try:
            for chunk in chunks:
                kind = _kind(chunk)
                n = _length(chunk)
                try:
                    r0 = self._run(chunk, threads, False)
                except RuntimeFault as e:
                    e.record = None if e.record is None else e.record + done
                    raise
                done += n
                bar.update(n)
                yield r0 if mode == "r0" else (r0 != 0 if mode == "mask" else _select(chunk, kind, r0 != 0))
        finally:
            bar.close()

    # ---- running ----
    def threads_for(self, threads: int | None) -> int:
        if threads is None:
            return default_threads() if self.engine == "jit" else 1
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ConfigError(f"must be a positive int or None (all cores); got {threads!r}", "threads")
        return int(threads)

    def _bounds(self, n: int, threads: int) -> list[tuple[int, int]]:
        """Chunks of the batch: at least MIN_CHUNK records each (or `chunk=`), at most MAX_CHUNK, and
        enough of them to keep `threads` workers busy."""
        size = self.chunk or min(MAX_CHUNK, max(MIN_CHUNK, -(-n // (threads * 4))))
        return [(s, min(n, s + size)) for s in range(0, n, size)]

    def _run(self, records, threads, progress) -> np.ndarray:
        kind = _kind(records)
        n = _length(records)
        threads = self.threads_for(threads)
        bounds = self._bounds(n, threads)
        run_batch, ro = self.vm.run_batch, self.readonly
        out = np.empty(n, dtype=np.uint64)

        def one(bound: tuple[int, int]) -> int:
            s, e = bound
            try:
                out[s:e] = run_batch(_rows(records, kind, s, e), readonly=ro)
            except RuntimeFault as err:
                err.record = None if err.record is None else err.record + s
                raise
            return e - s

        if not bounds:
            return out
        bar = progress_bar(n, self.progress if progress is None else progress) if len(bounds) > 1 else _Quiet()
        if kind == "numpy" and (len(bounds) == 1 or threads == 1 and isinstance(bar, _Quiet) and not self.chunk):
            # one thread and nothing to show: the whole batch in one native call (no chunking cost)
            return run_batch(records if records.flags.c_contiguous else np.ascontiguousarray(records), readonly=ro)
        try:
            if threads == 1:
                for b in bounds:
                    bar.update(one(b))
                return out
            with ThreadPoolExecutor(max_workers=min(threads, len(bounds)),
                                    thread_name_prefix="bpfjit-filter") as pool:
                futures = [pool.submit(one, b) for b in bounds]
                first: RuntimeFault | None = None
                for fut in futures:             # in record order: the lowest faulting record wins
                    if fut.cancelled():
                        continue
                    try:
                        bar.update(fut.result())
                    except RuntimeFault as err:
                        if first is None:
                            first = err
                            for f in futures:
                                f.cancel()
                if first is not None:
                    raise first
            return out
        finally:
            bar.close()

