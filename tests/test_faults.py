"""Fault injection: exceptions and misbehaviour from user code
everywhere fastconc runs it, on both backends.

User code covered: actor handlers and hooks (handle_message, on_start,
on_stop, on_failure, handle_timeout, the factory at spawn and at restart,
done callbacks of ask futures), pipeline stage functions under each
``on_error`` policy (and an ``on_error`` callable that raises), source
iterables; WorkStealingPool tasks (submit/execute/map), initializers, error
handlers, done callbacks; ObjectPool factory/validate/reset/destroy;
CircuitBreaker listeners, exclude predicates and the wrapped call; items
whose ``__del__`` raises or blocks when a structure releases them; and
``threading.excepthook`` itself raising.

Each test injects the fault, checks the structure still works afterwards,
and counts every item, message or task accepted before and after: each is
delivered or accounted for exactly once.  What the library reports through
``threading.excepthook`` / ``sys.unraisablehook`` is captured and checked
(the ``reported`` fixture), never left to pytest.
"""

from __future__ import annotations

import contextlib
import gc
import random
import sys
import sysconfig
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool

import pytest
from conftest import JOIN_TIMEOUT, watch_stopped

from fastconc import (
    Actor,
    ActorStopped,
    ActorSystem,
    ChannelClosed,
    CircuitOpenError,
    PoolClosed,
    ResourceUnavailable,
)
from fastconc.breaker import CircuitBreaker, CircuitState
from fastconc.objpool import ObjectPool
from fastconc.pipeline import Pipeline, Stage

T = JOIN_TIMEOUT
# How long a blocking __del__ waits to be let go: short, because a test that
# fails here must not wait the full JOIN_TIMEOUT for each stuck object.
BLOCK_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(120)


class Boom(Exception):
    """The injected failure (an Exception)."""


class DelError(Exception):
    """Raised by a misbehaving __del__."""


def _untraced(exc: BaseException | None) -> BaseException | None:
    """Kept without its traceback: its frames (a __del__'s self...) would
    keep alive what the test expects to be freed."""
    if exc is not None:
        exc.__traceback__ = None
        exc.__context__ = None
    return exc


class Reported:
    """What reached threading.excepthook and sys.unraisablehook."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.thread: list[BaseException | None] = []
        self.unraisable: list[BaseException | None] = []

    def on_thread(self, args) -> None:  # noqa: ANN001 - threading.ExceptHookArgs
        with self._cond:
            self.thread.append(_untraced(args.exc_value))
            self._cond.notify_all()

    def on_unraisable(self, args) -> None:  # noqa: ANN001 - sys.UnraisableHookArgs
        with self._cond:
            self.unraisable.append(_untraced(args.exc_value))
            self._cond.notify_all()

    def wait_thread(self, n: int) -> list[BaseException | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.thread) >= n, T), (
                f"expected {n} reports through threading.excepthook, got {self.thread}")
            return list(self.thread)

    def wait_unraisable(self, n: int) -> list[BaseException | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.unraisable) >= n, T), (
                f"expected {n} reports through sys.unraisablehook, got {self.unraisable}")
            return list(self.unraisable)


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> Reported:
    r = Reported()
    monkeypatch.setattr(threading, "excepthook", r.on_thread)
    monkeypatch.setattr(sys, "unraisablehook", r.on_unraisable)
    return r


# Free-threaded builds use biased reference counting: when a thread other
# than an object's creator drops its last reference, the object is queued to
# the creating thread, which frees it (and runs __del__) later.  The tests
# that check which call a blocking __del__ holds up cannot pin that there.
DEL_THREAD_IS_CREATOR = pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="free-threaded: __del__ runs on the creating thread, later (biased refcounting)")


class Tracked:
    """An item whose __del__ misbehaves.  ``log`` records each __del__ (so
    each release is counted exactly once); mode "raise" raises DelError,
    mode "block" sets ``entered`` and waits for ``gate`` (bounded), noting in
    ``waits`` whether the gate opened in time."""

    def __init__(self, log: list[int], key: int, mode: str = "raise",
                 gate: threading.Event | None = None, entered: threading.Event | None = None,
                 waits: list[bool] | None = None, left: threading.Event | None = None) -> None:
        self.log = log
        self.key = key
        self.mode = mode
        self.gate = gate
        self.entered = entered
        self.waits = waits
        self.left = left  # set once a blocking __del__ has returned
        self.ref: object = None  # set to make a reference cycle

    def __del__(self) -> None:
        self.log.append(self.key)
        if self.mode == "raise":
            raise DelError(self.key)
        if self.mode == "block":
            assert self.gate is not None and self.entered is not None and self.waits is not None
            self.entered.set()
            self.waits.append(self.gate.wait(BLOCK_TIMEOUT))
            if self.left is not None:
                self.left.set()


def only_kind(errors: list[BaseException | None], kind: type[BaseException]) -> list:
    wrong = [e for e in errors if not isinstance(e, kind)]
    assert not wrong, f"unexpected reports: {wrong}"
    return list(errors)


# ================================================================ primitives: __del__ on release

def _kinds(impl):  # noqa: ANN001, ANN202 - name -> (make, put, take)
    def ring_put(r, x):  # noqa: ANN001, ANN202
        assert r.push(x)

    def chan_put(c, x):  # noqa: ANN001, ANN202
        c.send(x, timeout=T)

    return {
        "Channel": (lambda: impl.Channel(64), chan_put, lambda c: c.try_recv()),
        "Queue": (impl.Queue, lambda q, x: q.put_nowait(x), lambda q: q.get_nowait()),
        "RingBuffer": (lambda: impl.RingBuffer(64), ring_put, lambda r: r.pop()),
        "SpscRingBuffer": (lambda: impl.SpscRingBuffer(64), ring_put, lambda r: r.pop()),
        "WorkStealingDeque": (impl.WorkStealingDeque, lambda d, x: d.push(x),
                              lambda d: d.steal()),
    }


STRUCTURES = ("Channel", "Queue", "RingBuffer", "SpscRingBuffer", "WorkStealingDeque")


@pytest.mark.thread_unsafe(reason="replaces sys.unraisablehook; counts gc-released objects")
@pytest.mark.parametrize("cycle", [False, True], ids=["refcount", "gc-cycle"])
@pytest.mark.parametrize("kind", STRUCTURES)
def test_raising_del_on_take_and_on_dealloc(impl, reported, tally, kind, cycle):
    """Items whose __del__ raises: taken ones (dropped by the caller) and the
    ones the structure still holds when it is freed (by refcount, or by the
    collector when the items refer back to it) each run __del__ exactly once;
    the errors go to sys.unraisablehook, and the structure works in between."""
    make, put, take = _kinds(impl)[kind]
    log: list[int] = []
    s = make()
    n = 20
    for i in range(n):
        item = Tracked(log, i)
        if cycle:
            item.ref = s
        put(s, item)
    del item
    taken = [take(s) for _ in range(5)]
    taken_keys = sorted(x.key for x in taken)
    del taken  # five __del__ raise here
    assert len(log) == 5
    # Still works after the raising __del__s: a round trip of plain items.
    for i in range(5):
        put(s, ("plain", i))
    got = [take(s) for _ in range(n)]
    plain = [x for x in got if type(x) is tuple]
    assert sorted(plain) == [("plain", i) for i in range(5)]
    rest = [x for x in got if type(x) is not tuple]
    for x in rest:
        put(s, x)  # back in: the structure holds 15 misbehaving items again
    del got, rest, x
    del s
    if cycle:
        gc.collect()
    assert sorted(log) == list(range(n)), "each item released exactly once"
    assert sorted(set(range(n)) - set(taken_keys)) == sorted(log[5:])
    errors = only_kind(reported.wait_unraisable(n), DelError)
    assert sorted(e.args[0] for e in errors) == list(range(n))  # type: ignore[union-attr]
    tally.add(faults=n, operations=2 * n + 10 + 15, items_checked=n + 5)


@pytest.mark.thread_unsafe(reason="replaces sys.unraisablehook")
def test_channel_closed_drains_items_whose_del_raises(impl, reported, tally):
    """close() keeps the items for receivers; taking them, dropping them
    (their __del__ raises) and draining to ChannelClosed all work."""
    log: list[int] = []
    ch = impl.Channel(8)
    assert ch.send_many([Tracked(log, i) for i in range(8)], timeout=T) == 8
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.send(Tracked(log, 99), timeout=T)  # refused: released by the caller
    keys = []
    for _ in range(4):
        batch = ch.recv_many(3, timeout=T)
        keys.extend(x.key for x in batch)
        del batch
        if len(keys) == 8:
            break
    with pytest.raises(ChannelClosed):
        ch.recv(timeout=T)
    assert keys == list(range(8))
    assert sorted(log) == [*range(8), 99]
    only_kind(reported.wait_unraisable(9), DelError)
    tally.add(faults=9, operations=8, items_checked=9)


@pytest.mark.thread_unsafe(reason="shares a gate between threads; replaces hooks")
@DEL_THREAD_IS_CREATOR
def test_queue_immediate_shutdown_with_blocking_and_raising_del(impl, reported, threads, tally):
    """shutdown(immediate=True) drops the queued items.  Their __del__ runs
    without the queue's lock held: while one blocks, other threads use the
    queue (get/put see the shutdown, a join() already waiting returns) and
    only then let it go; the others raise.  Each item is released once."""
    q = impl.Queue()
    log: list[int] = []
    gate, entered, waits = threading.Event(), threading.Event(), []
    q.put(Tracked(log, 0, "block", gate, entered, waits))
    for i in range(1, 10):
        q.put(Tracked(log, i))
    first = q.get(timeout=T)  # one taken and completed normally
    q.task_done()
    assert first.key == 0
    q.put(first)  # back at the end: the blocking one is dropped last
    del first
    joined = threading.Event()

    def joiner() -> None:
        q.join()  # returns once the immediate shutdown marks the rest done
        joined.set()

    threads.start(joiner)
    shut = threading.Event()

    def shutdown() -> None:
        q.shutdown(immediate=True)
        shut.set()

    threads.start(shutdown)
    assert entered.wait(T), "the blocking __del__ never ran"
    assert not shut.is_set()
    # The queue stays usable while a dropped item's __del__ blocks.
    with pytest.raises(ChannelClosed):
        q.put_nowait("late")
    with pytest.raises(ChannelClosed):
        q.get(timeout=T)
    assert q.qsize() == 0 and q.is_shutdown
    joiner_done = joined.wait(BLOCK_TIMEOUT / 2)
    gate.set()
    threads.join()
    assert joiner_done, "join() waited for a dropped item's __del__"
    assert waits == [True]
    assert sorted(log) == list(range(10))
    only_kind(reported.wait_unraisable(9), DelError)
    tally.add(faults=10, operations=16, items_checked=10)


@pytest.mark.thread_unsafe(reason="replaces sys.unraisablehook")
def test_send_many_from_a_raising_iterable_sends_nothing(impl, tally):
    """A generator that raises part-way: send_many / push_many read it all
    first, so nothing is half-sent; the structure is unchanged and usable."""
    def gen():  # noqa: ANN202
        yield 1
        yield 2
        raise Boom("source")

    ch = impl.Channel(8)
    ring = impl.RingBuffer(8)
    with pytest.raises(Boom):
        ch.send_many(gen(), timeout=T)
    with pytest.raises(Boom):
        ring.push_many(gen())
    assert len(ch) == 0 and len(ring) == 0
    assert ch.send_many([3, 4], timeout=T) == 2 and ring.push_many([3, 4]) == 2
    assert ch.recv_many(8, timeout=T) == [3, 4] and ring.pop_many(8) == [3, 4]
    tally.add(faults=2, operations=6, items_checked=4)


# ================================================================ WorkStealingPool

def _pool(impl, n: int = 2, **kwargs):  # noqa: ANN001, ANN202
    return impl.WorkStealingPool(n, **kwargs)


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt, SystemExit])
def test_submit_task_errors_go_to_their_future(impl, tally, exc_type):
    """Every kind of exception from a submitted task lands in its own future;
    no worker dies: every other task (before and after) completes once."""
    n = 200
    with _pool(impl) as pool:
        def task(i: int) -> int:
            if i % 10 == 3:
                raise exc_type(i)
            return i * 2

        futures = [pool.submit(task, i) for i in range(n)]
        failed = 0
        for i, f in enumerate(futures):
            if i % 10 == 3:
                exc = f.exception(T)
                assert type(exc) is exc_type and exc.args == (i,)
                failed += 1
            else:
                assert f.result(T) == i * 2
        # Still all workers: a batch that needs both of them at once.
        barrier = threading.Barrier(2, timeout=T)
        assert [f.result(T) for f in [pool.submit(barrier.wait) for _ in range(2)]] in (
            [0, 1], [1, 0])
        assert pool.join(T)
    tally.add(faults=failed, operations=n + 2, items_checked=n + 2)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt, SystemExit])
def test_execute_errors_reach_the_error_handler_once(impl, reported, tally, exc_type):
    """execute() tasks raising any exception kind: each reaches error_handler
    exactly once, the others all run, and the workers keep going."""
    seen: list[BaseException] = []
    ran: list[int] = []
    lock = threading.Lock()

    def handler(exc: BaseException) -> None:
        with lock:
            seen.append(exc)

    def task(i: int) -> None:
        if i % 7 == 0:
            raise exc_type(i)
        ran.append(i)

    n = 300
    with _pool(impl, error_handler=handler) as pool:
        for i in range(n):
            pool.execute(task, i)
        pool.execute(lambda: (_ for _ in ()).throw(exc_type(-1)))  # a bare callable
        assert pool.join(T)
        bad = [i for i in range(n) if i % 7 == 0]
        assert sorted(e.args[0] for e in seen) == [-1, *bad]
        assert all(type(e) is exc_type for e in seen)
        assert sorted(ran) == [i for i in range(n) if i % 7]
        assert pool.submit(sum, [1, 2]).result(T) == 3
    assert reported.thread == [] and reported.unraisable == []
    tally.add(faults=len(bad) + 1, operations=n + 2, items_checked=n + 1)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook and sys.unraisablehook")
def test_error_handler_and_excepthook_that_raise(impl, reported, tally, monkeypatch):
    """The fallbacks of a failing task's report: no handler -> excepthook; a
    handler that raises (Exception or BaseException) -> its own error to
    excepthook; an excepthook that raises -> sys.unraisablehook.  The
    workers survive all of it."""
    with _pool(impl) as pool:  # no handler: excepthook
        pool.execute(lambda: 1 / 0)
        assert pool.join(T)
    assert [type(e) for e in reported.wait_thread(1)] == [ZeroDivisionError]

    calls = []

    def bad_handler(exc: BaseException) -> None:
        calls.append(exc)
        raise (KeyboardInterrupt if len(calls) % 2 else Boom)("handler")

    with _pool(impl, error_handler=bad_handler) as pool:
        for i in range(4):
            pool.execute(lambda i=i: 1 // 0 if i >= 0 else None)
        assert pool.join(T)
        assert len(calls) == 4
        kinds = Counter(type(e) for e in reported.wait_thread(5)[1:])
        assert kinds == {KeyboardInterrupt: 2, Boom: 2}

        def broken_hook(args) -> None:  # noqa: ANN001
            raise RuntimeError("excepthook is broken")

        monkeypatch.setattr(threading, "excepthook", broken_hook)
        pool.execute(lambda: 1 / 0)
        assert pool.join(T)
        assert [type(e) for e in reported.wait_unraisable(1)] == [RuntimeError]
        assert pool.submit(pow, 2, 5).result(T) == 32
    tally.add(faults=1 + 4 + 4 + 1, operations=12, items_checked=11)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_done_callback_raising_baseexception_keeps_the_worker(impl, reported, tally):
    """A done callback (user code the worker runs when the future completes)
    that raises KeyboardInterrupt: reported, the future keeps its result,
    and the worker goes on with the next tasks."""
    with _pool(impl, 1) as pool:
        gate = threading.Event()
        blocker = pool.submit(gate.wait, T)
        f = pool.submit(lambda: 41 + 1)
        f.add_done_callback(lambda fut: (_ for _ in ()).throw(KeyboardInterrupt("cb")))
        later = [pool.submit(abs, -i) for i in range(50)]
        gate.set()
        assert blocker.result(T) is True
        assert f.result(T) == 42
        assert [x.result(T) for x in later] == list(range(50))
        assert pool.join(T)
    errors = reported.wait_thread(1)
    assert [type(e) for e in errors] == [KeyboardInterrupt]
    tally.add(faults=1, operations=53, items_checked=52)


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_map_raises_at_the_failing_position(impl, tally, exc_type):
    """map(): results before the failing item come out in order, then its
    exception; an input iterable that raises submits nothing.  The pool
    keeps working."""
    def fn(i: int) -> int:
        if i == 57:
            raise exc_type("item 57")
        return -i

    def bad_source():  # noqa: ANN202
        yield from range(10)
        raise Boom("source")

    with _pool(impl) as pool:
        out = []
        it = pool.map(fn, range(100), chunksize=8)
        with pytest.raises(exc_type):
            for x in it:
                out.append(x)
        assert out == [-i for i in range(57)]
        with pytest.raises(Boom):
            pool.map(fn, bad_source())
        assert list(pool.map(fn, range(50), chunksize=4)) == [-i for i in range(50)]
        assert pool.join(T)
    tally.add(faults=2, operations=3, items_checked=57 + 50)


@pytest.mark.parametrize("exc_type", [Boom, SystemExit])
def test_initializer_failure_breaks_the_pool_without_losing_futures(impl, tally, exc_type):
    """An initializer that raises (any kind) breaks the pool, as in
    ThreadPoolExecutor: every future accepted before fails with
    BrokenThreadPool (none left pending), every execute() task accepted
    before reaches the error handler with BrokenThreadPool, join() returns,
    and later submits raise BrokenThreadPool."""
    go = threading.Event()
    ran: list[int] = []
    handled: list[BaseException] = []

    def init() -> None:
        go.wait(T)
        raise exc_type("init")

    pool = _pool(impl, 2, initializer=init, error_handler=handled.append)
    try:
        futures = [pool.submit(ran.append, i) for i in range(20)]
        for i in range(5):
            pool.execute(ran.append, 100 + i)
        go.set()
        for f in futures:
            assert isinstance(f.exception(T), BrokenThreadPool)
        assert pool.join(T)
        with pytest.raises(BrokenThreadPool):
            pool.submit(ran.append, -1)
        assert ran == []
        assert len(handled) == 5
        assert all(isinstance(e, BrokenThreadPool) for e in handled)
    finally:
        pool.shutdown(wait=True)
    tally.add(faults=2, operations=26, items_checked=25)


@pytest.mark.thread_unsafe(reason="shares gates with pool workers; replaces hooks")
@DEL_THREAD_IS_CREATOR
def test_pool_releases_tasks_whose_args_del_misbehave(impl, reported, tally):
    """A task's arguments are released by the worker after it ran: a __del__
    that blocks holds up that worker only (the other runs the task that lets
    it go); __del__s that raise go to sys.unraisablehook.  Tasks dropped by
    shutdown(cancel_futures=True) are released too, each exactly once."""
    log: list[int] = []
    gate, entered, waits, left = threading.Event(), threading.Event(), [], threading.Event()
    pool = _pool(impl, 2)
    try:
        f = pool.submit(lambda obj: obj.key, Tracked(log, 0, "block", gate, entered, waits, left))
        assert f.result(T) == 0
        assert entered.wait(T)
        # One worker is stuck in that __del__; the other still runs tasks.
        assert pool.submit(gate.set).result(BLOCK_TIMEOUT) is None
        results = [pool.submit(lambda obj: obj.key, Tracked(log, i)) for i in range(1, 21)]
        assert [r.result(T) for r in results] == list(range(1, 21))
        assert pool.join(T)
        del f, results
        # join() counts tasks, not the release of their arguments after them.
        assert left.wait(T)
        assert waits == [True]
        # Queued behind a task that holds the only worker busy, then cancelled.
        hold, started = threading.Event(), threading.Event()
        busy = pool.submit(lambda: (started.set(), hold.wait(T))[1])
        assert started.wait(T)
        assert pool.submit(lambda: None).result(T) is None  # the other worker
        stuck = pool.submit(lambda: (started.clear(), hold.wait(T))[1])
        doomed = [pool.submit(lambda obj: obj.key, Tracked(log, i)) for i in range(21, 31)]
        for i in range(31, 36):
            pool.execute(lambda obj: None, Tracked(log, i))
        pool.shutdown(wait=False, cancel_futures=True)
        hold.set()
        pool.shutdown(wait=True)
        assert busy.result(T) is True
        assert stuck.cancelled() or stuck.result(T) is True
        cancelled = [d for d in doomed if d.cancelled()]
        done = [d.result(T) for d in doomed if not d.cancelled()]
        assert len(cancelled) + len(done) == 10
        del doomed, cancelled
    finally:
        gate.set()
        pool.shutdown(wait=True)
    assert sorted(log) == list(range(36)), Counter(log)
    only_kind(reported.wait_unraisable(35), DelError)
    tally.add(faults=36, operations=70, items_checked=36)


# ================================================================ ObjectPool

class Conn:
    made = 0

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _counting_factory(fail_on: set[int], exc_type: type[BaseException] = Boom):  # noqa: ANN202
    count = [0]
    lock = threading.Lock()

    def factory() -> Conn:
        with lock:
            count[0] += 1
            n = count[0]
        if n in fail_on:
            raise exc_type(f"factory call {n}")
        return Conn(n)

    return factory, count


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_objpool_factory_failure_frees_the_slot(impl, tally, exc_type):
    """A factory that raises: get() raises it, the slot comes back, and all
    max_size objects can still be checked out."""
    factory, _ = _counting_factory({1, 3}, exc_type)
    pool = ObjectPool(factory, 2, backend=impl)
    with pytest.raises(exc_type):
        pool.get(timeout=0)
    a = pool.get(timeout=0)
    with pytest.raises(exc_type):
        pool.get(timeout=0)
    b = pool.get(timeout=0)
    assert (a.n, b.n) == (2, 4)
    with pytest.raises(ResourceUnavailable):
        pool.get(timeout=0)
    s = pool.stats()
    assert (s.size, s.in_use, s.created) == (2, 2, 2)
    pool.put(a)
    pool.put(b)
    pool.close()
    assert a.closed and b.closed and pool.stats().destroyed == 2
    tally.add(faults=2, operations=8, items_checked=4)


def test_objpool_min_size_factory_failure_destroys_the_ones_made(impl, tally):
    destroyed: list[int] = []
    factory, _ = _counting_factory({3})
    with pytest.raises(Boom):
        ObjectPool(factory, 5, min_size=4, destroy=lambda c: destroyed.append(c.n),
                   backend=impl)
    assert destroyed == [1, 2]
    tally.add(faults=1, operations=1, items_checked=2)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_objpool_validate_reset_destroy_failures(impl, reported, tally):
    """validate raising (-> destroyed, next one tried), reset raising (-> put
    raises, object destroyed, slot freed), destroy raising (-> reported, slot
    freed all the same): every object made is destroyed exactly once, and
    the pool still hands out max_size objects."""
    destroyed: list[int] = []
    bad_validate = {1}
    bad_reset = {2}
    bad_destroy = {1, 3}

    def validate(c: Conn) -> bool:
        if c.n in bad_validate:
            raise Boom(f"validate {c.n}")
        return True

    def reset(c: Conn) -> None:
        if c.n in bad_reset:
            raise Boom(f"reset {c.n}")

    def destroy(c: Conn) -> None:
        destroyed.append(c.n)
        if c.n in bad_destroy:
            raise Boom(f"destroy {c.n}")

    factory, count = _counting_factory(set())
    pool = ObjectPool(factory, 2, validate=validate, reset=reset, destroy=destroy,
                      backend=impl)
    c1 = pool.get(timeout=0)  # new: not validated
    pool.put(c1)
    c = pool.get(timeout=0)  # idle c1 fails validate -> destroyed (and destroy raises)
    assert c.n == 2
    with pytest.raises(Boom, match="reset 2"):
        pool.put(c)  # reset raises -> destroyed, slot freed
    a, b = pool.get(timeout=0), pool.get(timeout=0)
    assert (a.n, b.n) == (3, 4)
    pool.invalidate(a)  # destroy raises, reported
    pool.put(b)
    got = [pool.get(timeout=0), pool.get(timeout=0)]
    assert sorted(x.n for x in got) == [4, 5]
    for x in got:
        pool.put(x)
    pool.close()
    assert sorted(destroyed) == [1, 2, 3, 4, 5] == list(range(1, count[0] + 1))
    s = pool.stats()
    assert (s.created, s.destroyed, s.size) == (5, 5, 0)
    errors = reported.wait_thread(2)
    assert sorted(str(e) for e in errors) == ["destroy 1", "destroy 3"]
    tally.add(faults=4, operations=14, items_checked=5)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_objpool_baseexception_in_validate_and_destroy(impl, reported, tally):
    """KeyboardInterrupt from validate (propagates, the object is retired,
    the slot freed) and from destroy during close() (the other idle objects
    are still destroyed, then it propagates)."""
    destroyed: list[int] = []
    interrupt_validate = [True]

    def validate(c: Conn) -> bool:
        if interrupt_validate[0]:
            interrupt_validate[0] = False
            raise KeyboardInterrupt("validate")
        return True

    def destroy(c: Conn) -> None:
        destroyed.append(c.n)
        if c.n == 3:
            raise KeyboardInterrupt("destroy")

    factory, count = _counting_factory(set())
    pool = ObjectPool(factory, 3, validate=validate, destroy=destroy, backend=impl)
    first = pool.get(timeout=0)
    pool.put(first)
    with pytest.raises(KeyboardInterrupt):
        pool.get(timeout=0)
    assert destroyed == [1]
    objs = [pool.get(timeout=0) for _ in range(3)]  # all three slots free again
    assert sorted(o.n for o in objs) == [2, 3, 4]
    for o in objs:
        pool.put(o)
    with pytest.raises(KeyboardInterrupt):
        pool.close()
    assert sorted(destroyed) == [1, 2, 3, 4]
    assert pool.stats().size == 0 and count[0] == 4
    with pytest.raises(PoolClosed):
        pool.get(timeout=0)
    assert reported.thread == []
    tally.add(faults=2, operations=9, items_checked=4)


@pytest.mark.thread_unsafe(reason="several threads share one pool and flaky hooks")
def test_objpool_flaky_hooks_under_threads(impl, threads, tally):
    """Four threads churn a pool whose factory, validate and reset fail now
    and then: at the end every slot is free, and every object made is either
    idle or destroyed exactly once."""
    lock = threading.Lock()
    made: list[Conn] = []
    destroyed: list[int] = []
    rng = random.Random(9)
    faulty = [True]

    def flaky() -> bool:
        with lock:
            return faulty[0] and rng.random() < 0.2

    def factory() -> Conn:
        if flaky():
            raise Boom("factory")
        c = Conn(len(made))
        with lock:
            c.n = len(made)
            made.append(c)
        return c

    def validate(c: Conn) -> bool:
        if flaky():
            raise Boom("validate")
        return True

    def reset(c: Conn) -> None:
        if flaky():
            raise Boom("reset")

    def destroy(c: Conn) -> None:
        with lock:
            destroyed.append(c.n)

    pool = ObjectPool(factory, 3, validate=validate, reset=reset, destroy=destroy,
                      backend=impl)
    errors = Counter()
    rounds = 150

    def worker() -> None:
        for _ in range(rounds):
            try:
                obj = pool.get(timeout=T)
            except Boom:
                with lock:
                    errors["get"] += 1
                continue
            try:
                pool.put(obj)
            except Boom:
                with lock:
                    errors["put"] += 1

    for _ in range(4):
        threads.start(worker)
    threads.join()
    faulty[0] = False
    held = [pool.get(timeout=T) for _ in range(3)]  # every slot came back
    assert len({id(h) for h in held}) == 3
    for h in held:
        pool.put(h)
    idle = pool.stats().idle
    pool.close()
    assert sorted(destroyed) == sorted(c.n for c in made), "each object destroyed once"
    assert len(made) - idle == len(destroyed) - idle
    assert errors["get"] > 0 and errors["put"] > 0, errors
    tally.add(faults=errors["get"] + errors["put"], operations=4 * rounds * 2 + 6,
              items_checked=len(made))


@pytest.mark.thread_unsafe(reason="shares a gate between threads; replaces hooks")
@DEL_THREAD_IS_CREATOR
def test_objpool_releases_objects_whose_del_misbehaves(impl, reported, threads, tally):
    """Objects the pool discards (invalidate, max_uses, close) whose __del__
    raises are each released once; one whose __del__ blocks during close()
    does not hold the pool's lock: other threads see it closed meanwhile."""
    log: list[int] = []
    gate, entered, waits = threading.Event(), threading.Event(), []
    n = [0]

    def factory() -> Tracked:
        n[0] += 1
        if n[0] == 5:
            return Tracked(log, n[0], "block", gate, entered, waits)
        return Tracked(log, n[0])

    pool = ObjectPool(factory, 2, max_uses=2, backend=impl)
    a = pool.get(timeout=0)
    pool.invalidate(a)
    del a  # 1 released
    for _ in range(2):  # object 2 reaches max_uses on its second return
        b = pool.get(timeout=0)
        assert b.key == 2
        pool.put(b)
    del b
    assert sorted(log) == [1, 2]
    c, d = pool.get(timeout=0), pool.get(timeout=0)
    assert (c.key, d.key) == (3, 4)
    pool.invalidate(d)
    del d  # 4 released
    e = pool.get(timeout=0)
    assert e.key == 5
    pool.put(c)
    pool.put(e)
    del c, e  # both idle now: the pool holds the only references
    closed = threading.Event()

    def close() -> None:
        pool.close()
        closed.set()

    threads.start(close)
    assert entered.wait(T), "the blocking __del__ never ran"
    with pytest.raises(PoolClosed):
        pool.get(timeout=0)
    assert pool.stats().size == 0 and pool.closed
    gate.set()
    threads.join()
    assert closed.is_set() and waits == [True]
    assert sorted(log) == [1, 2, 3, 4, 5]
    only_kind(reported.wait_unraisable(4), DelError)
    tally.add(faults=5, operations=12, items_checked=5)


# ================================================================ CircuitBreaker

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_breaker_listener_exceptions_are_reported(reported, tally):
    """A listener raising an Exception: reported, the other listeners still
    hear every change in order, and the breaker's state is not affected."""
    clock = Clock()
    heard: list[tuple[str, CircuitState, CircuitState]] = []

    def bad(br, old, new) -> None:  # noqa: ANN001
        heard.append(("bad", old, new))
        raise Boom(f"{old.name}->{new.name}")

    def good(br, old, new) -> None:  # noqa: ANN001
        heard.append(("good", old, new))

    br = CircuitBreaker(2, 10.0, clock=clock, listeners=[bad, good])
    calls = 0
    for _ in range(2):
        with pytest.raises(ValueError):
            br.call(int, "x")
        calls += 1
    assert br.state is CircuitState.OPEN
    clock.now = 11.0
    assert br.call(int, "7") == 7  # HALF_OPEN trial succeeds -> CLOSED
    calls += 1
    assert br.state is CircuitState.CLOSED
    changes = [(CircuitState.CLOSED, CircuitState.OPEN),
               (CircuitState.OPEN, CircuitState.HALF_OPEN),
               (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    assert [(o, n) for who, o, n in heard if who == "good"] == changes
    assert [(o, n) for who, o, n in heard if who == "bad"] == changes
    errors = only_kind(reported.wait_thread(3), Boom)
    assert [str(e) for e in errors] == ["CLOSED->OPEN", "OPEN->HALF_OPEN", "HALF_OPEN->CLOSED"]
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (calls, 2, 1)
    tally.add(faults=3 + 2, operations=calls + 3, items_checked=6)


def test_breaker_listener_baseexception_propagates_and_later_changes_arrive(tally):
    """A listener raising KeyboardInterrupt interrupts the call that made the
    change (Ctrl-C semantics), but the breaker moved all the same and later
    changes are still delivered."""
    clock = Clock()
    heard: list[tuple[CircuitState, CircuitState]] = []
    interrupt = [True]

    def listener(br, old, new) -> None:  # noqa: ANN001
        heard.append((old, new))
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt("listener")

    br = CircuitBreaker(1, 5.0, clock=clock, listeners=[listener])
    with pytest.raises(KeyboardInterrupt):
        br.call(int, "x")
    assert br.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        br.call(int, "1")
    clock.now = 6.0
    assert br.call(int, "1") == 1
    assert heard == [(CircuitState.CLOSED, CircuitState.OPEN),
                     (CircuitState.OPEN, CircuitState.HALF_OPEN),
                     (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    assert br.metrics().rejections == 1
    tally.add(faults=1, operations=4, items_checked=3)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_breaker_exclude_predicate_failures(reported, tally):
    """An exclude predicate raising an Exception is reported and excludes
    nothing (the call counts as a failure); one raising KeyboardInterrupt
    propagates and the call counts as neither, giving a HALF_OPEN trial's
    slot back."""
    clock = Clock()
    mode = ["boom"]

    def predicate(exc: BaseException) -> bool:
        if mode[0] == "boom":
            raise Boom("predicate")
        if mode[0] == "interrupt":
            raise KeyboardInterrupt("predicate")
        return False

    br = CircuitBreaker(2, 5.0, clock=clock, exclude=[predicate])
    for _ in range(2):
        with pytest.raises(ValueError):
            br.call(int, "x")
    assert br.state is CircuitState.OPEN  # both counted as failures
    assert [str(e) for e in only_kind(reported.wait_thread(2), Boom)] == ["predicate"] * 2
    clock.now = 6.0
    mode[0] = "interrupt"
    with pytest.raises(KeyboardInterrupt):
        br.call(int, "x")  # the only trial: interrupted while classified
    assert br.state is CircuitState.HALF_OPEN
    mode[0] = "ok"
    assert br.call(int, "3") == 3  # the slot came back
    assert br.state is CircuitState.CLOSED
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (4, 2, 1)
    tally.add(faults=3, operations=5, items_checked=4)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_breaker_wrapped_call_baseexception_is_neutral(tally, exc_type):
    """The wrapped call raising a BaseException (call, decorator and with
    block): it propagates, counts as neither success nor failure, and a
    HALF_OPEN trial hands its slot to the next caller."""
    clock = Clock()
    br = CircuitBreaker(1, 5.0, clock=clock)

    def raw() -> None:
        raise exc_type("call")

    interrupted = br(raw)

    for _ in range(3):
        with pytest.raises(exc_type):
            interrupted()
    assert br.state is CircuitState.CLOSED
    with pytest.raises(ValueError):
        br.call(int, "x")
    clock.now = 6.0
    for _ in range(2):
        with pytest.raises(exc_type), br:
            raise exc_type("block")
        assert br.state is CircuitState.HALF_OPEN
    with pytest.raises(exc_type):
        br.call(raw)
    assert br.call(int, "5") == 5
    assert br.state is CircuitState.CLOSED
    m = br.metrics()
    assert (m.calls, m.failures, m.successes) == (8, 1, 1)
    tally.add(faults=6, operations=8, items_checked=8)


@pytest.mark.thread_unsafe(reason="threads share one breaker; replaces threading.excepthook")
def test_breaker_flaky_calls_and_listener_under_threads(reported, threads, tally):
    """Threads calling through one breaker while calls and a listener fail:
    every call is counted exactly once (calls + rejections = attempts)."""
    br = CircuitBreaker(3, 0.0, listeners=[lambda *a: (_ for _ in ()).throw(Boom("l"))])
    per_thread = 400
    outcomes = Counter()
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = Counter()
        for i in range(per_thread):
            try:
                br.call(int, "x" if (i + k) % 4 == 0 else "1")
                mine["ok"] += 1
            except ValueError:
                mine["failed"] += 1
            except CircuitOpenError:
                mine["rejected"] += 1
        with lock:
            outcomes.update(mine)

    for k in range(4):
        threads.start(worker, k)
    threads.join()
    m = br.metrics()
    assert sum(outcomes.values()) == 4 * per_thread
    assert m.calls + m.rejections == 4 * per_thread
    assert (m.successes, m.failures, m.rejections) == (
        outcomes["ok"], outcomes["failed"], outcomes["rejected"])
    only_kind(reported.thread, Boom)
    tally.add(faults=outcomes["failed"] + len(reported.thread), operations=4 * per_thread,
              items_checked=4 * per_thread)


# ================================================================ Pipeline

def _fails(i: int) -> bool:
    return i % 7 == 3


def _stage_fn(i: int) -> int:
    if _fails(i):
        raise Boom(i)
    return i * 10


@pytest.mark.parametrize("workers", [1, 3])
def test_pipeline_skip_and_replace(impl, tally, workers):
    """on_error="skip" drops exactly the failing items, a callable replaces
    them; order is kept, stats count them, and nothing else is lost."""
    n = 300
    p = Pipeline([Stage(_stage_fn, workers, on_error="skip"), lambda x: x + 1],
                 backend=impl)
    assert list(p.map(range(n))) == [i * 10 + 1 for i in range(n) if not _fails(i)]
    first = p.stats()[0]
    bad = sum(_fails(i) for i in range(n))
    assert (first.items, first.errors) == (n, bad)
    q = Pipeline([Stage(_stage_fn, workers, on_error=lambda item, exc: -item)], backend=impl)
    assert list(q.map(range(n))) == [-i if _fails(i) else i * 10 for i in range(n)]
    tally.add(faults=2 * bad, operations=2 * n, items_checked=2 * n)


@pytest.mark.parametrize("workers", [1, 3])
def test_pipeline_on_error_callable_that_raises(impl, tally, workers):
    """An on_error callable that itself raises fails the run with its own
    exception (chained to the stage's); what came out before is a duplicate-
    free prefix, and the pipeline runs again afterwards."""
    def on_error(item: int, exc: Exception) -> int:
        if item == 52:
            raise RuntimeError("handler gave up")
        return -item

    p = Pipeline([Stage(_stage_fn, workers, on_error=on_error)], backend=impl)
    out = []
    with pytest.raises(RuntimeError, match="handler gave up") as info:
        for x in p.map(range(200)):
            out.append(x)
    assert isinstance(info.value.__context__, Boom)
    expect = [-i if _fails(i) else i * 10 for i in range(52)]
    assert out == expect[:len(out)]
    assert list(p.map(range(40))) == [-i if _fails(i) else i * 10 for i in range(40)]
    tally.add(faults=1 + sum(_fails(i) for i in range(52)), operations=240,
              items_checked=len(out) + 40)


def test_pipeline_raise_policy_with_send_recv(impl, tally):
    """on_error="raise" with start()/send()/recv(): results before the
    failure come out in order, recv() then re-raises it, send() is refused,
    join() returns; a fresh map() on the same pipeline works."""
    p = Pipeline([_stage_fn, lambda x: x + 1], capacity=8, backend=impl).start()
    for i in range(3):
        p.send(i, timeout=T)
    out = [p.recv(timeout=T) for _ in range(3)]
    assert out == [1, 11, 21]
    p.send(3, timeout=T)  # fails in stage one
    with pytest.raises(Boom) as info:
        p.recv(timeout=T)  # usually waiting in the output channel when it closes
    # The stage's own error, not chained to the ChannelClosed the consumer saw.
    assert info.value.__context__ is None
    with pytest.raises(ChannelClosed):
        p.send(4, timeout=T)
    with pytest.raises(Boom):
        p.recv(timeout=T)  # still the stage's error
    assert p.join(T)
    assert list(p.map([0, 1, 2])) == [1, 11, 21]
    tally.add(faults=1, operations=10, items_checked=6)


def test_pipeline_source_failures(impl, tally):
    """A source iterable raising after k items: the k results, then its
    exception; a source whose __iter__ raises: that exception, nothing else."""
    def source():  # noqa: ANN202
        for i in range(25):
            yield i + 100
        raise Boom("source")

    class BadIterable:
        def __iter__(self):  # noqa: ANN204
            raise Boom("iter")

    p = Pipeline([lambda x: x * 2, Stage(abs, workers=2)], backend=impl)
    out = []
    with pytest.raises(Boom, match="source") as info:
        for x in p.map(source()):
            out.append(x)
    assert out == [2 * (i + 100) for i in range(25)]
    assert not isinstance(info.value.__context__, ChannelClosed)
    with pytest.raises(Boom, match="iter"):
        list(p.map(BadIterable()))
    assert list(p.map(range(5))) == [0, 2, 4, 6, 8]
    tally.add(faults=2, operations=31, items_checked=30)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_baseexception_in_a_stage(impl, tally, exc_type, workers):
    """A stage function raising KeyboardInterrupt/SystemExit is not an
    error the on_error policy handles: the run stops and the consumer gets
    it (never a hang, never silently dropped); the pipeline runs again."""
    def fn(i: int) -> int:
        if i == 40:
            raise exc_type("stage")
        return i

    p = Pipeline([Stage(fn, workers, on_error="skip")], backend=impl)
    out = []
    with pytest.raises(exc_type):
        for x in p.map(range(100)):
            out.append(x)
    assert out == list(range(len(out))) and len(out) <= 40
    assert list(p.map(range(10))) == list(range(10))
    tally.add(faults=1, operations=110, items_checked=len(out) + 10)


@pytest.mark.parametrize("on_error", ["skip", "replace", "raising-handler"])
def test_pipeline_executor_stage_errors(impl, tally, on_error):
    """The same policies when the stage runs on an external Executor."""
    def handler(item: int, exc: Exception) -> int:
        if on_error == "raising-handler" and item == 24:
            raise RuntimeError("handler gave up")
        return -item

    policy = "skip" if on_error == "skip" else handler
    n = 60
    with ThreadPoolExecutor(2) as ex:
        p = Pipeline([Stage(_stage_fn, 2, on_error=policy)], executor=ex, backend=impl)
        out = []
        if on_error == "raising-handler":
            with pytest.raises(RuntimeError, match="handler gave up"):
                for x in p.map(range(n)):
                    out.append(x)
            expect = [-i if _fails(i) else i * 10 for i in range(24)]
            assert out == expect[:len(out)]
        else:
            out = list(p.map(range(n)))
            if on_error == "skip":
                assert out == [i * 10 for i in range(n) if not _fails(i)]
            else:
                assert out == [-i if _fails(i) else i * 10 for i in range(n)]
        assert list(p.map(range(8))) == [-i if _fails(i) and on_error != "skip" else i * 10
                                         for i in range(8) if on_error != "skip" or not _fails(i)]
    tally.add(faults=sum(_fails(i) for i in range(n)), operations=n + 8,
              items_checked=len(out) + 8)


# ================================================================ actors

@contextlib.contextmanager
def _system(impl) -> Iterator[ActorSystem]:  # noqa: ANN001
    """An ActorSystem whose shutdown is bounded (and must succeed)."""
    system = ActorSystem(2, backend=impl)
    try:
        yield system
    except BaseException:
        system.shutdown(T)
        raise
    assert system.shutdown(T), "the actor system did not shut down"




class Recorder(Actor):
    """Records every message it handles (shared list: survives restarts);
    raises ``exc`` for the messages in ``bad``."""

    def __init__(self, log: list, bad: frozenset = frozenset(),
                 exc: type[BaseException] = Boom, failures: list | None = None) -> None:
        self.log = log
        self.bad = bad
        self.exc = exc
        self.failures = failures
        self.instance = object()

    def handle_message(self, msg):  # noqa: ANN001, ANN201
        if msg == "sync":
            return len(self.log)
        if msg == "whoami":
            return self.instance
        if msg in self.bad:
            raise self.exc(msg)
        self.log.append(msg)
        return msg

    def on_failure(self, exc: BaseException) -> None:
        if self.failures is not None:
            self.failures.append(exc)


def _mine(system: ActorSystem, ref) -> list:  # noqa: ANN001
    return [m for r, m in system.dead_letters if r is ref]


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("strategy", ["resume", "restart"])
def test_actor_handler_failures_on_tell(impl, tally, strategy, exc_type):
    """handle_message raising (any kind) for a tell: on_failure hears it,
    supervision acts (resume keeps the instance, restart makes a new one),
    and every other message, before and after, is handled exactly once and
    in order.  Other actors on the same workers are not disturbed."""
    n = 200
    bad = frozenset(range(5, n, 20))
    log: list[int] = []
    failures: list[BaseException] = []
    other_log: list[int] = []
    with _system(impl) as system:
        ref = system.spawn(Recorder, log, bad, exc_type, failures, supervision=strategy,
                           max_restarts=len(bad) + 1, within=60.0)
        other = system.spawn(Recorder, other_log)
        before = ref.ask("whoami", timeout=T)
        for i in range(n):
            ref.tell(i)
            other.tell(i)
        assert ref.ask("sync", timeout=T) == n - len(bad)
        assert other.ask("sync", timeout=T) == n
        assert (ref.ask("whoami", timeout=T) is before) == (strategy == "resume")
        assert ref.is_alive
    assert log == [i for i in range(n) if i not in bad]
    assert other_log == list(range(n))
    assert sorted(e.args[0] for e in failures) == sorted(bad)
    assert all(type(e) is exc_type for e in failures)
    tally.add(faults=len(bad), operations=2 * n + 5, items_checked=2 * n)


def test_actor_stop_and_escalate_strategies_account_for_every_message(impl, tally):
    """supervision="stop": the failing actor stops; every message is either
    handled or a dead letter, once.  supervision="escalate": the parent's
    on_failure hears the child's error and the child stops likewise."""
    n = 100
    log: list[int] = []
    with _system(impl) as system:
        gate = threading.Event()

        class Slow(Recorder):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                if msg == 0:
                    gate.wait(T)  # hold the turn so the rest queue up
                return super().handle_message(msg)

        ref = system.spawn(Slow, log, frozenset({10}), supervision="stop")
        stopped = watch_stopped(system, ref)
        for i in range(n):
            ref.tell(i)
        gate.set()
        assert stopped.wait(T)
        for i in range(n, n + 10):
            ref.tell(i)  # after the stop: dead letters
        with pytest.raises(ActorStopped):
            ref.ask("sync", timeout=T)
        dead = _mine(system, ref)
        assert log == list(range(10))
        assert sorted(log + dead) == [i for i in range(n + 10) if i != 10]

        parent_failures: list[BaseException] = []
        child_log: list[int] = []
        spawned = threading.Event()
        holder: list = []

        class Parent(Actor):
            def on_start(self) -> None:
                holder.append(self.context.spawn(Recorder, child_log, frozenset({"x"}),
                                                 supervision="escalate"))
                spawned.set()

            def handle_message(self, msg):  # noqa: ANN001, ANN201
                return msg

            def on_failure(self, exc: BaseException) -> None:
                parent_failures.append(exc)

        parent = system.spawn(Parent, supervision="resume")
        assert spawned.wait(T)
        child = holder[0]
        child_stopped = watch_stopped(system, child)
        for msg in (1, 2, "x", 3):
            child.tell(msg)
        assert child_stopped.wait(T)
        assert parent.ask("still here", timeout=T) == "still here"
        assert [str(e) for e in parent_failures] == ["x"]
        assert child_log == [1, 2] and _mine(system, child) in ([3], [])
        assert sorted(child_log + _mine(system, child)) in ([1, 2, 3], [1, 2])
    tally.add(faults=2, operations=n + 20, items_checked=n + 13)


def test_actor_ask_failures_go_to_the_asker(impl, tally):
    """handle_message raising for an ask (from outside, and from another
    actor's handler): the asker gets the exception, KeyboardInterrupt
    included; the actor is not supervised for it and keeps its state."""
    log: list = []
    failures: list = []
    with _system(impl) as system:
        ref = system.spawn(Recorder, log, frozenset({"bad", "int"}), Boom, failures)
        me = ref.ask("whoami", timeout=T)
        for _ in range(3):
            with pytest.raises(Boom):
                ref.ask("bad", timeout=T)
            with pytest.raises(Boom):
                ref.ask("bad")  # answered inline on this thread when idle
            with pytest.raises(Boom):
                ref.ask_async("bad").result(T)

        class Asker(Actor):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                try:
                    ref.ask(msg, timeout=T)
                except Boom as exc:
                    return f"caught {exc}"
                return "no error"

        asker = system.spawn(Asker)
        assert asker.ask("bad", timeout=T) == "caught bad"
        ki = system.spawn(Recorder, log, frozenset({"int"}), KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            ki.ask("int", timeout=T)
        assert ki.ask("fine", timeout=T) == "fine"
        assert ref.ask("whoami", timeout=T) is me
        assert ref.ask("ok", timeout=T) == "ok"
    assert failures == [] and log == ["fine", "ok"]
    tally.add(faults=11, operations=16, items_checked=2)


class RaisingHooks(Recorder):
    """A Recorder whose lifecycle hooks all raise."""

    def on_start(self) -> None:
        raise Boom("on_start")

    def on_failure(self, exc: BaseException) -> None:
        raise Boom("on_failure")

    def on_stop(self) -> None:
        raise Boom("on_stop")


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_lifecycle_hook_failures_are_reported(impl, reported, tally):
    """on_start, on_failure and on_stop raising: each reported through
    threading.excepthook; the actor still handles its messages, supervision
    still restarts it, and stopping still completes (watchers told, name
    freed)."""
    log: list[int] = []

    with _system(impl) as system:
        ref = system.spawn(RaisingHooks, log, frozenset({3}), name="hooky", max_restarts=5)
        first = ref.ask("whoami", timeout=T)
        for i in range(6):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 5
        assert ref.ask("whoami", timeout=T) is not first  # restarted all the same
        stopped = watch_stopped(system, ref)
        ref.stop()
        assert stopped.wait(T)
        assert system.lookup("hooky") is None
        again = system.spawn(Recorder, log, name="hooky")
        assert again.ask("sync", timeout=T) == 5
    assert log == [0, 1, 2, 4, 5]
    # on_start, on_failure, on_stop (restart), on_start (new), on_stop (stop)
    errors = reported.wait_thread(5)
    assert Counter(str(e) for e in errors) == {"on_start": 2, "on_failure": 1, "on_stop": 2}
    tally.add(faults=6, operations=12, items_checked=6)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_handle_timeout_failure_is_supervised(impl, reported, tally):
    """handle_timeout raising: supervised like a handler (on_failure hears
    it, resume keeps going), and timeouts and messages keep coming."""
    fired = threading.Event()
    failures: list[BaseException] = []
    calls = [0]
    log: list[int] = []

    class Ticker(Recorder):
        receive_timeout = 0.005

        def handle_timeout(self) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise Boom("timeout")
            fired.set()

    with _system(impl) as system:
        ref = system.spawn(Ticker, log, frozenset(), Boom, failures, supervision="resume")
        assert fired.wait(T)
        for i in range(10):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 10
        ref.stop()
    assert [str(e) for e in failures] == ["timeout"] and log == list(range(10))
    assert reported.thread == []
    tally.add(faults=1, operations=12, items_checked=10)


def test_actor_factory_failure_at_spawn(impl, tally):
    """A factory raising at spawn: spawn raises it, nothing is left
    registered, and the name can be used again."""
    tries = [0]

    def factory() -> Actor:
        tries[0] += 1
        if tries[0] == 1:
            raise Boom("factory")
        return Recorder([])

    with _system(impl) as system:
        with pytest.raises(Boom):
            system.spawn(factory, name="svc")
        assert system.lookup("svc") is None
        with pytest.raises(TypeError):
            system.spawn(lambda: object(), name="svc")
        ref = system.spawn(factory, name="svc")
        assert ref.ask("hello", timeout=T) == "hello"
    tally.add(faults=2, operations=4, items_checked=1)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
@pytest.mark.parametrize("backoff", [(0.0, 0.0), (0.001, 0.001)], ids=["at-once", "backoff"])
def test_actor_restart_whose_factory_fails_stops_the_actor(impl, reported, tally, backoff):
    """The factory raising when supervision restarts the actor (Akka's
    ActorInitializationException): reported, the actor stops, queued asks
    fail with ActorStopped, queued and later tells are dead letters, and
    watchers are told.  (It used to wedge: the actor looked alive and never
    handled, nor rejected, anything again.)"""
    made = [0]
    log: list[int] = []
    gate = threading.Event()

    def factory() -> Actor:
        made[0] += 1
        if made[0] == 2:
            raise Boom("factory on restart")

        class Gated(Recorder):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                if msg == 0:
                    gate.wait(T)
                return super().handle_message(msg)

        return Gated(log, frozenset({1}))

    with _system(impl) as system:
        ref = system.spawn(factory, max_restarts=3, backoff=backoff)
        stopped = watch_stopped(system, ref)
        for i in range(5):
            ref.tell(i)
        asks = [ref.ask_async(f"q{i}") for i in range(3)]
        gate.set()
        assert stopped.wait(T), "the actor whose restart failed neither ran nor stopped"
        for f in asks:
            assert isinstance(f.exception(T), ActorStopped)
        ref.tell(5)
        assert not ref.is_alive
        assert log == [0]
        assert sorted(_mine(system, ref)) == [2, 3, 4, 5]
    assert [str(e) for e in reported.wait_thread(1)] == ["factory on restart"]
    tally.add(faults=2, operations=10, items_checked=9)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_reply_callback_raising_baseexception(impl, reported, tally):
    """A done callback on an ask_async() future raising KeyboardInterrupt
    runs on the actor's turn: it is reported and the actor goes on handling
    messages (it used to stay scheduled forever, answering nothing)."""
    log: list[int] = []
    with _system(impl) as system:
        ref = system.spawn(Recorder, log)
        gate = threading.Event()

        class Blocker(Actor):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                gate.wait(T)

        # Queue the ask behind a tell so the reply is set by a worker.
        ref2 = system.spawn(Blocker)
        ref2.tell("hold")
        f = ref.ask_async(1)
        f.add_done_callback(lambda fut: (_ for _ in ()).throw(KeyboardInterrupt("cb")))
        assert f.result(T) == 1
        gate.set()
        for i in range(2, 12):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 11
    assert log == list(range(1, 12))
    assert [type(e) for e in reported.wait_thread(1)] == [KeyboardInterrupt]
    tally.add(faults=1, operations=14, items_checked=11)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook and sys.unraisablehook")
def test_actor_hooks_with_a_raising_excepthook(impl, reported, monkeypatch, tally):
    """threading.excepthook itself raising while an actor's hook failure is
    reported: the report falls back to sys.unraisablehook and the actor and
    its supervision keep working."""
    def broken_hook(args) -> None:  # noqa: ANN001
        raise RuntimeError("excepthook is broken")

    log: list[int] = []

    monkeypatch.setattr(threading, "excepthook", broken_hook)
    with _system(impl) as system:
        ref = system.spawn(RaisingHooks, log, frozenset({2}), max_restarts=3)
        for i in range(5):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 4
    assert log == [0, 1, 3, 4]
    assert len(reported.wait_unraisable(3)) >= 3
    tally.add(faults=4, operations=6, items_checked=4)
