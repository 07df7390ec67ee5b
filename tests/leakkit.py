"""Reference and memory leaks: repeating an operation must not grow anything
(tests/test_leaks_*.py, one file per part; this module is the detector and
what they share).

Repeated runs of each operation leave no growth in tracemalloc's and gc's
object counts, nor in sys.gettotalrefcount where a debug build is available.

How the detector works (:func:`assert_no_growth`):

* the operation runs ``warmup`` times first, so caches, free lists, lazily
  built tables and thread-local state reach their steady size;
* then it runs in blocks of ``runs`` repetitions.  Before the first block and
  after each one, every metric is sampled after a full ``gc.collect()`` (and
  after the optional ``settle()``, which waits for work the operation handed
  to other threads, so items in flight are not mistaken for a leak):

  - ``gc objects``: ``len(gc.get_objects())``, every live GC-tracked object;
  - ``tracemalloc``: bytes still allocated by the Python allocators since
    tracing started, leaving out tracemalloc's, pytest's, pluggy's and
    hypothesis's own allocations;
  - ``malloc``: bytes in use in the C heap (glibc ``mallinfo2``), which sees
    the compiled backend's own ``malloc``'d arrays that tracemalloc does not;
  - ``refcount``: ``sys.gettotalrefcount()``, on debug builds only;

* a metric leaks when its growth exceeds ``slack + per_run * runs`` in every
  block.  Two blocks are measured; when some metric is over its limit in
  both, up to three more confirm.  A leak grows in every block, in proportion
  to the repetitions; noise (a dict that resized once, a thread still winding
  down) does not repeat block after block, and is absorbed by the slack.  On
  3.13t under load, process-wide registries (``threading._dangling``, the
  pool's live set, weakref.finalize's registry: their dead entries go later
  there) reached new high-water sizes in three blocks running, each resize a
  2 KiB step of tracemalloc growth, failing a clean Pipeline case once; five
  blocks in a row of that is what a leak does, not a resize.  Measured
  on 3.11 and 3.13t, clean operations grow by at most 3 objects, 2.5 KiB
  traced and 9 KiB of C heap in a block after the first (tracemalloc's own
  tables and glibc's bookkeeping account for most of the heap figure): the
  slacks (8 objects, 4 KiB, 16 KiB) sit above that, and far below what one
  leaked item, slot array or traceback per repetition adds up to.

The limits are small enough that one leaked GC-tracked object per repetition
fails (the default ``runs`` make ``per_run * runs + slack`` well below
``runs``), which ``test_detector_*`` below checks with deliberately leaking
operations.  The items handed to the structures are fresh GC-tracked
:class:`Token` objects, so a missing ``Py_DECREF`` in the compiled code keeps
one alive per repetition and shows in the object count.

Operations cover every public method of each primitive on both backends
(``impl``), the error paths (Timeout, Full/Empty, ChannelClosed, a wait
interrupted by a signal handler that raises, as Ctrl-C does), dropping each
structure with items inside, and the high layer built on each backend.

The second half checks directly, with weak references, that items handed to
each container are released after pop/close/drop, and that popped items stay
alive while the caller holds them (an extra ``Py_DECREF`` would free them
early).

All tests are ``thread_unsafe``: they read process-wide gc and tracemalloc
state that another test running at the same time would disturb.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
import tracemalloc
import weakref
from collections.abc import Callable
from dataclasses import dataclass

# ---------------------------------------------------------------- the detector


class Token:
    """A fresh item per repetition: GC-tracked (so a leaked one shows in the
    object count) and weak-referenceable (for the release checks)."""

    __slots__ = ("n", "__weakref__")

    def __init__(self, n: int = 0) -> None:
        self.n = n


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_reader() -> Callable[[], int] | None:
    """Bytes in use in the C heap, from glibc's mallinfo2 (None elsewhere,
    and under AddressSanitizer: its allocator replaces glibc's, so mallinfo2
    sees none of it; LeakSanitizer judges the C heap there)."""
    if not sys.platform.startswith("linux") or "libasan" in os.environ.get("LD_PRELOAD", ""):
        return None
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []

    def read() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return read


_MALLOC = _malloc_reader()

# Allocations by the measuring machinery itself are not the operation's.
_TRACE_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "*/linecache.py"),
    tracemalloc.Filter(False, "*/_pytest/*"),
    tracemalloc.Filter(False, "*/pytest/*"),
    tracemalloc.Filter(False, "*/pluggy/*"),
    tracemalloc.Filter(False, "*/hypothesis/*"),
]


def _gc_objects() -> int:
    return len(gc.get_objects())


def _collect() -> None:
    for _ in range(3):  # a collection can free what unlocks the next one
        if not gc.collect():
            break


# What gc.get_objects() and gc.collect() allocate and keep is the
# collector's own (on 3.13t each call keeps a couple of KiB more).
_TRACE_FILTERS += [
    tracemalloc.Filter(False, __file__, lineno=_gc_objects.__code__.co_firstlineno + 1),
    tracemalloc.Filter(False, __file__, lineno=_collect.__code__.co_firstlineno + 2),
]


def _traced() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(_TRACE_FILTERS)
    return sum(trace.size for trace in snapshot.traces)


@dataclass(frozen=True)
class Metric:
    name: str
    read: Callable[[], int]
    slack: int  # growth per block that never counts (one-off noise)
    per_run: float  # growth per repetition that does not count either

    def limit(self, runs: int) -> float:
        return self.slack + self.per_run * runs


def _metrics() -> list[Metric]:
    found = [
        Metric("gc objects", _gc_objects, slack=8, per_run=0.25),
        Metric("tracemalloc bytes", _traced, slack=4096, per_run=4.0),
    ]
    if _MALLOC is not None:
        found.append(Metric("malloc bytes", _MALLOC, slack=16384, per_run=8.0))
    if hasattr(sys, "gettotalrefcount"):
        found.append(Metric("refcount", sys.gettotalrefcount, slack=32, per_run=0.25))
    return found


def _sample(metrics: list[Metric], settle: Callable[[], object] | None) -> dict[str, int]:
    if settle is not None:
        settle()
    _collect()
    return {m.name: m.read() for m in metrics}


def assert_no_growth(op: Callable[[], object], *, warmup: int, runs: int,
                     settle: Callable[[], object] | None = None, blocks: int = 5) -> int:
    """Fail when running ``op()`` again and again grows memory or objects.

    See the module docstring.  Returns how many repetitions were measured
    (for the tally).  ``settle``, when given, is called before each sample
    to wait for work ``op`` left to other threads.
    """
    assert runs > 0 and blocks >= 2
    for _ in range(warmup):
        op()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        metrics = _metrics()
        before = _sample(metrics, settle)
        growth: dict[str, list[int]] = {m.name: [] for m in metrics}
        measured = 0
        leaking: list[Metric] = []
        for block in range(blocks):
            for _ in range(runs):
                op()
            measured += runs
            after = _sample(metrics, settle)
            for m in metrics:
                growth[m.name].append(after[m.name] - before[m.name])
            before = after
            leaking = [m for m in metrics
                       if all(g > m.limit(runs) for g in growth[m.name])]
            if block >= 1 and not leaking:
                break
    finally:
        if started:
            tracemalloc.stop()
    if leaking:
        details = "; ".join(
            f"{m.name} grew {growth[m.name]} per block of {runs} runs "
            f"(limit {m.limit(runs):.0f})" for m in leaking)
        raise AssertionError(f"leak: {details}")
    return measured


def assert_dies(ref: weakref.ref[object], what: str, patience: float = 5.0) -> None:
    """The referent of ``ref`` is freed (after a collection, for cycles)."""
    if ref() is not None:
        gc.collect()
    if ref() is not None:
        # A worker thread may still hold it for a moment (the task it just
        # ran); free-threaded builds may also free an object another thread
        # last touched a little later (merged reference counts).
        deadline = time.monotonic() + patience
        while ref() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
            gc.collect()
    obj = ref()
    if obj is not None:
        holders = [type(h).__name__ for h in gc.get_referrers(obj)
                   if h is not sys._getframe()]
        raise AssertionError(f"{what} is still alive, held by {holders}")


def assert_all_die(refs: list[weakref.ref[Token]], what: str) -> None:
    gc.collect()
    alive = [r for r in refs if r() is not None]
    if alive:
        assert_dies(alive[0], f"{what} ({len(alive)} of {len(refs)} items)")


# ---------------------------------------------------------------- operations

# make(impl) -> (op, settle, cleanup)
Made = tuple[Callable[[], object], Callable[[], object] | None, Callable[[], object] | None]


class Cases(dict):
    """name -> (make, warmup, runs): one test file's operations, registered
    with ``@cases.case(name)``, run by :func:`run_case`."""

    def case(self, name: str, *, warmup: int = 50, runs: int = 200):  # noqa: ANN201
        def register(make: Callable[..., Made]) -> Callable[..., Made]:
            assert name not in self
            self[name] = (make, warmup, runs)
            return make
        return register


def run_case(cases: Cases, impl: object, name: str) -> int:
    """The operation named ``name`` repeated without growth; returns how
    many repetitions were measured."""
    make, warmup, runs = cases[name]
    op, settle, cleanup = make(impl)
    try:
        return assert_no_growth(op, warmup=warmup, runs=runs, settle=settle)
    finally:
        if cleanup is not None:
            cleanup()


def echo(x: object) -> object:
    return x


def just(op: Callable[[], object]) -> Made:
    return op, None, None


# ---------------------------------------------------------------- items are released


def tokens(n: int) -> tuple[list[Token], list[weakref.ref[Token]]]:
    items = [Token(i) for i in range(n)]
    return items, [weakref.ref(t) for t in items]


def check_popped(popped: list[object], refs: list[weakref.ref[Token]], what: str) -> None:
    """Popped items are alive (and intact) while held, freed once dropped."""
    gc.collect()
    held = [r for r in refs if r() is not None]
    assert len(held) >= len(popped), f"{what}: a popped item was freed while still held"
    assert all(isinstance(obj, Token) and isinstance(obj.n, int) for obj in popped)
    refs_of_popped = [weakref.ref(obj) for obj in popped]
    popped.clear()
    assert_all_die(refs_of_popped, f"{what}: popped items")
