"""Fault injection in the primitives (Channel, Queue, the rings, the deque)
and WorkStealingPool: exceptions and misbehaviour from user code, on both
backends.  What is covered and how: tests/faultkit.py and the
fault-injection row of docs/RELIABILITY.md."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from concurrent.futures.thread import BrokenThreadPool

import pytest
from faultkit import (
    BLOCK_TIMEOUT,
    DEL_THREAD_IS_CREATOR,
    Boom,
    DelError,
    T,
    Tracked,
    only_kind,
)

from fastconc import (
    ChannelClosed,
)

pytestmark = pytest.mark.timeout(120)


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
