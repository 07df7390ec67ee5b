"""fastconc.Queue behaves like queue.Queue (with 3.13's shutdown), on both backends."""

from __future__ import annotations

import gc
import queue
import sys
import threading
import weakref

import pytest
from conftest import JOIN_TIMEOUT, check_counts, check_exactly_once_sent, join_queue

from fastconc import ChannelClosed, Empty, Full


class Obj:
    pass


def test_fifo_unbounded(impl):
    q = impl.Queue()
    for i in range(10_000):
        q.put(i)
    assert q.qsize() == 10_000 and not q.full() and not q.empty()
    assert [q.get() for _ in range(10_000)] == list(range(10_000))
    assert q.empty()


@pytest.mark.parametrize("maxsize", [0, -5])
def test_nonpositive_maxsize_is_unbounded(impl, maxsize):
    q = impl.Queue(maxsize)
    assert q.maxsize == maxsize
    for i in range(100):
        q.put_nowait(i)
    assert not q.full()


def test_maxsize_type_error(impl):
    with pytest.raises(TypeError, match="maxsize"):
        impl.Queue("3")
    with pytest.raises(TypeError, match="maxsize"):
        impl.Queue(2.5)


def test_bounded_full_and_empty(impl):
    q = impl.Queue(2)
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


def test_negative_timeout_like_stdlib(impl):
    # queue.Queue raises ValueError for a negative timeout in get() always and
    # in put() only when bounded; fastconc.Queue follows it.
    for q in (queue.Queue(1), impl.Queue(1)):
        q.put(1)
        with pytest.raises(ValueError):
            q.get(timeout=-1)
        with pytest.raises(ValueError):
            q.put(1, timeout=-1)
    for q in (queue.Queue(), impl.Queue()):
        q.put(1, timeout=-1)
        assert q.qsize() == 1
    # timeout is ignored when block is false, as in queue.Queue
    q = impl.Queue(1)
    q.put(1, block=False, timeout=-1)
    assert q.get(block=False, timeout=-1) == 1


def test_task_done_and_join(impl, threads):
    q = impl.Queue()
    for i in range(50):
        q.put(i)
    assert q.unfinished_tasks == 50
    done = threading.Event()

    def joiner():
        q.join()
        done.set()

    threads.start(joiner)
    for _ in range(50):
        q.get()
        assert not done.is_set()
        q.task_done()
    assert done.wait(JOIN_TIMEOUT)
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    join_queue(q)  # nothing unfinished: returns at once


def test_join_from_many_threads(impl, threads):
    q = impl.Queue()
    q.put("work")
    finished = []
    for _ in range(4):
        threads.start(lambda: (q.join(), finished.append(1)))
    assert q.get() == "work"
    q.task_done()
    threads.join()
    assert len(finished) == 4


def test_shutdown_graceful(impl):
    q = impl.Queue()
    q.put(1)
    q.put(2)
    assert not q.is_shutdown
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(ChannelClosed):
        q.put(3)
    with pytest.raises(ChannelClosed):
        q.put_nowait(3)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(ChannelClosed):
        q.get()
    with pytest.raises(ChannelClosed):
        q.get_nowait()
    with pytest.raises(ChannelClosed):
        q.get(timeout=0.5)
    assert q.unfinished_tasks == 2


def test_shutdown_immediate_drops_and_marks_done(impl):
    q = impl.Queue()
    items = [Obj() for _ in range(3)]
    refs = [weakref.ref(o) for o in items]
    for o in items:
        q.put(o)
    q.get()
    del items, o
    q.shutdown(immediate=True)
    gc.collect()
    assert all(r() is None for r in refs[1:])
    assert q.qsize() == 0
    assert q.unfinished_tasks == 1  # the item taken by get() is still unfinished
    with pytest.raises(ChannelClosed):
        q.get()
    q.task_done()
    join_queue(q)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="queue.ShutDown is new in 3.13")
def test_shutdown_is_queue_shutdown(impl):
    q = impl.Queue()
    q.shutdown()
    with pytest.raises(queue.ShutDown):
        q.put(1)


def test_shutdown_wakes_blocked_getters_putters_and_joiners(impl, threads):
    empty = impl.Queue()
    full = impl.Queue(1)
    full.put("x")
    pending = impl.Queue()
    pending.put("unfinished")
    outcomes = []
    barrier = threading.Barrier(7)

    def getter():
        barrier.wait(JOIN_TIMEOUT)
        try:
            empty.get(timeout=JOIN_TIMEOUT)
        except ChannelClosed:
            outcomes.append("get")

    def putter():
        barrier.wait(JOIN_TIMEOUT)
        try:
            full.put("y", timeout=JOIN_TIMEOUT)
        except ChannelClosed:
            outcomes.append("put")

    def joiner():
        barrier.wait(JOIN_TIMEOUT)
        pending.join()
        outcomes.append("join")

    for fn in (getter, getter, putter, putter, joiner, joiner):
        threads.start(fn)
    barrier.wait(JOIN_TIMEOUT)
    empty.shutdown()
    full.shutdown()
    pending.shutdown(immediate=True)
    threads.join()
    assert sorted(outcomes) == ["get", "get", "join", "join", "put", "put"]


def test_put_get_with_timeout_across_threads(impl, threads):
    q = impl.Queue(1)
    q.put(0)
    threads.start(lambda: q.put(1, timeout=JOIN_TIMEOUT))
    assert q.get(timeout=JOIN_TIMEOUT) == 0
    assert q.get(timeout=JOIN_TIMEOUT) == 1


def test_same_public_surface_as_queue_queue(impl):
    public = {n for n in dir(queue.Queue) if not n.startswith("_")}
    public |= {"maxsize", "unfinished_tasks", "is_shutdown"}
    public -= {"queue", "mutex", "not_empty", "not_full", "all_tasks_done"}  # internals
    missing = {n for n in public if not hasattr(impl.Queue(), n)}
    assert not missing
    assert impl.Queue[int] is not None


def test_dropping_queue_releases_items(impl):
    items = [Obj() for _ in range(5)]
    refs = [weakref.ref(o) for o in items]
    q = impl.Queue()
    for o in items:
        q.put(o)
    del items, o, q
    gc.collect()
    assert all(r() is None for r in refs)


def test_cycle_through_queue_is_collected(impl):
    q = impl.Queue()
    holder = Obj()
    holder.q = q
    q.put(holder)
    ref = weakref.ref(holder)
    del holder, q
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- maxsize at run time


# Longer than any wait of a test on them: a put() that a bug leaves asleep
# must fail the test, not wake by its own timeout and then find room.
PUT_TIMEOUT = 2 * JOIN_TIMEOUT


def start_puts(q, threads, items: list[object]) -> list[threading.Event]:  # noqa: ANN001
    """A thread per item puts it; returns once each is about to call put(),
    with an event per thread, set once its put() returned."""
    about, done = [], []
    for item in items:
        entered, returned = threading.Event(), threading.Event()

        def put(item: object = item, entered: threading.Event = entered,
                returned: threading.Event = returned) -> None:
            entered.set()
            q.put(item, timeout=PUT_TIMEOUT)
            returned.set()

        threads.start(put)
        about.append(entered)
        done.append(returned)
    for entered in about:
        assert entered.wait(JOIN_TIMEOUT)
    return done


def assert_puts_return(q, done: list[threading.Event], why: str) -> None:  # noqa: ANN001
    if not all(returned.wait(JOIN_TIMEOUT) for returned in done):
        q.shutdown(immediate=True)  # frees the stuck threads for the fixture's join
        pytest.fail(f"put() still blocked after {why}")


def test_raising_maxsize_wakes_blocked_puts(impl, threads):
    # queue.Queue leaves these puts asleep until a get(); here no get() runs.
    producers = 4
    q = impl.Queue(1)
    q.put(("main", 0))
    done = start_puts(q, threads, [(p, 0) for p in range(producers)])
    assert q.full()
    q.maxsize = producers + 1
    assert_puts_return(q, done, "maxsize was raised")
    threads.join()
    assert q.maxsize == producers + 1 and q.full()
    got = [q.get_nowait() for _ in range(producers + 1)]
    check_counts(got, [("main", 0), *((p, 0) for p in range(producers))])


def test_maxsize_zero_makes_the_queue_unbounded(impl, threads):
    q = impl.Queue(1)
    q.put(0)
    done = start_puts(q, threads, [1])
    q.maxsize = 0
    assert_puts_return(q, done, "maxsize was set to 0")
    assert q.maxsize == 0 and "maxsize=0" in repr(q)
    for i in range(2, 100):  # more than any storage the bound of 1 needed
        q.put_nowait(i)
    assert not q.full()
    assert [q.get_nowait() for _ in range(100)] == list(range(100))


def test_lowering_maxsize_drops_nothing(impl, threads):
    q = impl.Queue(5)
    for i in range(5):
        q.put(i)
    q.maxsize = 2
    assert q.qsize() == 5 and q.full() and q.maxsize == 2
    assert "maxsize=2" in repr(q)
    with pytest.raises(Full):
        q.put_nowait("x")
    with pytest.raises(Full):
        q.put("x", timeout=0.01)
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]
    assert q.qsize() == 2 and q.full()  # at the new bound: still no room
    with pytest.raises(Full):
        q.put_nowait("x")
    done = start_puts(q, threads, [5])
    assert q.get(timeout=JOIN_TIMEOUT) == 3  # below the bound now
    assert_puts_return(q, done, "the queue drained below maxsize")
    assert [q.get_nowait() for _ in range(2)] == [4, 5]
    assert q.empty() and q.unfinished_tasks == 6


def test_shrinking_queue(impl):
    # CPython's test_queue (bpo-10110): a lowered maxsize holds at once.
    q = impl.Queue(3)
    q.put(1)
    q.put(2)
    q.put(3)
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    assert q.qsize() == 3
    q.maxsize = 2
    with pytest.raises(queue.Full):
        q.put_nowait(4)


def test_maxsize_bad_values_change_nothing(impl):
    q = impl.Queue(2)
    q.put(1)
    q.put(2)
    for bad in ("3", 2.5, None, [4]):
        with pytest.raises(TypeError, match="maxsize"):
            q.maxsize = bad
        assert q.maxsize == 2 and q.full()
    with pytest.raises(AttributeError):
        del q.maxsize
    assert q.maxsize == 2
    # Whatever the constructor takes (operator.index), the setter takes.
    q.maxsize = True
    assert q.maxsize == impl.Queue(True).maxsize == 1 and q.full()


@pytest.mark.parametrize("size", [-3, sys.maxsize, sys.maxsize + 1, 10**30])
def test_maxsize_unbounded_values(impl, size):
    # As in the constructor: <= 0, and anything from sys.maxsize up, is unbounded.
    q = impl.Queue(1)
    q.put(0)
    q.maxsize = size
    assert q.maxsize == size and not q.full()
    for i in range(1, 50):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 50


def test_maxsize_raised_after_lowering_grows_storage(impl):
    # Lowered below what the storage holds, then raised past it: the queue
    # must take (and give back) every item up to the new bound.
    q = impl.Queue(40)
    for i in range(40):
        q.put_nowait(i)
    q.maxsize = 2
    assert [q.get_nowait() for _ in range(40)] == list(range(40))
    q.maxsize = 1000
    for i in range(1000):
        q.put_nowait(i)
    assert q.full()
    assert [q.get_nowait() for _ in range(1000)] == list(range(1000))


def test_maxsize_changing_under_traffic_keeps_every_item(impl, threads):
    # The consumer keeps moving the bound (below the count, above it,
    # unbounded) while producers block and wake: nothing lost or doubled.
    producers, per_producer = 4, 300
    sizes = [1, 3, 0, 2, 50, -1, 1, 7]
    q = impl.Queue(2)
    received: list[tuple[int, int]] = []

    def produce(p: int) -> None:
        for i in range(per_producer):
            q.put((p, i), timeout=JOIN_TIMEOUT)

    def consume() -> None:
        for n in range(producers * per_producer):
            received.append(q.get(timeout=JOIN_TIMEOUT))
            if n % 7 == 0:
                q.maxsize = sizes[n // 7 % len(sizes)]

    for p in range(producers):
        threads.start(produce, p)
    threads.start(consume)
    threads.join()
    check_exactly_once_sent([received], [per_producer] * producers)
    assert q.empty()
