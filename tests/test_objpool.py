"""ObjectPool on both backends: checkout/return, LIFO reuse, bounded size
under 16 threads, timeouts, close, hooks, retiring, ownership checks, and a
hypothesis state machine against a plain-list model."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import types

import pytest
from conftest import JOIN_TIMEOUT, stress_scale
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fastconc.errors import PoolClosed, ResourceUnavailable, Timeout
from fastconc.objpool import ObjectPool, ObjectPoolStats

T = JOIN_TIMEOUT

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)


class Conn:
    """A stand-in for a connection: numbered, closable."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"Conn({self.n})"


class Factory:
    """Makes Conn(0), Conn(1)...; can be told to fail next time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = itertools.count()
        self.made: list[Conn] = []
        self.fail_next = 0

    def __call__(self) -> Conn:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("cannot connect")
            conn = Conn(next(self._count))
            self.made.append(conn)
            return conn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spy_backend(impl, waiting: threading.Event):  # noqa: ANN001, ANN201
    """impl, but its Channel sets `waiting` as a blocking recv starts: the
    pool only calls recv() when no slot is free, so a test knows a get() is
    (about to be) blocked without sleeping."""

    class SpyChannel(impl.Channel):
        def recv(self, timeout=None):  # noqa: ANN001, ANN202
            waiting.set()
            return super().recv(timeout)

    return types.SimpleNamespace(name=impl.name, Channel=SpyChannel)


def stats_of(pool: ObjectPool) -> dict[str, int]:
    s = pool.stats()
    return {"size": s.size, "idle": s.idle, "in_use": s.in_use, "created": s.created,
            "destroyed": s.destroyed}


# ---------------------------------------------------------------- basics


def test_classic_example_two_connections(impl):
    factory = Factory()
    pool = ObjectPool(factory, 2, backend=impl)
    assert factory.made == []  # lazy: nothing made before it is needed
    a = pool.get(timeout=T)
    b = pool.get(timeout=T)
    assert (a.n, b.n) == (0, 1)
    assert stats_of(pool) == {"size": 2, "idle": 0, "in_use": 2, "created": 2, "destroyed": 0}
    pool.put(a)
    pool.put(b)
    assert stats_of(pool) == {"size": 2, "idle": 2, "in_use": 0, "created": 2, "destroyed": 0}
    # LIFO: the connection returned last comes out first, nothing new is made.
    assert pool.get(timeout=T) is b
    assert pool.get(timeout=T) is a
    assert len(factory.made) == 2
    pool.put(a)
    with pool.acquire(timeout=T) as c:
        assert c is a
        assert pool.stats().in_use == 2
    assert pool.stats().in_use == 1
    pool.put(b)
    pool.close()
    assert a.closed and b.closed  # default destroy: close() when the object has one


def test_stats_is_a_frozen_snapshot(impl):
    pool = ObjectPool(Factory(), 3, backend=impl)
    s = pool.stats()
    assert s == ObjectPoolStats(max_size=3, size=0, idle=0, in_use=0, created=0, destroyed=0,
                                waits=0, timeouts=0)
    with pytest.raises(AttributeError):
        s.size = 5  # type: ignore[misc]
    pool.get(timeout=T)
    assert s.in_use == 0 and pool.stats().in_use == 1
    assert pool.max_size == 3
    assert "in_use=1" in repr(pool)


def test_acquire_puts_back_even_when_the_block_raises(impl):
    pool = ObjectPool(Factory(), 1, backend=impl)
    with pytest.raises(KeyError), pool.acquire(timeout=T) as c:
        raise KeyError("boom")
    assert pool.stats().idle == 1 and pool.stats().in_use == 0
    assert pool.get(timeout=0) is c  # back in the pool, not discarded
    assert not c.closed


def test_acquire_after_invalidate_does_not_put_back(impl):
    pool = ObjectPool(Factory(), 1, backend=impl)
    with pool.acquire(timeout=T) as c:
        pool.invalidate(c)
    assert c.closed
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 1, "destroyed": 1}
    assert pool.get(timeout=0) is not c


def test_put_inside_acquire_then_exit_is_a_double_return(impl):
    pool = ObjectPool(Factory(), 1, backend=impl)
    with pytest.raises(ValueError, match="already returned"), pool.acquire(timeout=T) as c:
        pool.put(c)
        again = pool.get(timeout=0)  # someone else's checkout of the same object now
        assert again is c
    # The exit did not take the second checkout back from its holder.
    assert pool.stats().in_use == 1
    pool.put(again)
    assert pool.stats().idle == 1


def test_foreign_object_and_double_put_raise_valueerror(impl):
    pool = ObjectPool(Factory(), 2, backend=impl)
    other = ObjectPool(Factory(), 2, backend=impl)
    c = pool.get(timeout=T)
    with pytest.raises(ValueError, match="not checked out"):
        pool.put(Conn(99))
    with pytest.raises(ValueError, match="not checked out"):
        other.put(c)
    with pytest.raises(ValueError, match="not checked out"):
        pool.invalidate(Conn(99))
    pool.put(c)
    with pytest.raises(ValueError, match="not checked out"):
        pool.put(c)
    with pytest.raises(ValueError, match="not checked out"):
        pool.invalidate(c)
    assert stats_of(pool) == {"size": 1, "idle": 1, "in_use": 0, "created": 1, "destroyed": 0}


def test_unhashable_objects_are_pooled(impl):
    pool = ObjectPool(list, 2, backend=impl)
    a, b = pool.get(timeout=T), pool.get(timeout=T)
    assert a == b == [] and a is not b
    pool.put(a)
    with pytest.raises(ValueError):
        pool.put([])  # equal, but not the same object
    pool.put(b)
    assert pool.stats().idle == 2


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


# ---------------------------------------------------------------- hooks


def test_validate_false_discards_and_tries_the_next(impl):
    factory = Factory()
    bad: set[int] = set()
    seen: list[int] = []

    def validate(c: Conn) -> bool:
        seen.append(c.n)
        return c.n not in bad

    pool = ObjectPool(factory, 3, validate=validate, backend=impl)
    a, b, c = pool.get(timeout=T), pool.get(timeout=T), pool.get(timeout=T)
    assert seen == []  # new objects are not validated
    for x in (a, b, c):
        pool.put(x)
    bad.update({c.n, b.n})
    assert pool.get(timeout=T) is a  # c (top of the stack) and b failed, a passed
    assert seen == [c.n, b.n, a.n]
    assert c.closed and b.closed and not a.closed
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 3, "destroyed": 2}
    fresh = pool.get(timeout=T)  # nothing idle: made, not validated
    assert fresh.n == 3 and seen == [c.n, b.n, a.n]


def test_validate_raising_counts_as_invalid(impl):
    def validate(c: Conn) -> bool:
        raise OSError("ping failed")

    pool = ObjectPool(Factory(), 1, validate=validate, backend=impl)
    a = pool.get(timeout=T)
    pool.put(a)
    b = pool.get(timeout=T)
    assert b is not a and a.closed
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 2, "destroyed": 1}


def test_reset_runs_on_return(impl):
    resets: list[Conn] = []
    pool = ObjectPool(Factory(), 1, reset=resets.append, backend=impl)
    a = pool.get(timeout=T)
    assert resets == []
    pool.put(a)
    assert resets == [a]
    with pool.acquire(timeout=T):
        pass
    assert resets == [a, a]


def test_reset_raising_destroys_and_propagates(impl):
    def reset(c: Conn) -> None:
        if c.n == 0:
            raise RuntimeError("cannot roll back")

    pool = ObjectPool(Factory(), 1, reset=reset, backend=impl)
    a = pool.get(timeout=T)
    with pytest.raises(RuntimeError, match="roll back"):
        pool.put(a)
    assert a.closed
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 1, "destroyed": 1}
    b = pool.get(timeout=0)  # the slot was freed
    assert b.n == 1
    pool.put(b)
    assert pool.stats().idle == 1


def test_destroy_hook_replaces_close(impl):
    destroyed: list[Conn] = []
    pool = ObjectPool(Factory(), 2, destroy=destroyed.append, backend=impl)
    a = pool.get(timeout=T)
    pool.invalidate(a)
    assert destroyed == [a] and not a.closed


@pytest.mark.thread_unsafe(reason="replaces the process-wide threading.excepthook")
def test_destroy_errors_are_reported_and_keep_the_slot(impl, monkeypatch):
    seen: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", seen.append)

    def destroy(c: Conn) -> None:
        raise OSError(f"cannot close {c.n}")

    pool = ObjectPool(Factory(), 1, destroy=destroy, backend=impl)
    a = pool.get(timeout=T)
    pool.invalidate(a)  # does not raise
    assert len(seen) == 1
    assert seen[0].exc_type is OSError and "cannot close 0" in str(seen[0].exc_value)
    b = pool.get(timeout=0)  # the slot is free again
    assert b.n == 1
    pool.put(b)
    pool.close()
    assert [str(x.exc_value) for x in seen] == ["cannot close 0", "cannot close 1"]


def test_interrupted_hooks_keep_the_books_right(impl):
    clock = FakeClock()
    interrupt_for: set[int] = set()

    def destroy(c: Conn) -> None:
        if c.n in interrupt_for:
            raise KeyboardInterrupt

    pool = ObjectPool(Factory(), 2, max_lifetime=10, destroy=destroy, clock=clock, backend=impl)
    b = pool.get(timeout=T)
    clock.now += 5
    a = pool.get(timeout=T)
    pool.put(a)
    pool.put(b)  # idle, top last: a, b
    clock.now += 6  # b is past max_lifetime, a is not
    interrupt_for.add(b.n)
    with pytest.raises(KeyboardInterrupt):
        pool.get(timeout=0)  # b destroyed (interrupted) while a was the candidate
    assert stats_of(pool) == {"size": 1, "idle": 1, "in_use": 0, "created": 2, "destroyed": 1}
    assert pool.get(timeout=0) is a
    assert pool.get(timeout=0).n == 2  # b's slot was not lost

    def validate(c: Conn) -> bool:
        raise KeyboardInterrupt

    pool = ObjectPool(Factory(), 1, validate=validate, backend=impl)
    c = pool.get(timeout=T)
    pool.put(c)
    with pytest.raises(KeyboardInterrupt):
        pool.get(timeout=0)
    assert c.closed  # state unknown after an interrupted validate: not reused
    assert pool.get(timeout=0).n == 1


def test_factory_errors_propagate_and_free_the_slot(impl):
    factory = Factory()
    pool = ObjectPool(factory, 1, backend=impl)
    factory.fail_next = 2
    for _ in range(2):
        with pytest.raises(ConnectionError):
            pool.get(timeout=0)
    c = pool.get(timeout=0)
    assert c.n == 0
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 1, "destroyed": 0}


def test_min_size_is_made_up_front(impl):
    factory = Factory()
    pool = ObjectPool(factory, 4, min_size=2, backend=impl)
    assert [c.n for c in factory.made] == [0, 1]
    assert stats_of(pool) == {"size": 2, "idle": 2, "in_use": 0, "created": 2, "destroyed": 0}
    assert pool.get(timeout=T).n == 1  # LIFO among the pre-made ones too
    assert pool.get(timeout=T).n == 0
    assert pool.get(timeout=T).n == 2


def test_factory_error_at_construction_leaves_nothing_behind(impl):
    factory = Factory()
    made = 0

    def flaky() -> Conn:
        nonlocal made
        made += 1
        if made == 3:
            raise ConnectionError("third one fails")
        return factory()

    with pytest.raises(ConnectionError):
        ObjectPool(flaky, 4, min_size=3, backend=impl)
    assert [c.closed for c in factory.made] == [True, True]


def test_max_uses_retires_on_return(impl):
    pool = ObjectPool(Factory(), 1, max_uses=2, backend=impl)
    a = pool.get(timeout=T)
    pool.put(a)
    assert pool.get(timeout=T) is a
    pool.put(a)  # second use ends: destroyed
    assert a.closed
    b = pool.get(timeout=T)
    assert b.n == 1
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 2, "destroyed": 1}


def test_max_idle_evicts_old_idle_objects_but_keeps_min_size(impl):
    clock = FakeClock()
    pool = ObjectPool(Factory(), 4, min_size=1, max_idle=10, clock=clock, backend=impl)
    x = pool.get(timeout=T)  # Conn(0), made up front
    y, z = pool.get(timeout=T), pool.get(timeout=T)
    pool.put(x)
    clock.now += 5
    pool.put(y)
    clock.now += 5
    pool.put(z)
    clock.now += 5  # idle for: x 15 s, y 10 s, z 5 s
    assert pool.get(timeout=T) is z
    assert x.closed and not y.closed  # "older than 10 s": exactly 10 s is not
    pool.put(z)
    clock.now += 100  # all past max_idle, but one must stay (min_size)
    w = pool.get(timeout=T)
    assert y.closed and not z.closed and w is z
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 3, "destroyed": 2}


def test_max_lifetime_on_return_and_on_checkout(impl):
    clock = FakeClock()
    pool = ObjectPool(Factory(), 2, max_lifetime=60, clock=clock, backend=impl)
    a = pool.get(timeout=T)
    clock.now += 30
    b = pool.get(timeout=T)
    clock.now += 30  # a is exactly 60 s old: not yet "older than" max_lifetime
    pool.put(a)
    assert pool.get(timeout=T) is a and not a.closed
    clock.now += 1  # a is 61 s old, b 31 s
    pool.put(a)
    assert a.closed  # too old when it came back
    pool.put(b)
    assert pool.get(timeout=T) is b
    pool.put(b)
    clock.now += 29  # b is 60 s old while idle: still handed out
    assert pool.get(timeout=T) is b
    pool.put(b)
    clock.now += 1  # 61 s: destroyed when seen on checkout
    c = pool.get(timeout=T)
    assert b.closed and c.n == 2
    assert stats_of(pool) == {"size": 1, "idle": 0, "in_use": 1, "created": 3, "destroyed": 2}


def test_prune_releases_idle_objects_without_a_checkout(impl):
    clock = FakeClock()
    pool = ObjectPool(Factory(), 3, min_size=1, max_idle=10, max_lifetime=100, clock=clock,
                      backend=impl)
    objs = [pool.get(timeout=T) for _ in range(3)]
    for o in objs:
        pool.put(o)
    assert pool.prune() == 0
    clock.now += 11
    assert pool.prune() == 2  # min_size keeps one
    assert pool.stats().idle == 1
    clock.now += 100
    assert pool.prune() == 1  # max_lifetime has no floor
    assert stats_of(pool) == {"size": 0, "idle": 0, "in_use": 0, "created": 3, "destroyed": 3}
    assert all(o.closed for o in objs)
    assert ObjectPool(Factory(), 1, backend=impl).prune() == 0


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"factory": 3}, TypeError, "factory"),
    ({"max_size": 0}, ValueError, "max_size"),
    ({"max_size": 2.0}, TypeError, "max_size"),
    ({"max_size": True}, TypeError, "max_size"),
    ({"min_size": -1}, ValueError, "min_size"),
    ({"min_size": 5}, ValueError, "min_size"),
    ({"min_size": "1"}, TypeError, "min_size"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": "1"}, TypeError, "timeout"),
    ({"timeout": float("nan")}, ValueError, "timeout"),
    ({"validate": 1}, TypeError, "validate"),
    ({"reset": "x"}, TypeError, "reset"),
    ({"destroy": 0}, TypeError, "destroy"),
    ({"clock": None}, TypeError, "clock"),
    ({"max_uses": 0}, ValueError, "max_uses"),
    ({"max_uses": 1.5}, TypeError, "max_uses"),
    ({"max_idle": 0}, ValueError, "max_idle"),
    ({"max_idle": -2.0}, ValueError, "max_idle"),
    ({"max_idle": "1"}, TypeError, "max_idle"),
    ({"max_lifetime": 0}, ValueError, "max_lifetime"),
    ({"max_lifetime": []}, TypeError, "max_lifetime"),
])
def test_bad_arguments(impl, kwargs, error, name):
    args = {"factory": Factory(), "max_size": 4, **kwargs}
    made = args["factory"]
    with pytest.raises(error, match=name):
        ObjectPool(args.pop("factory"), args.pop("max_size"), backend=impl, **args)
    if isinstance(made, Factory):
        assert made.made == []  # nothing built before the check


def test_bad_timeout_on_get(impl):
    pool = ObjectPool(Factory(), 1, backend=impl)
    with pytest.raises(ValueError, match="timeout"):
        pool.get(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        pool.get(timeout="soon")  # type: ignore[arg-type]
    assert stats_of(pool)["in_use"] == 0  # nothing taken by the failed calls
    assert pool.get(timeout=0).n == 0


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


# ---------------------------------------------------------------- model


class PoolMachine(RuleBasedStateMachine):
    """Single-threaded: every get uses timeout 0, so the model says exactly
    which object comes out (LIFO, retiring, validation) or that it fails."""

    def __init__(self, impl) -> None:  # noqa: ANN001
        super().__init__()
        self.impl = impl

    @initialize(max_size=st.integers(1, 4), min_size=st.integers(0, 4),
                max_idle=st.sampled_from([None, 3]), max_lifetime=st.sampled_from([None, 7]),
                max_uses=st.sampled_from([None, 1, 2]))
    def create(self, max_size, min_size, max_idle, max_lifetime, max_uses):  # noqa: ANN001
        min_size = min(min_size, max_size)
        self.clock = FakeClock()
        self.broken: set[int] = set()
        self.destroyed_log: list[int] = []
        self.pool = ObjectPool(
            Factory(), max_size, min_size=min_size, max_idle=max_idle,
            max_lifetime=max_lifetime, max_uses=max_uses, clock=self.clock,
            validate=lambda c: c.n not in self.broken,
            destroy=lambda c: self.destroyed_log.append(c.n), backend=self.impl)
        self.max_size, self.min_size = max_size, min_size
        self.max_idle, self.max_lifetime, self.max_uses = max_idle, max_lifetime, max_uses
        # Model: each object is [n, born, since, uses]; idle is a stack (top last).
        self.idle = [[n, self.clock.now, self.clock.now, 0] for n in range(min_size)]
        self.held: list[tuple[Conn, list]] = []
        self.created = min_size
        self.destroyed: list[int] = []
        self.timeouts = 0

    def _size(self) -> int:
        return self.created - len(self.destroyed)

    def _expect_get(self) -> int | None:
        """The model's checkout: the number of the object that comes out, or
        None when the pool is exhausted."""
        if len(self.held) == self.max_size:
            return None
        now = self.clock.now
        while True:
            if self.max_idle is not None:
                while (self.idle and self._size() > self.min_size
                       and now - self.idle[0][2] > self.max_idle):
                    self.destroyed.append(self.idle.pop(0)[0])
            candidate = None
            while self.idle:
                top = self.idle.pop()
                if self.max_lifetime is not None and now - top[1] > self.max_lifetime:
                    self.destroyed.append(top[0])
                else:
                    candidate = top
                    break
            if candidate is None:
                candidate = [self.created, now, now, 0]
                self.created += 1
            elif candidate[0] in self.broken:
                self.destroyed.append(candidate[0])
                continue
            candidate[3] += 1
            self._pending = candidate
            return candidate[0]

    @rule()
    def get_no_wait(self):
        expected = self._expect_get()
        if expected is None:
            with pytest.raises(ResourceUnavailable):
                self.pool.get(timeout=0)
            self.timeouts += 1
            return
        obj = self.pool.get(timeout=0)
        assert obj.n == expected, "not the object LIFO order and retiring predict"
        self.held.append((obj, self._pending))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def put_one(self, data):  # noqa: ANN001
        obj, record = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.pool.put(obj)
        now = self.clock.now
        too_old = self.max_lifetime is not None and now - record[1] > self.max_lifetime
        used_up = self.max_uses is not None and record[3] >= self.max_uses
        if too_old or used_up:
            self.destroyed.append(record[0])
        else:
            record[2] = now
            self.idle.append(record)
        with pytest.raises(ValueError):
            self.pool.put(obj)  # a second return is refused and changes nothing

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def invalidate_one(self, data):  # noqa: ANN001
        obj, record = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.pool.invalidate(obj)
        self.destroyed.append(record[0])

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def break_one(self, data):  # noqa: ANN001
        obj, _ = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        self.broken.add(obj.n)  # validate() fails for it from now on

    @rule(seconds=st.integers(0, 5))
    def advance_clock(self, seconds):  # noqa: ANN001
        self.clock.now += seconds

    @invariant()
    def stats_match_the_model(self):
        if not hasattr(self, "pool"):
            return
        assert self.pool.stats() == ObjectPoolStats(
            max_size=self.max_size, size=self._size(), idle=len(self.idle),
            in_use=len(self.held), created=self.created, destroyed=len(self.destroyed),
            waits=0, timeouts=self.timeouts)
        assert self.destroyed_log == self.destroyed

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.pool.close()
            for obj, _ in self.held:
                self.pool.put(obj)
            assert self.pool.stats().size == 0


def test_pool_against_a_model(impl):
    run_state_machine_as_test(lambda: PoolMachine(impl), settings=SETTINGS)


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


def test_factory_returning_an_object_in_the_pool(impl):
    shared = Conn(0)
    pool = ObjectPool(lambda: shared, 2, backend=impl)
    assert pool.get(timeout=0) is shared
    with pytest.raises(ValueError, match="already in this pool"):
        pool.get(timeout=0)
    pool.put(shared)
    assert pool.get(timeout=0) is shared
    # Both slots are still there: the second get reaches the factory again
    # instead of timing out.
    with pytest.raises(ValueError, match="already in this pool"):
        pool.get(timeout=0)
    assert pool.stats().created == 1


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
