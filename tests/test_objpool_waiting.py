"""ObjectPool on both backends when callers wait: timeouts, wake-ups by
put/invalidate/close, a blocked factory, retiring under contention, and
never more than max_size objects under 16 threads."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from conftest import JOIN_TIMEOUT, stress_scale
from objpoolkit import Conn, Factory, FakeClock, spy_backend, stats_of

from fastconc.errors import PoolClosed, ResourceUnavailable, Timeout
from fastconc.objpool import ObjectPool

T = JOIN_TIMEOUT


# ---------------------------------------------------------------- waiting


def test_exhausted_pool_times_out(impl):
    pool = ObjectPool(Factory(), 1, backend=impl)
    held = pool.get(timeout=T)
    with pytest.raises(ResourceUnavailable, match="max_size=1") as info:
        pool.get(timeout=0)
    assert isinstance(info.value, Timeout) and isinstance(info.value, TimeoutError)
    s = pool.stats()
    assert (s.timeouts, s.waits) == (1, 0)  # timeout 0 gives up without waiting
    with pytest.raises(ResourceUnavailable):
        pool.get(timeout=0.01)  # nobody puts anything back: it must run out
    s = pool.stats()
    assert (s.timeouts, s.waits) == (2, 1)
    with pytest.raises(ResourceUnavailable), pool.acquire(timeout=0):
        pass
    assert pool.stats().timeouts == 3
    pool.put(held)
    assert pool.get(timeout=0) is held


def test_pool_default_timeout_and_per_call_override(impl, threads):
    waiting = threading.Event()
    pool = ObjectPool(Factory(), 1, timeout=0, backend=spy_backend(impl, waiting))
    held = pool.get(timeout=T)
    with pytest.raises(ResourceUnavailable):
        pool.get()  # the pool's timeout: 0
    assert not waiting.is_set()
    got: list[Conn] = []
    threads.start(lambda: got.append(pool.get(timeout=T)))  # the call's timeout wins
    assert waiting.wait(T)
    pool.put(held)
    threads.join()
    assert got == [held]
    s = pool.stats()
    assert (s.waits, s.timeouts) == (1, 1)


def test_blocked_get_is_woken_by_put(impl, threads):
    waiting = threading.Event()
    factory = Factory()
    pool = ObjectPool(factory, 2, backend=spy_backend(impl, waiting))
    a, b = pool.get(timeout=T), pool.get(timeout=T)
    got: list[Conn] = []
    threads.start(lambda: got.append(pool.get(timeout=T)))
    assert waiting.wait(T)
    pool.put(b)
    threads.join()
    assert got == [b]
    assert len(factory.made) == 2  # the waiter reused b, no third object
    assert pool.stats().waits == 1
    pool.put(a)


def test_blocked_get_is_woken_by_invalidate_and_makes_a_new_one(impl, threads):
    waiting = threading.Event()
    factory = Factory()
    pool = ObjectPool(factory, 1, backend=spy_backend(impl, waiting))
    a = pool.get(timeout=T)
    got: list[Conn] = []
    threads.start(lambda: got.append(pool.get(timeout=T)))
    assert waiting.wait(T)
    pool.invalidate(a)
    threads.join()
    assert [c.n for c in got] == [1]
    assert a.closed


def test_close_wakes_blocked_get(impl, threads):
    waiting = threading.Event()
    destroyed: list[Conn] = []
    pool = ObjectPool(Factory(), 2, destroy=destroyed.append,
                      backend=spy_backend(impl, waiting))
    a, b = pool.get(timeout=T), pool.get(timeout=T)
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            pool.get(timeout=T)
        except PoolClosed as exc:
            errors.append(exc)

    threads.start(blocked)
    assert waiting.wait(T)
    pool.close()
    threads.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert destroyed == []  # nothing was idle
    pool.put(a)  # objects still out are destroyed as they come back, no error
    pool.invalidate(b)
    assert destroyed == [a, b]
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 2, "destroyed": 2}


def test_close_destroys_idle_and_refuses_checkouts(impl):
    destroyed: list[Conn] = []
    factory = Factory()
    resets: list[Conn] = []
    with ObjectPool(factory, 3, min_size=2, destroy=destroyed.append, reset=resets.append,
                    backend=impl) as pool:
        out = pool.get(timeout=T)
        assert not pool.closed
    assert pool.closed
    assert out.n == 1  # the top of the pre-made pair
    assert destroyed == [factory.made[0]]  # the idle one
    with pytest.raises(PoolClosed):
        pool.get(timeout=0)
    with pytest.raises(PoolClosed), pool.acquire(timeout=T):
        pass
    pool.close()  # idempotent
    pool.put(out)
    assert destroyed[-1] is out
    assert resets == []  # no point resetting what is destroyed right after
    with pytest.raises(ValueError):
        pool.put(out)
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 2, "destroyed": 2}


def test_acquire_block_that_outlives_close(impl):
    pool = ObjectPool(Factory(), 2, backend=impl)
    with pool.acquire(timeout=T) as c:
        pool.close()
        assert not c.closed  # still in use: destroyed only once it is back
    assert c.closed
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 1, "destroyed": 1}


def test_close_while_the_factory_runs(impl, threads):
    in_factory, go = threading.Event(), threading.Event()
    factory = Factory()

    def slow_factory() -> Conn:
        in_factory.set()
        assert go.wait(T)
        return factory()

    pool = ObjectPool(slow_factory, 1, backend=impl)
    errors: list[BaseException] = []

    def get() -> None:
        try:
            pool.get(timeout=T)
        except PoolClosed as exc:
            errors.append(exc)

    threads.start(get)
    assert in_factory.wait(T)
    pool.close()
    go.set()
    threads.join()
    assert len(errors) == 1  # the new object is not handed out of a closed pool...
    assert factory.made[0].closed  # ...it is destroyed
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 1, "destroyed": 1}


class SlowDestroy:
    """A destroy hook that blocks until released, counting live objects."""

    def __init__(self) -> None:
        self.destroying = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.alive = 0
        self.most = 0

    def factory(self) -> Conn:
        with self.lock:
            self.alive += 1
            self.most = max(self.most, self.alive)
        return Conn(self.alive)

    def destroy(self, conn: Conn) -> None:
        self.destroying.set()
        assert self.release.wait(T)
        with self.lock:
            self.alive -= 1


@pytest.mark.parametrize("how", ["get", "prune"])
def test_retiring_an_idle_object_keeps_its_slot_until_destroyed(impl, threads, how):
    """While a stale idle object is being destroyed its slot is taken: no
    replacement may be made meanwhile, or max_size would be exceeded."""
    hooks = SlowDestroy()
    clock = FakeClock()
    pool = ObjectPool(hooks.factory, 1, max_idle=1.0, destroy=hooks.destroy, clock=clock,
                      backend=impl)
    pool.put(pool.get())
    clock.now += 2.0  # the idle object is now stale
    results: list[object] = []
    if how == "get":
        threads.start(lambda: results.append(pool.get(timeout=T)))
    else:
        threads.start(lambda: results.append(pool.prune()))
    assert hooks.destroying.wait(T)
    with pytest.raises(ResourceUnavailable):
        pool.get(timeout=0)
    hooks.release.set()
    threads.join()
    assert hooks.most == 1
    if how == "prune":
        assert results == [1]
        assert pool.stats().size == 0
    else:
        assert pool.stats().in_use == 1


def test_objpool_get_timeout_and_close_while_a_factory_is_blocked(impl, threads):
    """A factory blocked in another checkout holds the only
    slot; get(timeout) still raises within its timeout and close() returns
    at once (each before the factory returns).  The slow checkout then gets
    PoolClosed and its object is destroyed."""
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    destroyed: list[object] = []

    def factory() -> object:
        entered.set()
        release.wait(JOIN_TIMEOUT)
        finished.set()
        return object()

    pool = ObjectPool(factory, 1, destroy=destroyed.append, backend=impl)
    outcome: list[BaseException] = []

    def slow_get() -> None:
        try:
            pool.get(timeout=JOIN_TIMEOUT)
        except PoolClosed as exc:
            outcome.append(exc)

    try:
        threads.start(slow_get)
        assert entered.wait(JOIN_TIMEOUT)
        with pytest.raises(ResourceUnavailable):
            pool.get(timeout=0.2)
        pool.close()
        with pytest.raises(PoolClosed):
            pool.get(timeout=0.2)
        assert not finished.is_set()  # every call above returned first
    finally:
        release.set()
    threads.join()
    assert len(outcome) == 1 and len(destroyed) == 1


# ---------------------------------------------------------------- threads


# Holding an object, a worker lets the others run: with the GIL, a thread
# would otherwise do hundreds of get/put pairs in one time slice and never
# find the pool busy.  A yield, not a synchronization: nothing waits on it.
let_others_run = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


def _hammer(impl, threads, workers: int, rounds: int) -> None:  # noqa: ANN001
    max_size = 4
    factory = Factory()
    pool = ObjectPool(factory, max_size, backend=impl)
    lock = threading.Lock()
    holders: dict[int, int] = {}  # id(obj) -> worker holding it
    peak = [0]
    start = threading.Barrier(workers)

    def take(me: int, obj: Conn) -> None:
        with lock:
            assert id(obj) not in holders, f"{obj} handed to {me} while {holders[id(obj)]} has it"
            holders[id(obj)] = me
            peak[0] = max(peak[0], len(holders))
            assert len(holders) <= max_size

    def give(obj: Conn) -> None:
        with lock:
            del holders[id(obj)]

    failed = threading.Event()

    def work(me: int) -> None:
        try:
            rounds_of(me)
        except PoolClosed:
            if not failed.is_set():
                raise
        except BaseException:
            # Fail fast: wake the others instead of leaving them waiting for
            # objects this thread will never put back.
            failed.set()
            pool.close()
            raise

    def rounds_of(me: int) -> None:
        rnd = random.Random(me)
        start.wait(T)
        for i in range(rounds):
            if i % 2:
                with pool.acquire(timeout=T) as obj:
                    take(me, obj)
                    let_others_run()
                    give(obj)
            else:
                first = pool.get(timeout=T)
                take(me, first)
                second = None
                if rnd.random() < 0.3:  # hold two at once now and then
                    try:
                        second = pool.get(timeout=0)
                    except ResourceUnavailable:
                        pass
                    else:
                        take(me, second)
                let_others_run()
                for obj in (second, first):
                    if obj is not None:
                        give(obj)
                        pool.put(obj)

    for me in range(workers):
        threads.start(work, me)
    threads.join()
    s = pool.stats()
    assert 1 <= s.created <= max_size
    assert len(factory.made) == s.created
    assert s.in_use == 0 and s.idle == s.size == s.created and s.destroyed == 0
    assert peak[0] <= max_size
    # Holders did overlap (else this test would prove nothing about the bound).
    assert peak[0] >= 2
    assert holders == {}


def test_never_more_than_max_size_under_16_threads(impl, threads):
    _hammer(impl, threads, 16, int(200 * stress_scale()))


@pytest.mark.stress
def test_never_more_than_max_size_under_16_threads_heavy(impl, threads):
    _hammer(impl, threads, 16, int(5_000 * stress_scale()))
