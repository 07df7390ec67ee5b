"""ObjectPool on both backends: the factory, validate, reset and destroy
hooks, interrupted hooks, min_size, and retiring by uses, idle time and
lifetime."""

from __future__ import annotations

import threading

import pytest
from conftest import JOIN_TIMEOUT
from objpoolkit import Conn, Factory, FakeClock, stats_of

from fastconc.objpool import ObjectPool

T = JOIN_TIMEOUT


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
