"""Fault injection in ObjectPool: exceptions and misbehaviour from user code,
on both backends.  What is covered and how: tests/faultkit.py and the
fault-injection row of docs/RELIABILITY.md."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from faultkit import (
    DEL_THREAD_IS_CREATOR,
    Boom,
    DelError,
    T,
    Tracked,
    only_kind,
)

from fastconc import (
    PoolClosed,
    ResourceUnavailable,
)
from fastconc.objpool import ObjectPool

pytestmark = pytest.mark.timeout(120)


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
