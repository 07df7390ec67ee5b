"""No growth from repeating any Channel or Queue operation (error paths and
interrupted waits included), and items handed to either are released:
see tests/leakkit.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import JOIN_TIMEOUT
from leakkit import (
    Cases,
    Made,
    Token,
    assert_all_die,
    check_popped,
    just,
    run_case,
    tokens,
)

from fastconc import (
    ChannelClosed,
    Empty,
    Full,
    Timeout,
)

pytestmark = pytest.mark.thread_unsafe(
    reason="reads process-wide gc/tracemalloc state that concurrent tests would disturb")


CASES = Cases()
case = CASES.case


# --- Channel

@case("channel.send_recv")
def _(impl):
    ch = impl.Channel(4)
    return just(lambda: (ch.send(Token()), ch.recv()))


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
    return just(op)


@case("channel.send_many_recv_many")
def _(impl):
    ch = impl.Channel(64)

    def op() -> None:
        assert ch.send_many([Token(i) for i in range(10)]) == 10
        ch.send_many(Token(i) for i in range(5))  # a generator, not a sequence
        got = 0
        while got < 15:
            got += len(ch.recv_many(7))
    return just(op)


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
    return just(op)


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
    return just(op)


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
    return just(op)


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
    return just(op)


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
    return just(op)


@case("channel.iterate", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(64)
        ch.send_many([Token(i) for i in range(6)])
        ch.close()
        assert len(list(ch)) == 6
    return just(op)


@case("channel.with_block", runs=150)
def _(impl):
    def op() -> None:
        with impl.Channel(64) as ch:
            ch.send(Token())
        assert ch.closed
    return just(op)


@case("channel.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(64)
        ch.send_many([Token(i) for i in range(40)])
    return just(op)


@case("channel.drop_closed_with_items", runs=150)
def _(impl):
    def op() -> None:
        ch = impl.Channel(16)
        ch.send_many([Token(i) for i in range(16)])
        ch.close()
    return just(op)


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
    return just(op)


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
    return just(op)


@case("queue.task_done_join")
def _(impl):
    q = impl.Queue()

    def op() -> None:
        q.put(Token())
        q.get()
        q.task_done()
        q.join()  # returns at once: nothing unfinished
    return just(op)


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
    return just(op)


@case("queue.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        q = impl.Queue()
        for i in range(20):
            q.put(Token(i))
    return just(op)



@pytest.mark.parametrize("name", sorted(CASES))
def test_no_growth(impl, name, tally):
    tally.add(leak_checks=run_case(CASES, impl, name))


def _release_channel(impl) -> int:
    ch = impl.Channel(16)
    items, refs = tokens(12)
    ch.send_many(items[:6])
    list(map(ch.send, items[6:9]))  # (no loop variable left holding an item)
    assert ch.try_send(items[9])
    del items[:10]
    popped = [ch.recv(), ch.try_recv(), *ch.recv_many(3)]
    check_popped(popped, refs[:5], "Channel.recv")
    ch.close()
    popped = [ch.recv(), *ch.recv_many(2)]
    check_popped(popped, refs[5:8], "Channel.recv after close")
    assert [r() is not None for r in refs[8:10]] == [True, True], "items inside were freed"
    items.clear()  # the two never sent
    del ch  # closed with two items left inside
    assert_all_die(refs, "items left in a dropped Channel")
    return 12


def _release_queue(impl) -> int:
    q = impl.Queue(maxsize=10)
    items, refs = tokens(10)
    list(map(q.put, items[:5]))
    list(map(q.put_nowait, items[5:8]))
    items.clear()
    check_popped([q.get(), q.get_nowait(), q.get(timeout=1.0)], refs[:3], "Queue.get")
    q.shutdown(immediate=True)  # discards the rest at once
    assert_all_die(refs[3:8], "items discarded by Queue.shutdown(immediate=True)")
    q2 = impl.Queue()
    items, refs2 = tokens(5)
    list(map(q2.put, items))
    items.clear()
    del q2
    assert_all_die(refs2, "items left in a dropped Queue")
    return 13



RELEASE_CASES: dict[str, Callable[..., int]] = {
    "Channel": _release_channel,
    "Queue": _release_queue,
}


@pytest.mark.parametrize("name", sorted(RELEASE_CASES))
def test_items_are_released(impl, name, tally):
    tally.add(leak_checks=RELEASE_CASES[name](impl))
