"""Channel and Queue: randomized timeouts, and close()/shutdown() racing
sends and receives, round after round until the time budget is spent.

Every item carries a unique key.  A send that returned success accepted its
item; a send that raised (Timeout, Full, ChannelClosed) or a send_many that
reported fewer items accepted none of the rest.  After the round: every
accepted item was received exactly once and nothing else was received,
except that Queue.shutdown(immediate=True) drops what is queued, which the
API accounts for by marking those items done: unfinished_tasks ends at 0.
"""

from __future__ import annotations

import gc
import random
import threading
import weakref

import pytest
from conftest import JOIN_TIMEOUT, check_counts, check_fifo_per_producer, join_queue
from stress_helpers import (
    jitter,
    random_pause,
    random_timeout,
    run_rounds,
)

from fastconc import ChannelClosed, Empty, Full, Timeout

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


def test_channel_random_timeouts_and_close_race_sends_and_receives(impl, threads, tally):
    producers, consumers = 3, 3
    run_rounds(tally, lambda: _channel_round(impl, threads, producers, consumers))


def _channel_round(impl, threads, producers: int, consumers: int) -> tuple[int, int]:
    """One round: a fresh channel, closed at a random moment.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    ch = impl.Channel(random.Random(seed).choice((1, 2, 3, 8)))
    accepted: list[list[tuple[int, int]]] = [[] for _ in range(producers)]
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers + 1)

    def producer(p: int) -> None:
        rnd = random.Random(seed + p)
        mine = accepted[p]
        start.wait(T)
        i = 0
        while True:
            calls[p] += 1
            mode = rnd.randrange(4)
            try:
                if mode == 0:
                    ch.send((p, i), timeout=random_timeout(rnd, T))
                    mine.append((p, i))
                    i += 1
                elif mode == 1:
                    if ch.try_send((p, i)):
                        mine.append((p, i))
                    i += 1
                elif mode == 2:
                    ch.send((p, i))  # no timeout: close() must wake it
                    mine.append((p, i))
                    i += 1
                else:
                    batch = [(p, i + k) for k in range(rnd.randint(1, 6))]
                    i += len(batch)
                    sent = ch.send_many(batch, timeout=random_timeout(rnd, T))
                    assert 1 <= sent <= len(batch)
                    mine.extend(batch[:sent])
            except Timeout:
                i += 1  # that key was refused: never reuse it
            except ChannelClosed:
                return
            jitter(rnd)

    def consumer(c: int) -> None:
        rnd = random.Random(seed + 100 + c)
        out = received[c]
        start.wait(T)
        while True:
            calls[producers + c] += 1
            mode = rnd.randrange(4)
            try:
                if mode == 0:
                    out.append(ch.recv(timeout=random_timeout(rnd, T)))
                elif mode == 1:
                    out.append(ch.try_recv())
                elif mode == 2:
                    out.append(ch.recv())  # no timeout: close() must wake it
                else:
                    got = ch.recv_many(rnd.randint(1, 5), timeout=random_timeout(rnd, T))
                    assert got, "recv_many returned an empty list"
                    out.extend(got)
            except (Timeout, Empty):
                pass
            except ChannelClosed:
                return
            jitter(rnd)

    for p in range(producers):
        threads.start(producer, p)
    for c in range(consumers):
        threads.start(consumer, c)
    start.wait(T)
    random_pause(random.Random(seed - 1))
    ch.close()
    threads.join()
    with pytest.raises(ChannelClosed):
        ch.send("late", timeout=0)
    with pytest.raises(ChannelClosed):
        ch.recv(timeout=0)
    assert len(ch) == 0
    checked += check_counts((x for part in received for x in part),
                            (x for part in accepted for x in part))
    check_fifo_per_producer(received)
    total_calls += sum(calls)
    return total_calls, checked


class Item:
    """A queued item that can tell whether the queue let go of it."""

    __slots__ = ("key", "__weakref__")

    def __init__(self, key: tuple[int, int]) -> None:
        self.key = key


@pytest.mark.parametrize("immediate", [False, True], ids=["drain", "immediate"])
def test_queue_shutdown_races_put_and_get(impl, threads, tally, immediate):
    producers, consumers = 3, 2
    run_rounds(tally, lambda: _queue_round(impl, threads, producers, consumers, immediate))


def _queue_round(impl, threads, producers: int, consumers: int, immediate: bool) -> tuple[int, int]:
    """One round: a fresh queue, shut down at a random moment.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    q = impl.Queue(random.Random(seed).choice((0, 1, 2, 5)))
    accepted: list[list[tuple[int, int]]] = [[] for _ in range(producers)]
    alive: dict[tuple[int, int], weakref.ref[Item]] = {}
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    calls = [0] * (producers + consumers)
    start = threading.Barrier(producers + consumers + 1)

    def producer(p: int) -> None:
        rnd = random.Random(seed + p)
        mine = accepted[p]
        start.wait(T)
        i = 0
        while True:
            calls[p] += 1
            item = Item((p, i))
            alive[item.key] = weakref.ref(item)
            i += 1
            mode = rnd.randrange(3)
            try:
                if mode == 0:
                    q.put(item, timeout=random_timeout(rnd, T))
                elif mode == 1:
                    q.put_nowait(item)
                else:
                    q.put(item)  # no timeout: shutdown() must wake it
            except Full:
                continue
            except ChannelClosed:
                return
            finally:
                del item
            mine.append((p, i - 1))
            jitter(rnd)

    def consumer(c: int) -> None:
        rnd = random.Random(seed + 100 + c)
        out = received[c]
        start.wait(T)
        while True:
            calls[producers + c] += 1
            mode = rnd.randrange(3)
            try:
                if mode == 0:
                    item = q.get(timeout=random_timeout(rnd, T))
                elif mode == 1:
                    item = q.get_nowait()
                else:
                    item = q.get()  # no timeout: shutdown() must wake it
            except Empty:
                continue
            except ChannelClosed:
                return
            out.append(item.key)
            del item
            q.task_done()
            jitter(rnd)

    for p in range(producers):
        threads.start(producer, p)
    for c in range(consumers):
        threads.start(consumer, c)
    start.wait(T)
    random_pause(random.Random(seed - 1))
    q.shutdown(immediate=immediate)
    threads.join()
    assert q.is_shutdown
    with pytest.raises(ChannelClosed):
        q.put_nowait(Item((-1, -1)))
    with pytest.raises(ChannelClosed):
        q.get_nowait()
    assert q.qsize() == 0
    # Every item received was marked done, every dropped one by the
    # shutdown itself: nothing is left unfinished, join() returns.
    assert q.unfinished_tasks == 0
    join_queue(q)
    got = [x for part in received for x in part]
    want = [x for part in accepted for x in part]
    if immediate:
        # Dropped items are the accepted ones nobody received: the queue
        # must have let go of them; nothing else may be missing.
        check_counts(got, set(got) & set(want))
        dropped = set(want) - set(got)
        gc.collect()
        held = [key for key in dropped if alive[key]() is not None]
        assert not held, f"{len(held)} dropped items still referenced, e.g. {held[:3]}"
        checked += len(want)
    else:
        checked += check_counts(got, want)
    check_fifo_per_producer(received)
    total_calls += sum(calls) + len(got)  # + task_done calls
    return total_calls, checked
