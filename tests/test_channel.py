"""Channel behaviour, on both backends."""

from __future__ import annotations

import gc
import math
import sys
import threading
import weakref

import pytest
from conftest import JOIN_TIMEOUT

from fastconc import ChannelClosed, ConcurrencyError, Empty, Timeout


class Obj:
    """A weak-referenceable item."""



# ---------------------------------------------------------------- construction


def test_capacity_is_exact(impl):
    ch = impl.Channel(3)
    assert ch.capacity == 3
    assert [ch.try_send(i) for i in range(4)] == [True, True, True, False]
    assert len(ch) == 3
    assert [ch.recv() for _ in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("bad", [0, -1, -(2**70)])
def test_capacity_below_one_is_value_error(impl, bad):
    with pytest.raises(ValueError, match="capacity"):
        impl.Channel(bad)


@pytest.mark.parametrize("bad", [1.5, "4", None, True, [4]])
def test_capacity_not_an_int_is_type_error(impl, bad):
    with pytest.raises(TypeError, match="capacity"):
        impl.Channel(bad)


def test_huge_capacity_allocates_lazily(impl):
    ch = impl.Channel(2**40)
    ch.send("x")
    assert ch.recv() == "x"


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_bad_timeout_is_value_error(impl, bad):
    ch = impl.Channel(1)
    for call in (lambda: ch.send(1, timeout=bad), lambda: ch.recv(timeout=bad),
                 lambda: ch.send_many([1], timeout=bad), lambda: ch.recv_many(1, timeout=bad)):
        with pytest.raises(ValueError, match="timeout"):
            call()
    assert len(ch) == 0, "a rejected call must not be half-done"


@pytest.mark.parametrize("bad", ["1", object(), [1]])
def test_timeout_not_a_number_is_type_error(impl, bad):
    ch = impl.Channel(1)
    with pytest.raises(TypeError, match="timeout"):
        ch.send(1, timeout=bad)
    with pytest.raises(TypeError, match="timeout"):
        ch.recv(timeout=bad)
    assert len(ch) == 0


@pytest.mark.parametrize("bad", [0, -3])
def test_recv_many_max_items_below_one(impl, bad):
    ch = impl.Channel(2)
    ch.send(1)
    with pytest.raises(ValueError, match="max_items"):
        ch.recv_many(bad)
    with pytest.raises(TypeError, match="max_items"):
        ch.recv_many(1.0)
    assert len(ch) == 1


def test_init_twice_is_refused(impl):
    ch = impl.Channel(2)
    ch.send(1)
    with pytest.raises(RuntimeError, match="already initialised"):
        ch.__init__(5)
    q = impl.Queue()
    q.put(1)
    with pytest.raises(RuntimeError, match="already initialised"):
        q.__init__()
    assert ch.capacity == 2 and ch.recv() == 1 and q.get() == 1 and q.unfinished_tasks == 1


def test_not_picklable(impl):
    import pickle

    with pytest.raises(TypeError, match="cannot pickle 'Channel' object"):
        pickle.dumps(impl.Channel(1))
    with pytest.raises(TypeError, match="cannot pickle 'Queue' object"):
        pickle.dumps(impl.Queue())


def test_generic_alias(impl):
    assert impl.Channel[int] is not None


# ---------------------------------------------------------------- single thread


def test_fifo_order_and_len(impl):
    ch = impl.Channel(100)
    for i in range(100):
        ch.send(i)
    assert len(ch) == 100
    assert [ch.recv() for _ in range(100)] == list(range(100))
    assert len(ch) == 0


def test_wraparound_many_times(impl):
    ch = impl.Channel(5)
    out = []
    for i in range(1000):
        ch.send(i)
        if i % 3 == 2:
            out.extend(ch.recv_many(5))
    out.extend(ch.recv_many(5))
    assert out == list(range(1000))


def test_try_recv_empty_raises_empty(impl):
    ch = impl.Channel(1)
    with pytest.raises(Empty):
        ch.try_recv()
    import queue

    with pytest.raises(queue.Empty):
        ch.try_recv()


def test_timeouts(impl):
    ch = impl.Channel(1)
    with pytest.raises(Timeout):
        ch.recv(timeout=0.01)
    with pytest.raises(TimeoutError):
        ch.recv(timeout=0)
    ch.send("a")
    with pytest.raises(Timeout):
        ch.send("b", timeout=0.01)
    with pytest.raises(Timeout):
        ch.send("b", timeout=0)
    assert ch.recv(timeout=0) == "a"


def test_send_many_and_recv_many(impl):
    ch = impl.Channel(10)
    assert ch.send_many(range(4)) == 4
    assert ch.send_many(()) == 0
    assert ch.send_many([4, 5]) == 2
    assert ch.recv_many(3) == [0, 1, 2]
    assert ch.recv_many(100) == [3, 4, 5]
    with pytest.raises(Timeout):
        ch.recv_many(5, timeout=0.01)


def test_send_many_partial_on_timeout(impl):
    ch = impl.Channel(3)
    assert ch.send_many(range(5), timeout=0.01) == 3
    with pytest.raises(Timeout):
        ch.send_many([9], timeout=0)
    assert ch.recv_many(10) == [0, 1, 2]


def test_send_many_rejects_non_iterable(impl):
    ch = impl.Channel(3)
    with pytest.raises(TypeError):
        ch.send_many(5)
    assert len(ch) == 0


def test_send_many_from_generator(impl):
    ch = impl.Channel(10)
    assert ch.send_many(i * i for i in range(5)) == 5
    assert ch.recv_many(5) == [0, 1, 4, 9, 16]


def test_close_drains_then_raises(impl):
    ch = impl.Channel(5)
    ch.send_many([1, 2, 3])
    assert not ch.closed
    ch.close()
    ch.close()  # idempotent
    assert ch.closed
    with pytest.raises(ChannelClosed):
        ch.send(4)
    with pytest.raises(ChannelClosed):
        ch.try_send(4)
    with pytest.raises(ChannelClosed):
        ch.send_many([4])
    assert ch.recv() == 1
    assert ch.try_recv() == 2
    assert ch.recv_many(5) == [3]
    for call in (ch.recv, ch.try_recv, lambda: ch.recv_many(2), lambda: ch.recv(timeout=0)):
        with pytest.raises(ChannelClosed):
            call()


def test_errors_are_concurrency_errors(impl):
    ch = impl.Channel(1)
    ch.close()
    with pytest.raises(ConcurrencyError):
        ch.recv()
    if sys.version_info >= (3, 13):
        import queue

        with pytest.raises(queue.ShutDown):
            ch.recv()


def test_iteration_until_closed(impl):
    ch = impl.Channel(10)
    ch.send_many("abc")
    ch.close()
    assert list(ch) == ["a", "b", "c"]


def test_context_manager_closes(impl):
    with impl.Channel(2) as ch:
        ch.send(1)
    assert ch.closed
    assert ch.recv() == 1


def test_repr(impl):
    ch = impl.Channel(4)
    ch.send(1)
    assert "len=1" in repr(ch) and "capacity=4" in repr(ch)


# ---------------------------------------------------------------- ownership


def test_dropping_channel_releases_items(impl):
    items = [Obj() for _ in range(10)]
    refs = [weakref.ref(o) for o in items]
    ch = impl.Channel(16)
    ch.send_many(items)
    del items, ch
    gc.collect()
    assert all(r() is None for r in refs)


def test_cycle_through_channel_is_collected(impl):
    ch = impl.Channel(4)
    holder = Obj()
    holder.ch = ch
    ch.send(holder)
    ref = weakref.ref(holder)
    del holder, ch
    gc.collect()
    assert ref() is None


def test_refcounts_balanced(impl):
    ch = impl.Channel(2)
    o = Obj()
    base = sys.getrefcount(o)
    ch.send(o)
    assert sys.getrefcount(o) == base + 1
    ch.send(o)
    assert not ch.try_send(o)
    with pytest.raises(Timeout):
        ch.send(o, timeout=0)
    with pytest.raises(Timeout):
        ch.send_many([o, o], timeout=0.001)
    assert sys.getrefcount(o) == base + 2
    assert ch.recv_many(2) == [o, o]
    assert sys.getrefcount(o) == base
    ch.send(o)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.send(o)
    assert sys.getrefcount(o) == base + 1
    ch.recv()
    assert sys.getrefcount(o) == base


def test_send_many_timeout_releases_unsent(impl):
    ch = impl.Channel(1)
    o = Obj()
    base = sys.getrefcount(o)
    batch = [o, o, o]
    assert ch.send_many(batch, timeout=0) == 1
    assert sys.getrefcount(o) == base + 3 + 1  # the list's three and the channel's one
    del batch
    assert sys.getrefcount(o) == base + 1


# ---------------------------------------------------------------- threads


def test_recv_blocks_until_send(impl, threads):
    ch = impl.Channel(1)
    got = []
    threads.start(lambda: got.append(ch.recv(timeout=JOIN_TIMEOUT)))
    ch.send("x")
    threads.join()
    assert got == ["x"]


def test_send_blocks_while_full(impl, threads):
    ch = impl.Channel(1)
    ch.send(0)
    sent = threading.Event()

    def producer():
        ch.send(1, timeout=JOIN_TIMEOUT)
        sent.set()

    threads.start(producer)
    assert not sent.wait(0.05)  # still full: the producer cannot have finished
    assert ch.recv() == 0
    assert sent.wait(JOIN_TIMEOUT)
    assert ch.recv() == 1


def test_close_wakes_blocked_receivers_and_senders(impl, threads):
    empty = impl.Channel(1)
    full = impl.Channel(1)
    full.send("keep")
    outcomes = []
    started = threading.Barrier(7)

    def receiver():
        started.wait(JOIN_TIMEOUT)
        try:
            empty.recv(timeout=JOIN_TIMEOUT)
        except ChannelClosed:
            outcomes.append("recv-closed")

    def sender():
        started.wait(JOIN_TIMEOUT)
        try:
            full.send("x", timeout=JOIN_TIMEOUT)
        except ChannelClosed:
            outcomes.append("send-closed")

    for _ in range(3):
        threads.start(receiver)
        threads.start(sender)
    started.wait(JOIN_TIMEOUT)
    empty.close()
    full.close()
    threads.join()
    assert sorted(outcomes) == ["recv-closed"] * 3 + ["send-closed"] * 3
    assert full.recv() == "keep"


def test_send_many_blocks_for_room(impl, threads):
    ch = impl.Channel(4)
    n = 1000
    got = []

    def consumer():
        while len(got) < n:
            got.extend(ch.recv_many(3, timeout=JOIN_TIMEOUT))

    threads.start(consumer)
    assert ch.send_many(range(n), timeout=JOIN_TIMEOUT) == n
    threads.join()
    assert got == list(range(n))


def test_send_many_partial_when_closed_midway(impl, threads):
    ch = impl.Channel(2)
    result = []
    threads.start(lambda: result.append(ch.send_many(range(10), timeout=JOIN_TIMEOUT)))
    # Once the two slots are taken the sender is stuck; closing stops it.
    assert ch.recv(timeout=JOIN_TIMEOUT) == 0
    ch.close()
    threads.join()
    (sent,) = result
    rest = list(ch)
    assert 2 <= sent <= 10 and rest == list(range(1, sent))


def test_python_subclass_survives_a_collection(impl):
    """The collector must see a subclass's type once: visiting it from both
    the subclass's and our traverse hook made gc clear a live class."""
    import gc

    for base in (impl.Channel, impl.Queue):
        sub = type("Sub", (base,), {"x": 42})
        obj = sub(4)
        assert [r for r in gc.get_referents(obj) if r is sub] in ([], [sub])
        obj.put(obj) if base is impl.Queue else obj.send(obj)  # a cycle through it
        del obj
        gc.collect()
        assert sub.x == 42 and sub.__mro__[0] is sub
        assert sub(2).x == 42


# ---------------------------------------------------------------- laps and wraps
# The compiled Channel keeps up to 65,536 items in a fixed array whose index
# wraps at the capacity (not at a power of two) and a growable ring past that;
# these capacities sit on each side of the wrap arithmetic's edges.

LAP_CAPACITIES = [1, 2, 3, 5, 1023, 1024, 1025, 65536, 65537]


@pytest.mark.parametrize("capacity", LAP_CAPACITIES)
def test_capacity_is_exact_lap_after_lap(impl, capacity):
    ch = impl.Channel(capacity)
    sent = received = 0
    for _lap in range(3):
        while ch.try_send(sent):
            sent += 1
            assert len(ch) == sent - received
        assert sent - received == capacity
        # Half out, half in again: the next fill starts mid-array.
        for _ in range(max(1, capacity // 2)):
            assert ch.try_recv() == received
            received += 1
        assert len(ch) == sent - received
    assert sent == capacity + 2 * max(1, capacity // 2)
    rest = list(range(received, sent))
    if rest:
        assert ch.recv_many(capacity) == rest
    assert len(ch) == 0
    with pytest.raises(Empty):
        ch.try_recv()


@pytest.mark.parametrize("capacity", [3, 5, 8, 1000])
def test_batches_cross_the_wrap_in_order(impl, capacity):
    ch = impl.Channel(capacity)
    expected = []
    nxt = 0
    for shift in range(2 * capacity + 3):
        # Move the head and tail `shift % capacity` slots on, then fill the
        # channel in one batch and empty it in one batch.
        for _ in range(shift % capacity):
            ch.send(nxt)
            assert ch.recv() == nxt
            nxt += 1
        batch = list(range(nxt, nxt + capacity))
        nxt += capacity
        assert ch.send_many(batch, timeout=0) == capacity
        assert not ch.try_send("no room")
        got = ch.recv_many(capacity + 7)
        expected.append(batch)
        assert got == batch
    assert len(expected) == 2 * capacity + 3


def test_one_recv_many_releases_every_blocked_sender(impl, threads):
    # A batch that frees k slots must wake up to k blocked senders, not one.
    k = 4
    ch = impl.Channel(k)
    assert ch.send_many(range(k)) == k
    started = threading.Barrier(k + 1)

    def sender(i: int) -> None:
        started.wait(JOIN_TIMEOUT)
        ch.send(("late", i), timeout=JOIN_TIMEOUT)

    for i in range(k):
        threads.start(sender, i)
    started.wait(JOIN_TIMEOUT)
    assert ch.recv_many(k, timeout=JOIN_TIMEOUT) == list(range(k))
    threads.join()
    late = ch.recv_many(k, timeout=JOIN_TIMEOUT)
    while len(late) < k:
        late += ch.recv_many(k, timeout=JOIN_TIMEOUT)
    assert sorted(late) == [("late", i) for i in range(k)]


def test_one_send_many_releases_every_blocked_receiver(impl, threads):
    k = 4
    ch = impl.Channel(16)
    started = threading.Barrier(k + 1)
    got: list[object] = []

    def receiver() -> None:
        started.wait(JOIN_TIMEOUT)
        got.append(ch.recv(timeout=JOIN_TIMEOUT))

    for _ in range(k):
        threads.start(receiver)
    started.wait(JOIN_TIMEOUT)
    assert ch.send_many(range(k), timeout=JOIN_TIMEOUT) == k
    threads.join()
    assert sorted(got) == list(range(k))
