"""Reference and memory leaks: repeating an operation must not grow anything.

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

import array
import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import JOIN_TIMEOUT, load_backend

from fastconc import (
    Actor,
    ActorSystem,
    ChannelClosed,
    CircuitBreaker,
    CircuitOpenError,
    Empty,
    Full,
    ObjectPool,
    Pipeline,
    PoolClosed,
    ResourceUnavailable,
    Timeout,
)

pytestmark = pytest.mark.thread_unsafe(
    reason="reads process-wide gc/tracemalloc state that concurrent tests would disturb")


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


# ---------------------------------------------------------------- self-tests


_LEAKED: list[object] = []


@pytest.fixture
def leak_box() -> Iterator[list[object]]:
    yield _LEAKED
    _LEAKED.clear()


def test_detector_catches_leaked_objects(leak_box):
    def leak() -> None:
        leak_box.append(Token())

    with pytest.raises(AssertionError, match="gc objects"):
        assert_no_growth(leak, warmup=10, runs=100)


def test_detector_catches_leaked_untracked_memory(leak_box):
    # bytes are not GC-tracked: only tracemalloc can see these.
    def leak() -> None:
        leak_box.append(bytes(40))

    with pytest.raises(AssertionError, match="tracemalloc bytes") as info:
        assert_no_growth(leak, warmup=10, runs=100)
    assert "gc objects" not in str(info.value)


def test_detector_catches_a_missing_decref():
    # What a missing Py_DECREF in C code does: the object is never freed.
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    kept: list[weakref.ref[Token]] = []

    def leak() -> None:
        t = Token()
        incref(t)
        kept.append(weakref.ref(t))

    with pytest.raises(AssertionError, match="gc objects"):
        assert_no_growth(leak, warmup=5, runs=100)
    assert kept[0]() is not None
    with pytest.raises(AssertionError, match="still alive"):
        assert_dies(kept[0], "the leaked token", patience=0.1)


@pytest.mark.skipif(_MALLOC is None, reason="needs glibc's mallinfo2 (not under ASan)")
def test_detector_catches_leaked_c_heap():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks: list[int] = []
    try:
        with pytest.raises(AssertionError, match="malloc bytes") as info:
            assert_no_growth(lambda: blocks.append(libc.malloc(512)), warmup=5, runs=100)
        assert "gc objects" not in str(info.value)
    finally:
        for p in blocks:
            libc.free(p)


@pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"), reason="needs a debug build")
def test_detector_catches_a_leaked_reference_to_a_shared_object():
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    shared = Token()
    with pytest.raises(AssertionError, match="refcount"):
        assert_no_growth(lambda: incref(shared), warmup=5, runs=100)


def test_detector_passes_clean_and_one_off_growth(tally):
    cache: dict[int, Token] = {}
    counter = iter(range(10**9))

    def op() -> None:
        n = next(counter)
        if n < 150:  # bounded: fills up during warm-up and the first block
            cache[n] = Token(n)
        [Token(i) for i in range(5)]  # garbage, freed at once

    assert assert_no_growth(op, warmup=100, runs=100) >= 200


# ---------------------------------------------------------------- operations

# name -> (make(impl) -> (op, settle, cleanup), warmup, runs)
Made = tuple[Callable[[], object], Callable[[], object] | None, Callable[[], object] | None]
CASES: dict[str, tuple[Callable[..., Made], int, int]] = {}


def case(name: str, *, warmup: int = 50, runs: int = 200):  # noqa: ANN201 - decorator
    def register(make: Callable[..., Made]) -> Callable[..., Made]:
        assert name not in CASES
        CASES[name] = (make, warmup, runs)
        return make
    return register


def _just(op: Callable[[], object]) -> Made:
    return op, None, None


# --- Channel

@case("channel.send_recv")
def _(impl):
    ch = impl.Channel(4)
    return _just(lambda: (ch.send(Token()), ch.recv()))


@case("channel.try_send_try_recv")
def _(impl):
    ch = impl.Channel(1)

    def op() -> None:
        assert ch.try_send(Token())
        assert not ch.try_send(Token())  # full: refused, the item not kept
        ch.try_recv()
        try:
            ch.try_recv()
        except Empty:
            pass
    return _just(op)


@case("channel.send_many_recv_many")
def _(impl):
    ch = impl.Channel(64)

    def op() -> None:
        assert ch.send_many([Token(i) for i in range(10)]) == 10
        ch.send_many(Token(i) for i in range(5))  # a generator, not a sequence
        got = 0
        while got < 15:
            got += len(ch.recv_many(7))
    return _just(op)


@case("channel.recv_timeout")
def _(impl):
    ch = impl.Channel(1)

    def op() -> None:
        try:
            ch.recv(timeout=0)
        except Timeout:
            pass
        try:
            ch.recv_many(4, timeout=0)
        except Timeout:
            pass
    return _just(op)


@case("channel.send_timeout")
def _(impl):
    ch = impl.Channel(1)
    ch.send(Token())

    def op() -> None:
        try:
            ch.send(Token(), timeout=0)
        except Timeout:
            pass
        try:
            ch.send_many([Token(), Token()], timeout=0)
        except Timeout:
            pass
    return _just(op)


@case("channel.waits_that_time_out", warmup=10, runs=100)
def _(impl):
    # A positive timeout takes the waiting path (deadline, nogil wait), not
    # the non-blocking one that timeout=0 takes.
    empty, full = impl.Channel(1), impl.Channel(1)
    full.send(Token())

    def op() -> None:
        for call in (lambda: empty.recv(timeout=1e-4),
                     lambda: empty.recv_many(3, timeout=1e-4),
                     lambda: full.send(Token(), timeout=1e-4),
                     lambda: full.send_many([Token(), Token()], timeout=1e-4)):
            try:
                call()
            except Timeout:
                pass
    return _just(op)


@case("channel.send_many_refused")
def _(impl):
    closed = impl.Channel(4)
    closed.close()
    partial = impl.Channel(2)

    def bad() -> Iterator[Token]:
        yield Token()
        raise KeyError("bad iterable")

    def op() -> None:
        try:
            closed.send_many([Token(), Token()])
        except ChannelClosed:
            pass
        try:
            partial.send_many(bad())
        except KeyError:
            pass
        assert partial.send_many([Token(i) for i in range(5)], timeout=0) == 2
        assert len(partial.recv_many(5)) == 2
    return _just(op)


@case("channel.close_drain", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(64)  # (a leaked slot array shows: 512 bytes a run)
        ch.send_many([Token(i) for i in range(5)])
        ch.close()
        try:
            ch.send(Token())
        except ChannelClosed:
            pass
        ch.recv()
        ch.recv_many(2)
        ch.try_recv()
        ch.recv()
        try:
            ch.recv()
        except ChannelClosed:
            pass
    return _just(op)


@case("channel.iterate", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(64)
        ch.send_many([Token(i) for i in range(6)])
        ch.close()
        assert len(list(ch)) == 6
    return _just(op)


@case("channel.with_block", runs=150)
def _(impl):
    def op() -> None:
        with impl.Channel(64) as ch:
            ch.send(Token())
        assert ch.closed
    return _just(op)


@case("channel.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(64)
        ch.send_many([Token(i) for i in range(40)])
    return _just(op)


@case("channel.drop_closed_with_items", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(16)
        ch.send_many([Token(i) for i in range(16)])
        ch.close()
    return _just(op)


class _Interrupt(Exception):
    pass


def _interrupting(calls: Callable[[], list[Callable[[], object]]],
                  after: Callable[[], object] | None = None) -> Made:
    """An op that runs each blocking call of ``calls()`` and interrupts it
    from a signal handler (as Ctrl-C would): the exception comes out of the
    wait inside the structure.  ``after`` tidies up for the next run.

    A helper thread sends SIGUSR1 to the main thread every few milliseconds
    until the handler has raised: one signal could land just before the
    wait starts and be missed by it (a race inside CPython's own lock
    waits, seen on 3.13t), and ITIMER_REAL is pytest-timeout's.
    """
    import signal

    if not hasattr(signal, "pthread_kill") or not hasattr(signal, "SIGUSR1"):
        pytest.skip("needs signal.pthread_kill")
    main = threading.main_thread()
    if threading.current_thread() is not main:
        pytest.skip("signal handlers run in the main thread only")
    armed = threading.Event()  # set while a call is waiting to be interrupted
    stopping = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if armed.is_set():
            armed.clear()
            raise _Interrupt

    def kicker() -> None:
        while not stopping.is_set():
            if not armed.wait(0.05):
                continue
            time.sleep(0.002)  # let the call get into its wait
            while armed.is_set() and not stopping.is_set():
                signal.pthread_kill(main.ident, signal.SIGUSR1)  # type: ignore[arg-type]
                time.sleep(0.005)

    old = signal.signal(signal.SIGUSR1, handler)
    thread = threading.Thread(target=kicker, name="leaks-interrupter", daemon=True)
    thread.start()

    def op() -> None:
        for call in calls():
            armed.set()
            try:
                call()
                raise AssertionError("the wait was not interrupted")
            except _Interrupt:
                pass
            finally:
                armed.clear()
        if after is not None:
            after()

    def cleanup() -> None:
        stopping.set()
        thread.join(JOIN_TIMEOUT)
        signal.signal(signal.SIGUSR1, old)

    return op, None, cleanup


def _drain(ch: object) -> None:
    try:
        while True:
            ch.try_recv()  # type: ignore[attr-defined]
    except Empty:
        pass


@case("channel.interrupted_waits", warmup=5, runs=30)
def _(impl):
    empty = impl.Channel(2)
    full = impl.Channel(2)
    full.send_many([Token(), Token()])
    half = impl.Channel(2)

    def calls() -> list[Callable[[], object]]:
        half.try_send(Token())
        return [
            lambda: empty.recv(),
            lambda: empty.recv_many(4, timeout=JOIN_TIMEOUT),
            lambda: full.send(Token()),
            lambda: full.send_many([Token(i) for i in range(4)], timeout=JOIN_TIMEOUT),
            lambda: half.send_many([Token(i) for i in range(3)]),  # 1 in, 2 given back
        ]
    return _interrupting(calls, lambda: _drain(half))


@case("queue.interrupted_waits", warmup=5, runs=30)
def _(impl):
    empty = impl.Queue()
    full = impl.Queue(maxsize=1)
    full.put(Token())

    def calls() -> list[Callable[[], object]]:
        return [
            lambda: empty.get(),
            lambda: full.put(Token()),
            lambda: full.put(Token(), timeout=JOIN_TIMEOUT),
            lambda: empty.get(timeout=JOIN_TIMEOUT),
        ]
    return _interrupting(calls)


# --- Queue

@case("queue.put_get")
def _(impl):
    q = impl.Queue()

    def op() -> None:
        q.put(Token())
        q.put(Token(), timeout=1.0)
        q.get()
        q.get(timeout=1.0)
    return _just(op)


@case("queue.nowait_full_empty")
def _(impl):
    q = impl.Queue(maxsize=1)

    def op() -> None:
        q.put_nowait(Token())
        try:
            q.put_nowait(Token())
        except Full:
            pass
        try:
            q.put(Token(), timeout=0)
        except Full:
            pass
        q.get_nowait()
        try:
            q.get_nowait()
        except Empty:
            pass
        try:
            q.get(timeout=0)
        except Empty:
            pass
    return _just(op)


@case("queue.task_done_join")
def _(impl):
    q = impl.Queue()

    def op() -> None:
        q.put(Token())
        q.get()
        q.task_done()
        q.join()  # returns at once: nothing unfinished
    return _just(op)


@case("queue.shutdown", runs=150)
def _(impl):
    def op() -> None:
        q = impl.Queue(maxsize=8)
        q.put(Token())
        q.put(Token())
        q.shutdown()
        try:
            q.put(Token())
        except ChannelClosed:
            pass
        q.get()
        q.task_done()
        q.shutdown(immediate=True)  # discards the other one (and its task)
        try:
            q.get()
        except ChannelClosed:
            pass
        q.join()
    return _just(op)


@case("queue.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        q = impl.Queue()
        for i in range(20):
            q.put(Token(i))
    return _just(op)


# --- RingBuffer and SpscRingBuffer

def _ring_cases(kind: str) -> None:
    def ring(impl, capacity: int):  # noqa: ANN202
        return getattr(impl, kind)(capacity)

    @case(f"{kind}.push_pop")
    def _(impl):
        r = ring(impl, 4)
        return _just(lambda: (r.push(Token()), r.pop()))

    @case(f"{kind}.full_empty_default")
    def _(impl):
        r = ring(impl, 2)

        def op() -> None:
            assert r.push(Token()) and r.push(Token())
            assert not r.push(Token())  # full: refused, not kept
            r.pop()
            r.pop(None)
            assert r.pop(None) is None
            try:
                r.pop()
            except Empty:
                pass
        return _just(op)

    @case(f"{kind}.push_many_pop_many")
    def _(impl):
        r = ring(impl, 16)

        def op() -> None:
            assert r.push_many([Token(i) for i in range(10)]) == 10
            assert r.push_many(Token(i) for i in range(10)) == 6  # 4 refused
            assert len(r.pop_many(5)) == 5
            assert len(r.pop_many(100)) == 11
            assert r.pop_many(3) == []
        return _just(op)

    @case(f"{kind}.drop_with_items", runs=150)
    def _(impl):
        def op() -> None:
            r = ring(impl, 64)
            r.push_many([Token(i) for i in range(40)])
        return _just(op)


_ring_cases("RingBuffer")
_ring_cases("SpscRingBuffer")


# --- TypedRingBuffer

TYPECODES = "bBhHiIlLqQfd"


@case("TypedRingBuffer.push_pop", warmup=20, runs=100)
def _(impl):
    rings = [impl.TypedRingBuffer(8, code) for code in TYPECODES]

    def op() -> None:
        for r in rings:
            r.push(3)
            r.pop()
            r.pop(None)
            try:
                r.pop()
            except Empty:
                pass
    return _just(op)


@case("TypedRingBuffer.batches", warmup=20, runs=100)
def _(impl):
    rings = [(impl.TypedRingBuffer(16, code), code) for code in TYPECODES]

    def op() -> None:
        for r, code in rings:
            src = array.array(code, range(12))
            assert r.push_many(src) == 12
            assert r.push_many(memoryview(src)) == 4
            dst = array.array(code, bytes(src.itemsize * 5))
            assert r.pop_into(dst) == 5
            assert r.pop_into(memoryview(dst)) == 5
            assert len(r.pop_many(100)) == 6
    return _just(op)


@case("TypedRingBuffer.bad_buffers", warmup=20, runs=100)
def _(impl):
    ring = impl.TypedRingBuffer(8, "d")
    wrong = array.array("i", range(4))
    readonly = bytes(64)

    def op() -> None:
        for bad, method in ((wrong, ring.push_many), (readonly, ring.pop_into),
                            (object(), ring.push_many)):
            try:
                method(bad)
            except (TypeError, ValueError):
                pass
    return _just(op)


@case("TypedRingBuffer.create_drop", warmup=20, runs=100)
def _(impl):
    def op() -> None:
        for code in TYPECODES:
            r = impl.TypedRingBuffer(256, code)
            r.push(1)
    return _just(op)


# --- WorkStealingDeque

@case("WorkStealingDeque.push_pop_steal")
def _(impl):
    d = impl.WorkStealingDeque()

    def op() -> None:
        for i in range(4):
            d.push(Token(i))
        d.pop()
        d.steal()
        d.pop()
        d.steal()
        for take in (d.pop, d.steal):
            try:
                take()
            except Empty:
                pass
    return _just(op)


@case("WorkStealingDeque.grow_and_drain", runs=100)
def _(impl):
    d = impl.WorkStealingDeque()

    def op() -> None:
        for i in range(300):  # past the initial array: it grows
            d.push(Token(i))
        for _ in range(150):
            d.steal()
        for _ in range(150):
            d.pop()
    return _just(op)


@case("WorkStealingDeque.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        d = impl.WorkStealingDeque()
        for i in range(100):
            d.push(Token(i))
        d.steal()
    return _just(op)


# --- WorkStealingPool

def _pool(impl, workers: int = 2):  # noqa: ANN202
    return impl.WorkStealingPool(workers, thread_name_prefix="leaks")


def _echo(x: object) -> object:
    return x


def _fail(x: object) -> object:
    raise ValueError(x)


@case("WorkStealingPool.create_shutdown", warmup=10, runs=40)
def _(impl):
    def op() -> None:
        with _pool(impl) as pool:
            pool.submit(_echo, Token()).result(JOIN_TIMEOUT)
    return _just(op)


@case("WorkStealingPool.submit_result")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        assert isinstance(pool.submit(_echo, Token()).result(JOIN_TIMEOUT), Token)
        pool.submit(_echo, x=Token()).result(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.execute_join")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        pool.execute(_echo, Token())
        pool.execute(_echo, x=Token())
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.map", runs=100)
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        assert len(list(pool.map(_echo, [Token(i) for i in range(20)]))) == 20
        assert len(list(pool.map(_echo, [Token(i) for i in range(20)], chunksize=4))) == 20
    return op, None, pool.shutdown


@case("WorkStealingPool.exception_in_task")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        f = pool.submit(_fail, Token())
        try:
            f.result(JOIN_TIMEOUT)
        except ValueError:
            pass
        assert isinstance(f.exception(), ValueError)
        try:
            list(pool.map(_fail, [Token()]))
        except ValueError:
            pass
    return op, None, pool.shutdown


@case("WorkStealingPool.future_cancel", runs=100)
def _(impl):
    pool = _pool(impl, 1)

    def op() -> None:
        gate = threading.Event()
        blocker = pool.submit(gate.wait, JOIN_TIMEOUT)
        queued = pool.submit(_echo, Token())
        cancelled = queued.cancel()  # still queued behind the blocker
        gate.set()
        blocker.result(JOIN_TIMEOUT)
        assert cancelled and queued.cancelled()
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.shutdown_cancel_futures", warmup=10, runs=40)
def _(impl):
    def op() -> None:
        pool = _pool(impl, 1)
        gate = threading.Event()
        pool.submit(gate.wait, JOIN_TIMEOUT)
        futures = [pool.submit(_echo, Token(i)) for i in range(10)]
        pool.execute(_echo, Token())
        pool.shutdown(wait=False, cancel_futures=True)
        gate.set()
        pool.shutdown(wait=True)
        assert all(f.done() for f in futures)
    return _just(op)


@case("WorkStealingPool.execute_error_handler")
def _(impl):
    errors = [0]

    def on_error(exc: BaseException) -> None:
        assert isinstance(exc, ValueError)
        errors[0] += 1

    pool = impl.WorkStealingPool(2, thread_name_prefix="leaks", error_handler=on_error)

    def op() -> None:
        pool.execute(_fail, Token())
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.drop_without_shutdown", warmup=5, runs=30)
def _(impl):
    # The workers hold only the core, never the pool: dropping the pool
    # closes the core and they exit.  settle() waits for them.
    def op() -> None:
        pool = impl.WorkStealingPool(2, thread_name_prefix="leaks-dropped")
        pool.submit(_echo, Token()).result(JOIN_TIMEOUT)
        pool.execute(_echo, Token())

    def settle() -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while any(t.name.startswith("leaks-dropped") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the dropped pools' workers did not exit"
            time.sleep(0.001)
    return op, settle, None


# --- the high layer (built on the backend under test)

class Echo(Actor):
    def handle_message(self, msg: object) -> object:
        return msg


@case("ActorSystem.tell_ask")
def _(impl):
    system = ActorSystem(2, backend=impl)
    ref = system.spawn(Echo)

    def op() -> None:
        ref.tell(Token())
        assert isinstance(ref.ask(Token()), Token)  # answered inline
        assert isinstance(ref.ask(Token(), timeout=JOIN_TIMEOUT), Token)  # via a worker
        assert isinstance(ref.ask_async(Token()).result(JOIN_TIMEOUT), Token)
    return op, lambda: ref.ask(None, timeout=JOIN_TIMEOUT), system.shutdown


@case("ActorSystem.spawn_stop", runs=100)
def _(impl):
    system = ActorSystem(2, backend=impl)
    last: list[object] = []

    def op() -> None:
        ref = system.spawn(Echo)
        ref.tell(Token())
        ref.ask(Token(), timeout=JOIN_TIMEOUT)
        ref.stop()
        last[:] = [ref]

    def settle() -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while last and last[0].is_alive and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)
        assert system._pool.join(JOIN_TIMEOUT)

    return op, settle, system.shutdown


@case("ActorSystem.create_shutdown", warmup=5, runs=30)
def _(impl):
    def op() -> None:
        with ActorSystem(2, backend=impl) as system:
            system.spawn(Echo).ask(Token(), timeout=JOIN_TIMEOUT)
    return _just(op)


def _inc(t: Token) -> Token:
    return Token(t.n + 1)


def _join_new_threads(before: set[threading.Thread]) -> Callable[[], None]:
    """A settle step: each run's threads end on their own after it (its pool
    is shut down without waiting); join them so a loaded machine's slower
    thread exits are not counted as growth."""
    def settle() -> None:
        for t in threading.enumerate():
            if t not in before and t is not threading.current_thread():
                t.join(JOIN_TIMEOUT)
                assert not t.is_alive(), f"{t.name} did not end"
    return settle


@case("Pipeline.map", warmup=5, runs=30)
def _(impl):
    p = Pipeline([_inc, _inc], backend=impl)
    before = set(threading.enumerate())

    def op() -> None:
        assert [t.n for t in p.map(Token(i) for i in range(20))] == list(range(2, 22))
    return op, _join_new_threads(before), None


@case("Pipeline.start_send_recv_close", warmup=5, runs=30)
def _(impl):
    before = set(threading.enumerate())

    def op() -> None:
        p = Pipeline([_inc], backend=impl).start()
        for i in range(5):
            p.send(Token(i))
        for _ in range(5):
            p.recv(JOIN_TIMEOUT)
        p.close()
        try:
            p.recv(JOIN_TIMEOUT)
        except ChannelClosed:
            pass
        assert p.join(JOIN_TIMEOUT)
    return op, _join_new_threads(before), None


@case("Pipeline.send_recv")
def _(impl):
    p = Pipeline([_inc], backend=impl).start()

    def op() -> None:
        p.send(Token())
        p.recv(JOIN_TIMEOUT)

    def cleanup() -> None:
        p.close()
        p.join(JOIN_TIMEOUT)
    return op, None, cleanup


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@case("ObjectPool.get_put_acquire")
def _(impl):
    pool = ObjectPool(Token, 2, backend=impl)

    def op() -> None:
        a = pool.get()
        with pool.acquire() as b:
            assert b is not a
        pool.put(a)
        c = pool.get(timeout=0)
        pool.invalidate(c)  # destroyed: the next get makes a new one
        x, y = pool.get(), pool.get()
        try:
            pool.get(timeout=0)
        except ResourceUnavailable:
            pass
        pool.put(x)
        pool.put(y)
    return op, None, pool.close


@case("ObjectPool.prune")
def _(impl):
    clock = FakeClock()
    pool = ObjectPool(Token, 3, max_idle=10, clock=clock, backend=impl)

    def op() -> None:
        objs = [pool.get() for _ in range(3)]
        for obj in objs:
            pool.put(obj)
        clock.now += 11
        assert pool.prune() == 3
    return op, None, pool.close


@case("ObjectPool.close", runs=150)
def _(impl):
    def op() -> None:
        pool = ObjectPool(Token, 4, min_size=2, backend=impl)
        out = pool.get()
        pool.put(pool.get())
        pool.close()
        try:
            pool.get()
        except PoolClosed:
            pass
        pool.put(out)  # destroyed as it comes back
    return _just(op)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_growth(impl, name, tally):
    make, warmup, runs = CASES[name]
    op, settle, cleanup = make(impl)
    try:
        measured = assert_no_growth(op, warmup=warmup, runs=runs, settle=settle)
    finally:
        if cleanup is not None:
            cleanup()
    tally.add(leak_checks=measured)


# --- CircuitBreaker (uses no backend primitive: run once)

def _ok(t: Token) -> Token:
    return t


def _boom(t: Token) -> Token:
    raise OSError(t.n)


BREAKER_CASES: dict[str, Callable[[], Callable[[], object]]] = {}


def _breaker_success() -> Callable[[], object]:
    b = CircuitBreaker(5, 30.0, clock=FakeClock())
    return lambda: b.call(_ok, Token())


def _breaker_failure() -> Callable[[], object]:
    b = CircuitBreaker(10**9, 30.0, clock=FakeClock())

    def op() -> None:
        try:
            b.call(_boom, Token())
        except OSError:
            pass
        b.call(_ok, Token())
    return op


def _breaker_open() -> Callable[[], object]:
    b = CircuitBreaker(1, 30.0, clock=FakeClock())
    try:
        b.call(_boom, Token())
    except OSError:
        pass

    def op() -> None:
        try:
            b.call(_ok, Token())
        except CircuitOpenError:
            pass
        else:
            raise AssertionError("the open breaker let a call through")
    return op


def _breaker_decorator_and_with() -> Callable[[], object]:
    b = CircuitBreaker(10**9, 30.0, clock=FakeClock())
    wrapped = b(_boom)

    def op() -> None:
        try:
            wrapped(Token())
        except OSError:
            pass
        try:
            with b:
                raise KeyError(Token())
        except KeyError:
            pass
    return op


BREAKER_CASES = {
    "success": _breaker_success,
    "failure": _breaker_failure,
    "open_rejection": _breaker_open,
    "decorator_and_with": _breaker_decorator_and_with,
}


@pytest.mark.parametrize("name", sorted(BREAKER_CASES))
def test_breaker_no_growth(name, tally):
    tally.add(leak_checks=assert_no_growth(BREAKER_CASES[name](), warmup=50, runs=200))


# ---------------------------------------------------------------- items are released


def _tokens(n: int) -> tuple[list[Token], list[weakref.ref[Token]]]:
    items = [Token(i) for i in range(n)]
    return items, [weakref.ref(t) for t in items]


def _check_popped(popped: list[object], refs: list[weakref.ref[Token]], what: str) -> None:
    """Popped items are alive (and intact) while held, freed once dropped."""
    gc.collect()
    held = [r for r in refs if r() is not None]
    assert len(held) >= len(popped), f"{what}: a popped item was freed while still held"
    assert all(isinstance(obj, Token) and isinstance(obj.n, int) for obj in popped)
    refs_of_popped = [weakref.ref(obj) for obj in popped]
    popped.clear()
    assert_all_die(refs_of_popped, f"{what}: popped items")


def _release_channel(impl) -> int:
    ch = impl.Channel(16)
    items, refs = _tokens(12)
    ch.send_many(items[:6])
    list(map(ch.send, items[6:9]))  # (no loop variable left holding an item)
    assert ch.try_send(items[9])
    del items[:10]
    popped = [ch.recv(), ch.try_recv(), *ch.recv_many(3)]
    _check_popped(popped, refs[:5], "Channel.recv")
    ch.close()
    popped = [ch.recv(), *ch.recv_many(2)]
    _check_popped(popped, refs[5:8], "Channel.recv after close")
    assert [r() is not None for r in refs[8:10]] == [True, True], "items inside were freed"
    items.clear()  # the two never sent
    del ch  # closed with two items left inside
    assert_all_die(refs, "items left in a dropped Channel")
    return 12


def _release_queue(impl) -> int:
    q = impl.Queue(maxsize=10)
    items, refs = _tokens(10)
    list(map(q.put, items[:5]))
    list(map(q.put_nowait, items[5:8]))
    items.clear()
    _check_popped([q.get(), q.get_nowait(), q.get(timeout=1.0)], refs[:3], "Queue.get")
    q.shutdown(immediate=True)  # discards the rest at once
    assert_all_die(refs[3:8], "items discarded by Queue.shutdown(immediate=True)")
    q2 = impl.Queue()
    items, refs2 = _tokens(5)
    list(map(q2.put, items))
    items.clear()
    del q2
    assert_all_die(refs2, "items left in a dropped Queue")
    return 13


def _release_ring(kind: str) -> Callable[..., int]:
    def check(impl) -> int:
        r = getattr(impl, kind)(16)
        items, refs = _tokens(20)
        assert r.push_many(items[:10]) == 10
        assert all(map(r.push, items[10:16]))
        assert not r.push(items[16])
        assert r.push_many(items[16:]) == 0
        items.clear()
        assert_all_die(refs[16:], f"items {kind} refused when full")
        _check_popped([r.pop(), r.pop(None), *r.pop_many(3)], refs[:5], f"{kind}.pop")
        del r  # 11 left inside
        assert_all_die(refs, f"items left in a dropped {kind}")
        return 20
    return check


def _release_deque(impl) -> int:
    d = impl.WorkStealingDeque()
    items, refs = _tokens(200)  # enough to grow the array
    list(map(d.push, items))
    items.clear()
    _check_popped([d.pop(), d.steal(), d.pop(), d.steal()], [refs[0], refs[1], refs[198],
                                                            refs[199]], "WorkStealingDeque")
    del d
    assert_all_die(refs, "items left in a dropped WorkStealingDeque")
    return 200


def _release_pool(impl) -> int:
    pool = _pool(impl, 1)
    items, refs = _tokens(30)
    gate = threading.Event()
    pool.submit(gate.wait, JOIN_TIMEOUT)
    done = [pool.submit(_echo, t) for t in items[:10]]
    pool.execute(_echo, items[10])
    queued = [pool.submit(_echo, t) for t in items[11:16]]
    assert all(f.cancel() for f in queued)
    mapped, late_items = items[16:20], items[20:]
    items.clear()
    gate.set()
    assert [f.result(JOIN_TIMEOUT).n for f in done] == list(range(10))
    assert [t.n for t in pool.map(_echo, mapped)] == list(range(16, 20))
    mapped.clear()
    assert pool.join(JOIN_TIMEOUT)
    del done
    assert_all_die(refs[:11] + refs[16:20], "arguments and results of finished tasks")
    assert_all_die(refs[11:16], "arguments of cancelled tasks")
    gate2 = threading.Event()
    pool.submit(gate2.wait, JOIN_TIMEOUT)
    late = [pool.submit(_echo, t) for t in late_items]
    late_items.clear()
    pool.shutdown(wait=False, cancel_futures=True)
    gate2.set()
    pool.shutdown(wait=True)
    assert all(f.cancelled() for f in late)
    del late, queued
    assert_all_die(refs, "arguments of tasks cancelled by shutdown")
    return 30


def _release_high_layer(impl) -> int:
    # Actor messages and the actor itself.
    system = ActorSystem(2, backend=impl)
    ref = system.spawn(Echo)
    items, refs = _tokens(10)
    list(map(ref.tell, items[:5]))
    replies = [ref.ask(t, timeout=JOIN_TIMEOUT) for t in items[5:]]
    items.clear()
    assert len(replies) == 5
    del replies
    cell = weakref.ref(ref._cell)
    ref.stop()
    system.shutdown(JOIN_TIMEOUT)
    del ref
    assert_all_die(refs, "messages handled by an actor")
    assert_dies(cell, "a stopped actor's cell")
    del system
    # Pipeline items.
    p = Pipeline([_echo, _echo], backend=impl)
    items, refs = _tokens(20)
    assert len(list(p.map(iter(items)))) == 20
    items.clear()
    del p
    assert_all_die(refs, "items that went through a Pipeline")
    # ObjectPool objects are released by close().
    pool = ObjectPool(Token, 4, min_size=2, backend=impl)
    a, b = pool.get(), pool.get()
    objs = [weakref.ref(a), weakref.ref(b)]
    pool.put(a)
    del a
    pool.close()
    assert_dies(objs[0], "an idle object of a closed ObjectPool")
    pool.put(b)
    del b
    assert_dies(objs[1], "an object put back into a closed ObjectPool")
    return 32


def _release_cycles(impl) -> int:
    """An item that refers back to its container: the pair is garbage once
    dropped, which the collector can see only if the container traverses
    the items it holds."""
    makers: list[tuple[str, Callable[[], object], str]] = [
        ("Channel", lambda: impl.Channel(4), "send"),
        ("closed Channel", lambda: impl.Channel(4), "send"),
        ("Queue", impl.Queue, "put"),
        ("RingBuffer", lambda: impl.RingBuffer(4), "push"),
        ("SpscRingBuffer", lambda: impl.SpscRingBuffer(4), "push"),
        ("WorkStealingDeque", impl.WorkStealingDeque, "push"),
    ]
    for what, make, put in makers:
        container = make()
        item = Token()
        item.n = container  # type: ignore[assignment]
        getattr(container, put)(item)
        if what.startswith("closed"):
            container.close()  # type: ignore[attr-defined]
        refs = [weakref.ref(container), weakref.ref(item)]
        del container, item
        assert_all_die(refs, f"a {what} in a reference cycle with its item")
    return len(makers)


RELEASE_CASES: dict[str, Callable[..., int]] = {
    "Channel": _release_channel,
    "Queue": _release_queue,
    "RingBuffer": _release_ring("RingBuffer"),
    "SpscRingBuffer": _release_ring("SpscRingBuffer"),
    "WorkStealingDeque": _release_deque,
    "WorkStealingPool": _release_pool,
    "high_layer": _release_high_layer,
    "cycles": _release_cycles,
}


@pytest.mark.parametrize("name", sorted(RELEASE_CASES))
def test_items_are_released(impl, name, tally):
    tally.add(leak_checks=RELEASE_CASES[name](impl))


@pytest.mark.compiled
def test_backends_under_test_are_the_expected_ones():
    # The cython parameter must be the compiled code, or the release checks
    # above test nothing in C (conftest's load_backend imports it directly).
    ns = load_backend("cython")
    assert ns.Channel.__module__ == "fastconc._channel_c"
