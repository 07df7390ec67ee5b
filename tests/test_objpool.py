"""ObjectPool on both backends: checkout and return, LIFO reuse, ownership
checks, and argument checks."""

from __future__ import annotations

import pytest
from conftest import JOIN_TIMEOUT
from objpoolkit import Conn, Factory, stats_of

from fastconc.objpool import ObjectPool, ObjectPoolStats

T = JOIN_TIMEOUT


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
