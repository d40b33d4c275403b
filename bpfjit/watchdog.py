"""Stopping runs from outside, for both engines: per-call timeouts and Ctrl-C.

One daemon thread (started on first use) waits for the earliest armed deadline and, once `watch_sigint()`
was called on the main thread, for SIGINT: Python's C-level signal handler writes the signal number to the
wakeup fd (`signal.set_wakeup_fd`, installed only when nobody else has one), which wakes this thread even
while the main thread is inside a long native call with the GIL released. Python's default SIGINT handler
is replaced by an equivalent that counts the SIGINTs Python handled (`_on_sigint`), so a SIGINT the main
thread already turned into KeyboardInterrupt (it was running Python code) stops no later native run.

Firing calls the hooks engines registered with `add_hook(fire, clear)`: `fire(ident, reason, request)` with
reason STOP_TIMEOUT (the request of thread `ident` passed its deadline) or STOP_INTERRUPT (Ctrl-C, thread =
the main thread, request None); `clear(ident)` after a fired request is disarmed. The interpreter lowers the
running RunState's limit (its meter points then stop the run); the JIT writes the reason into the thread's
state blocks, which checked code polls at its meter points. Nothing here knows an engine or runs a program.
"""
from __future__ import annotations

from typing import Any

import heapq
import itertools
import math
import os
import select
import signal
import socket
import threading
import time

from .errors import ConfigError

STOP_TIMEOUT = 1          # the same codes as jit/state.py STOP_* (a leaf module each; test_safety checks)
STOP_INTERRUPT = 2
MAX_TIMEOUT = 1e9         # seconds

lock = threading.Lock()          # guards everything here; engines take it to (un)register what hooks touch
_heap: list = []                              # (deadline, seq, StopRequest)
_seq = itertools.count()
ARMED: dict[int, "StopRequest"] = {}          # thread ident -> the armed request of its call in progress
_HOOKS: list = []                             # (fire, clear)
_thread: threading.Thread | None = None
_wake_r: Any = None
_wake_w: Any = None                           # socketpair: arm() wakes the thread for an earlier deadline
_sig_r: Any = None                            # read end of the signal wakeup fd (None: not watching)
_sig_state = None                             # None: not tried yet; True: watching; False: someone else's fd


class StopRequest:
    """One armed timeout: the thread it stops, its deadline, whether it fired; `interp` is the interpreter's
    RunState while one runs under this request."""
    __slots__ = ("ident", "deadline", "fired", "done", "interp")

    def __init__(self, ident: int, deadline: float):
        self.ident, self.deadline = ident, deadline
        self.fired = self.done = False
        self.interp: Any = None


def check_timeout(timeout) -> float:
    """A timeout from the caller: a positive finite number of seconds (<= MAX_TIMEOUT), else ConfigError."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigError(f"must be a number of seconds or None; got {type(timeout).__name__}", "timeout")
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise ConfigError(f"must be in (0, {MAX_TIMEOUT:g}] seconds; got {timeout!r}", "timeout")
    return float(timeout)


def add_hook(fire, clear=None) -> None:
    """Register an engine's reaction to a stop (called under the watchdog's lock: keep it short)."""
    _HOOKS.append((fire, clear))


def arm(seconds: float) -> StopRequest:
    """Arm a timeout of `seconds` for the calling thread's next runs (until `disarm`)."""
    req = StopRequest(threading.get_ident(), time.monotonic() + seconds)
    _start()
    with lock:
        ARMED[req.ident] = req
        heapq.heappush(_heap, (req.deadline, next(_seq), req))
        first = _heap[0][2] is req
    if first:
        _wake()
    return req


def disarm(req: StopRequest) -> bool:
    """End the request (before the watchdog fires it, or after); True if it fired. After a fired request the
    engines clear their stop flags (no late fire can follow: both happen under the lock)."""
    with lock:
        req.done = True
        req.interp = None
        if ARMED.get(req.ident) is req:
            del ARMED[req.ident]
        if req.fired:
            for _, clear in _HOOKS:
                if clear is not None:
                    clear(req.ident)
        return req.fired


def watch_sigint() -> bool:
    """Watch for Ctrl-C (call from the main thread; once). False when another wakeup fd is installed (an
    asyncio loop's, say): then Ctrl-C reaches a native run only when it ends, and docs say so."""
    global _sig_state, _sig_r
    if _sig_state is not None:
        return _sig_state
    if threading.current_thread() is not threading.main_thread():
        return False
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    try:
        old = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        old = None
    if old != -1:
        if old is not None:
            signal.set_wakeup_fd(old)          # someone else listens: leave theirs in place
        r.close()
        w.close()
        _sig_state = False
        return False
    _sig_r, _sig_state = r, True
    _keep.append(w)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    _start()
    _wake()
    return True


_keep: list = []          # the wakeup fd's socket stays open for the life of the process
_handled = [0]            # SIGINTs Python's handler has run for (main thread)
_seen = [0]               # SIGINTs the watchdog has read from the wakeup fd


def _on_sigint(signum, frame):
    """Python's default Ctrl-C behaviour (KeyboardInterrupt), counted: a SIGINT the main thread has already
    handled in Python when the watchdog reads it (the main thread was not in native code) stops nothing."""
    _handled[0] += 1
    signal.default_int_handler(signum, frame)


def _interrupt_pending(data: bytes) -> bool:
    """Whether a SIGINT read now should stop the main thread's native run."""
    n = data.count(signal.SIGINT)
    if not n:
        return False
    _seen[0] += n
    handler = signal.getsignal(signal.SIGINT)
    if handler is _on_sigint:
        return _handled[0] < _seen[0]
    return handler is signal.default_int_handler


def _start() -> None:
    global _thread, _wake_r, _wake_w
    if _thread is not None:
        return
    with lock:
        if _thread is not None:
            return
        _wake_r, _wake_w = socket.socketpair()
        _wake_r.setblocking(False)
        _wake_w.setblocking(False)
        _thread = threading.Thread(target=_loop, name="bpfjit-watchdog", daemon=True)
        _thread.start()


def _wake() -> None:
    try:
        _wake_w.send(b"\0")
    except (BlockingIOError, OSError):
        pass                   # the thread has unread wake-ups already


def _drain(sock) -> bytes:
    try:
        return sock.recv(4096)
    except (BlockingIOError, OSError):
        return b""


def _fire(ident: int, reason: int, req) -> None:
    for fire, _ in _HOOKS:
        try:
            fire(ident, reason, req)
        except Exception:  # noqa: BLE001 - the watchdog thread must survive a hook's failure
            pass


def _after_fork_in_child() -> None:
    """A forked child has no watchdog thread (and may not share the parent's wakeup socket): start over."""
    global lock, _thread, _wake_r, _wake_w, _sig_r, _sig_state
    lock = threading.Lock()
    _heap.clear()
    ARMED.clear()
    if _sig_state:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
    _thread = _wake_r = _wake_w = _sig_r = _sig_state = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _loop() -> None:
    while True:
        with lock:
            now = time.monotonic()
            while _heap and (_heap[0][2].done or _heap[0][0] <= now):
                _, _, req = heapq.heappop(_heap)
                if not req.done:
                    req.fired = True
                    _fire(req.ident, STOP_TIMEOUT, req)
            wait = max(0.0, _heap[0][0] - now) if _heap else None
        socks = [_wake_r] if _sig_r is None else [_wake_r, _sig_r]
        ready, _, _ = select.select(socks, [], [], wait)
        for s in ready:
            data = _drain(s)
            if s is _sig_r and _interrupt_pending(data):
                with lock:
                    _fire(threading.main_thread().ident or 0, STOP_INTERRUPT, None)
