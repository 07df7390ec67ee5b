"""Re-entrant use of Channel and Queue.

A finalizer (``__del__``) or a signal handler runs on top of whatever its
thread is doing, so it may use a channel while the same thread is inside an
operation of that channel.  The cyclic GC can run at any allocation, so with
collections made frequent, a loop of sends and receives on one thread while
another makes cyclic garbage whose ``__del__`` calls ``try_send`` re-enters the
channel over and over.  The fallback Channel used to deadlock there within
seconds (bpo-14976 is the same hazard in queue.SimpleQueue).

Each test is bounded: the loop runs in a daemon thread (or, for signals, on
the main thread with a handler that raises once the time is up), so a
deadlock fails the test instead of hanging it; every item accepted (by a
normal send or from ``__del__``) must be received exactly once.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import JOIN_TIMEOUT, check_counts, load_backend

from fastconc import ChannelClosed, Deadlock, Empty, Full, Timeout

pytestmark = pytest.mark.thread_unsafe(reason="changes the gc thresholds / a signal handler")


def stress_seconds() -> float:
    return float(os.environ.get("FASTCONC_STRESS_SECONDS", "1.0"))


@pytest.fixture
def frequent_gc() -> Iterator[None]:
    """Collect the youngest generation at nearly every allocation."""
    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.collect()


class Finalized:
    """Cyclic garbage: only the cyclic GC frees it, at any allocation, on any
    thread; its __del__ offers an item to the structure."""

    def __init__(self, offer: Callable[[Any], bool], tag: Any, accepted: list[Any],
                 errors: list[BaseException]) -> None:
        self.me = self
        self.offer = offer
        self.tag = tag
        self.accepted = accepted
        self.errors = errors

    def __del__(self) -> None:
        try:
            if self.offer(self.tag):
                self.accepted.append(self.tag)
        except ChannelClosed:
            pass
        except BaseException as exc:
            self.errors.append(exc)


def run_bounded(name: str, body: Callable[[threading.Event], None], stop: threading.Event,
                seconds: float) -> None:
    """Run body in a daemon thread for `seconds`, then stop it; a thread that
    does not finish in time is a deadlock (a daemon: it cannot hang the run)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            body(stop)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    t.join(seconds)
    stop.set()
    t.join(JOIN_TIMEOUT)
    assert not t.is_alive(), f"{name} deadlocked: still running {JOIN_TIMEOUT} s after stop"
    if errors:
        raise errors[0]


def make_garbage(offer: Callable[[Any], bool], stop: threading.Event, accepted: list[Any],
                 errors: list[BaseException]) -> threading.Thread:
    tags = itertools.count()

    def run() -> None:
        while not stop.is_set():
            Finalized(offer, ("del", next(tags)), accepted, errors)

    t = threading.Thread(target=run, name="garbage", daemon=True)
    t.start()
    return t


def test_channel_finalizer_reenters(impl, frequent_gc, tally) -> None:  # noqa: ANN001
    """The issue's scenario: ``send(i); recv_many(4)`` in a loop while cyclic
    garbage's ``__del__`` calls ``try_send`` on the same channel."""
    ch = impl.Channel(64)
    stop = threading.Event()
    accepted: list[Any] = []      # every item a call accepted
    received: list[Any] = []
    del_errors: list[BaseException] = []

    def loop(stop: threading.Event) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            while True:           # send, making room when __del__ filled it
                try:
                    ch.send(("a", i), timeout=0.05)
                    break
                except Timeout:
                    received.extend(ch.recv_many(4))
            accepted.append(("a", i))
            received.extend(ch.recv_many(4))
            if i % 16 == 0 and len(ch):   # a bigger batch now and then
                received.extend(ch.recv_many(64, timeout=0))

    garbage = make_garbage(ch.try_send, stop, accepted, del_errors)
    try:
        run_bounded("send/recv_many loop", loop, stop, stress_seconds())
    finally:
        stop.set()
        garbage.join(JOIN_TIMEOUT)
    gc.collect()                  # the last finalizers, before the drain
    while True:
        try:
            received.append(ch.try_recv())
        except Empty:
            break
    assert not del_errors, f"__del__ raised: {del_errors[:3]!r}"
    assert any(tag[0] == "del" for tag in accepted), "no finalizer sent anything"
    n = check_counts(received, accepted)
    tally.add(operations=n, items_checked=n)


def test_queue_finalizer_reenters(impl, frequent_gc, tally) -> None:  # noqa: ANN001
    """The same with a bounded Queue: put/get/task_done in a loop while
    ``__del__`` calls ``put_nowait``; task accounting stays exact."""
    q = impl.Queue(64)
    stop = threading.Event()
    accepted: list[Any] = []
    received: list[Any] = []
    del_errors: list[BaseException] = []

    def offer(item: Any) -> bool:
        try:
            q.put_nowait(item)
        except Full:
            return False
        return True

    def loop(stop: threading.Event) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            while True:
                try:
                    q.put(("a", i), timeout=0.05)
                    break
                except Full:
                    received.append(q.get())
                    q.task_done()
            accepted.append(("a", i))
            for _ in range(2):
                try:
                    received.append(q.get(timeout=0))
                except Empty:
                    break
                q.task_done()

    garbage = make_garbage(offer, stop, accepted, del_errors)
    try:
        run_bounded("put/get loop", loop, stop, stress_seconds())
    finally:
        stop.set()
        garbage.join(JOIN_TIMEOUT)
    gc.collect()
    while True:
        try:
            received.append(q.get_nowait())
        except Empty:
            break
        q.task_done()
    assert not del_errors, f"__del__ raised: {del_errors[:3]!r}"
    assert q.unfinished_tasks == 0
    q.join()                      # returns at once: every task is done
    n = check_counts(received, accepted)
    tally.add(operations=n, items_checked=n)


class _Hung(Exception):
    """Raised by the signal handler once the time is up: the loop is stuck."""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers run on the main thread")
def test_channel_signal_handler_reenters(impl, tally) -> None:  # noqa: ANN001
    """A SIGALRM handler calls ``try_send`` every 200 µs while the main
    thread sends and receives on the same channel.  A lock acquisition is
    interrupted by signals, so a handler stuck on the channel's lock is
    interrupted by the next one, which raises once the time is up."""
    ch = impl.Channel(16)
    accepted: list[Any] = []
    received: list[Any] = []
    tags = itertools.count()
    seconds = stress_seconds()
    start = time.monotonic()
    give_up = start + seconds + JOIN_TIMEOUT / 4
    stuck: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        if time.monotonic() > give_up:
            stuck.append(time.monotonic())
            raise _Hung
        tag = ("sig", next(tags))
        if ch.try_send(tag):
            accepted.append(tag)

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
    try:
        i = 0
        while time.monotonic() - start < seconds:
            while not ch.try_send(("a", i)):
                received.extend(ch.recv_many(8))
            accepted.append(("a", i))
            received.extend(ch.recv_many(3, timeout=0) if len(ch) else ())
            i += 1
    except _Hung:
        pytest.fail("the channel deadlocked under a re-entrant signal handler")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert not stuck
    while True:
        try:
            received.append(ch.try_recv())
        except Empty:
            break
    n = check_counts(received, accepted)
    tally.add(operations=n, items_checked=n)


SIGNALS = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread(),
    reason="needs signal.setitimer, on the main thread (where signal handlers run)")


@contextlib.contextmanager
def alarm_every(interval: float, handler: Callable[[int, Any], None]) -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


@SIGNALS
def test_queue_counts_hold_under_nested_task_done_and_put(impl, tally) -> None:  # noqa: ANN001
    """A handler calls ``task_done()`` and ``put_nowait()`` on the Queue the
    main thread is using.  On 3.10 a handler also runs after a taken jump,
    i.e. between a check and its act: a nested task_done there drove
    unfinished_tasks to -1 (a later join() returned with work unfinished),
    and a nested put into Queue(1) made it hold two items."""
    q = impl.Queue(1)
    seen: list[tuple[int, int]] = []
    calls = 0

    def handler(signum: int, frame: Any) -> None:
        try:
            q.task_done()
        except ValueError:
            pass
        try:
            q.put_nowait("sig")
        except Full:
            pass
        seen.append((q.unfinished_tasks, q.qsize()))

    start = time.monotonic()
    with alarm_every(0.0002, handler):
        while time.monotonic() - start < stress_seconds():
            try:
                q.put_nowait(calls)
            except Full:
                pass
            seen.append((q.unfinished_tasks, q.qsize()))
            try:
                q.get_nowait()
            except Empty:
                pass
            try:
                q.task_done()
            except ValueError:
                pass
            calls += 1
    bad = [(u, n) for u, n in seen if u < 0 or n > 1]
    assert not bad, f"unfinished_tasks < 0 or qsize > maxsize: {bad[:5]}"
    tally.add(operations=calls)


@SIGNALS
def test_interrupted_wait_never_leaves_the_thread_parked(impl, tally) -> None:  # noqa: ANN001
    """KeyboardInterrupt raised by a handler at any point of a blocking recv
    (a Ctrl-C): afterwards a blocking recv still waits its timeout out.
    The fallback registered the thread as parked before its try block, so an
    interrupt there left it marked parked for good, and every later blocking
    call from it counted as nested (recv() with no timeout raised Timeout)."""
    ch = impl.Channel(4)
    armed = False
    interrupted = calls = 0

    def handler(signum: int, frame: Any) -> None:
        if armed:
            raise KeyboardInterrupt

    start = time.monotonic()
    with alarm_every(0.000137, handler):
        while time.monotonic() - start < stress_seconds():
            try:
                try:
                    armed = True
                    ch.recv(timeout=0.0002)
                except (Timeout, KeyboardInterrupt):
                    interrupted += 1
                finally:
                    armed = False
                calls += 1
            except KeyboardInterrupt:  # landed in the finally above
                armed = False
    began = time.monotonic()
    with pytest.raises(Timeout):
        ch.recv(timeout=0.05)
    # A wait never ends before its timeout; a thread left marked parked got
    # Timeout at once, as a nested call does.
    assert time.monotonic() - began >= 0.045
    tally.add(operations=calls)


def test_nested_call_never_waits_fallback() -> None:
    """White box, fallback only: a call made while this thread holds the
    channel's lock (as a finalizer run inside one of its calls does)
    completes at once or raises what a zero timeout raises; it never waits on
    its own thread.  (The compiled backend runs no Python code under its
    mutex: a finalizer there runs between calls, and may wait as any call.)"""
    ns = load_backend("python")
    ch = ns.Channel(1)
    ch.send(1)
    with ch._lock:
        assert ch.try_send(2) is False
        with pytest.raises(Timeout):
            ch.send(2)
        with pytest.raises(Timeout):
            ch.send_many([2, 3], timeout=None)
        assert ch.recv() == 1
        with pytest.raises(Timeout):
            ch.recv()
        with pytest.raises(Timeout):
            ch.recv_many(4)
        ch.send(3)
        assert len(ch) == 1
    assert ch.recv(timeout=JOIN_TIMEOUT) == 3

    q = ns.Queue(1)
    with q._lock:
        q.put(1)
        with pytest.raises(Full):
            q.put(2)
        with pytest.raises(Deadlock):
            q.join()
        assert q.get() == 1
        with pytest.raises(Empty):
            q.get()
        q.task_done()
        q.join()              # nothing unfinished: returns at once
    assert q.qsize() == 0 and q.unfinished_tasks == 0


@pytest.mark.parametrize("method,args", [
    ("send", (1,)), ("recv", ()), ("send_many", ([1],)), ("recv_many", (1,)),
])
def test_huge_timeout_names_argument(impl, method, args) -> None:  # noqa: ANN001
    """A timeout too large for a float is refused alike, naming timeout
    (10**400; a negative one is a ValueError like any negative timeout)."""
    ch = impl.Channel(1)
    with pytest.raises(OverflowError, match="timeout"):
        getattr(ch, method)(*args, timeout=10**400)
    with pytest.raises(ValueError, match="timeout"):
        getattr(ch, method)(*args, timeout=-10**400)


def test_huge_timeout_queue(impl) -> None:  # noqa: ANN001
    q = impl.Queue(1)
    with pytest.raises(OverflowError, match="timeout"):
        q.put(1, timeout=10**400)
    with pytest.raises(OverflowError, match="timeout"):
        q.get(timeout=10**400)


@pytest.mark.parametrize("kind", ["RingBuffer", "SpscRingBuffer", "TypedRingBuffer"])
@pytest.mark.parametrize("capacity", [2**40, 2**48])
def test_huge_ring_refused_alike(impl, kind, capacity) -> None:  # noqa: ANN001
    """A ring the machine could never hold is refused up front by both
    backends (MemoryError naming capacity), not allocated by one only."""
    args = (capacity, "q") if kind == "TypedRingBuffer" else (capacity,)
    with pytest.raises(MemoryError, match="capacity"):
        getattr(impl, kind)(*args)
