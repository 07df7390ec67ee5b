"""No growth from repeating any ring, deque or pool operation, and items
handed to them are released: see tests/leakkit.py."""

from __future__ import annotations

import array
import threading
import time
from collections.abc import Callable

import pytest
from conftest import JOIN_TIMEOUT, load_backend
from leakkit import (
    Cases,
    Token,
    assert_all_die,
    check_popped,
    echo,
    just,
    run_case,
    tokens,
)

from fastconc import (
    Empty,
)

pytestmark = pytest.mark.thread_unsafe(
    reason="reads process-wide gc/tracemalloc state that concurrent tests would disturb")


CASES = Cases()
case = CASES.case


# --- RingBuffer and SpscRingBuffer

def _ring_cases(kind: str) -> None:
    def ring(impl, capacity: int):  # noqa: ANN202
        return getattr(impl, kind)(capacity)

    @case(f"{kind}.push_pop")
    def _(impl):
        r = ring(impl, 4)
        return just(lambda: (r.push(Token()), r.pop()))

    @case(f"{kind}.full_empty_default")
    def _(impl):
        r = ring(impl, 2)

        def op() -> None:
            assert r.push(Token()) and r.push(Token())
            assert not r.push(Token())  # full: refused, not kept
            r.pop()
            r.pop(None)
            assert r.pop(None) is None
            try:
                r.pop()
            except Empty:
                pass
        return just(op)

    @case(f"{kind}.push_many_pop_many")
    def _(impl):
        r = ring(impl, 16)

        def op() -> None:
            assert r.push_many([Token(i) for i in range(10)]) == 10
            assert r.push_many(Token(i) for i in range(10)) == 6  # 4 refused
            assert len(r.pop_many(5)) == 5
            assert len(r.pop_many(100)) == 11
            assert r.pop_many(3) == []
        return just(op)

    @case(f"{kind}.drop_with_items", runs=150)
    def _(impl):
        def op() -> None:
            r = ring(impl, 64)
            r.push_many([Token(i) for i in range(40)])
        return just(op)


_ring_cases("RingBuffer")
_ring_cases("SpscRingBuffer")


# --- TypedRingBuffer

TYPECODES = "bBhHiIlLqQfd"


@case("TypedRingBuffer.push_pop", warmup=20, runs=100)
def _(impl):
    rings = [impl.TypedRingBuffer(8, code) for code in TYPECODES]

    def op() -> None:
        for r in rings:
            r.push(3)
            r.pop()
            r.pop(None)
            try:
                r.pop()
            except Empty:
                pass
    return just(op)


@case("TypedRingBuffer.batches", warmup=20, runs=100)
def _(impl):
    rings = [(impl.TypedRingBuffer(16, code), code) for code in TYPECODES]

    def op() -> None:
        for r, code in rings:
            src = array.array(code, range(12))
            assert r.push_many(src) == 12
            assert r.push_many(memoryview(src)) == 4
            dst = array.array(code, bytes(src.itemsize * 5))
            assert r.pop_into(dst) == 5
            assert r.pop_into(memoryview(dst)) == 5
            assert len(r.pop_many(100)) == 6
    return just(op)


@case("TypedRingBuffer.bad_buffers", warmup=20, runs=100)
def _(impl):
    ring = impl.TypedRingBuffer(8, "d")
    wrong = array.array("i", range(4))
    readonly = bytes(64)

    def op() -> None:
        for bad, method in ((wrong, ring.push_many), (readonly, ring.pop_into),
                            (object(), ring.push_many)):
            try:
                method(bad)
            except (TypeError, ValueError):
                pass
    return just(op)


@case("TypedRingBuffer.create_drop", warmup=20, runs=100)
def _(impl):
    def op() -> None:
        for code in TYPECODES:
            r = impl.TypedRingBuffer(256, code)
            r.push(1)
    return just(op)


# --- WorkStealingDeque

@case("WorkStealingDeque.push_pop_steal")
def _(impl):
    d = impl.WorkStealingDeque()

    def op() -> None:
        for i in range(4):
            d.push(Token(i))
        d.pop()
        d.steal()
        d.pop()
        d.steal()
        for take in (d.pop, d.steal):
            try:
                take()
            except Empty:
                pass
    return just(op)


@case("WorkStealingDeque.grow_and_drain", runs=100)
def _(impl):
    d = impl.WorkStealingDeque()

    def op() -> None:
        for i in range(300):  # past the initial array: it grows
            d.push(Token(i))
        for _ in range(150):
            d.steal()
        for _ in range(150):
            d.pop()
    return just(op)


@case("WorkStealingDeque.drop_with_items", runs=150)
def _(impl):
    def op() -> None:
        d = impl.WorkStealingDeque()
        for i in range(100):
            d.push(Token(i))
        d.steal()
    return just(op)


# --- WorkStealingPool

def _pool(impl, workers: int = 2):  # noqa: ANN202
    return impl.WorkStealingPool(workers, thread_name_prefix="leaks")


def _fail(x: object) -> object:
    raise ValueError(x)


@case("WorkStealingPool.create_shutdown", warmup=10, runs=40)
def _(impl):
    def op() -> None:
        with _pool(impl) as pool:
            pool.submit(echo, Token()).result(JOIN_TIMEOUT)
    return just(op)


@case("WorkStealingPool.submit_result")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        assert isinstance(pool.submit(echo, Token()).result(JOIN_TIMEOUT), Token)
        pool.submit(echo, x=Token()).result(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.execute_join")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        pool.execute(echo, Token())
        pool.execute(echo, x=Token())
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.map", runs=100)
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        assert len(list(pool.map(echo, [Token(i) for i in range(20)]))) == 20
        assert len(list(pool.map(echo, [Token(i) for i in range(20)], chunksize=4))) == 20
    return op, None, pool.shutdown


@case("WorkStealingPool.exception_in_task")
def _(impl):
    pool = _pool(impl)

    def op() -> None:
        f = pool.submit(_fail, Token())
        try:
            f.result(JOIN_TIMEOUT)
        except ValueError:
            pass
        assert isinstance(f.exception(), ValueError)
        try:
            list(pool.map(_fail, [Token()]))
        except ValueError:
            pass
    return op, None, pool.shutdown


@case("WorkStealingPool.future_cancel", runs=100)
def _(impl):
    pool = _pool(impl, 1)

    def op() -> None:
        gate = threading.Event()
        blocker = pool.submit(gate.wait, JOIN_TIMEOUT)
        queued = pool.submit(echo, Token())
        cancelled = queued.cancel()  # still queued behind the blocker
        gate.set()
        blocker.result(JOIN_TIMEOUT)
        assert cancelled and queued.cancelled()
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.shutdown_cancel_futures", warmup=10, runs=40)
def _(impl):
    def op() -> None:
        pool = _pool(impl, 1)
        gate = threading.Event()
        pool.submit(gate.wait, JOIN_TIMEOUT)
        futures = [pool.submit(echo, Token(i)) for i in range(10)]
        pool.execute(echo, Token())
        pool.shutdown(wait=False, cancel_futures=True)
        gate.set()
        pool.shutdown(wait=True)
        assert all(f.done() for f in futures)
    return just(op)


@case("WorkStealingPool.execute_error_handler")
def _(impl):
    errors = [0]

    def on_error(exc: BaseException) -> None:
        assert isinstance(exc, ValueError)
        errors[0] += 1

    pool = impl.WorkStealingPool(2, thread_name_prefix="leaks", error_handler=on_error)

    def op() -> None:
        pool.execute(_fail, Token())
        assert pool.join(JOIN_TIMEOUT)
    return op, None, pool.shutdown


@case("WorkStealingPool.drop_without_shutdown", warmup=5, runs=30)
def _(impl):
    # The workers hold only the core, never the pool: dropping the pool
    # closes the core and they exit.  settle() waits for them.
    def op() -> None:
        pool = impl.WorkStealingPool(2, thread_name_prefix="leaks-dropped")
        pool.submit(echo, Token()).result(JOIN_TIMEOUT)
        pool.execute(echo, Token())

    def settle() -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while any(t.name.startswith("leaks-dropped") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the dropped pools' workers did not exit"
            time.sleep(0.001)
    return op, settle, None



@pytest.mark.parametrize("name", sorted(CASES))
def test_no_growth(impl, name, tally):
    tally.add(leak_checks=run_case(CASES, impl, name))


def _release_ring(kind: str) -> Callable[..., int]:
    def check(impl) -> int:
        r = getattr(impl, kind)(16)
        items, refs = tokens(20)
        assert r.push_many(items[:10]) == 10
        assert all(map(r.push, items[10:16]))
        assert not r.push(items[16])
        assert r.push_many(items[16:]) == 0
        items.clear()
        assert_all_die(refs[16:], f"items {kind} refused when full")
        check_popped([r.pop(), r.pop(None), *r.pop_many(3)], refs[:5], f"{kind}.pop")
        del r  # 11 left inside
        assert_all_die(refs, f"items left in a dropped {kind}")
        return 20
    return check


def _release_deque(impl) -> int:
    d = impl.WorkStealingDeque()
    items, refs = tokens(200)  # enough to grow the array
    list(map(d.push, items))
    items.clear()
    check_popped([d.pop(), d.steal(), d.pop(), d.steal()], [refs[0], refs[1], refs[198],
                                                            refs[199]], "WorkStealingDeque")
    del d
    assert_all_die(refs, "items left in a dropped WorkStealingDeque")
    return 200


def _release_pool(impl) -> int:
    pool = _pool(impl, 1)
    items, refs = tokens(30)
    gate = threading.Event()
    pool.submit(gate.wait, JOIN_TIMEOUT)
    done = [pool.submit(echo, t) for t in items[:10]]
    pool.execute(echo, items[10])
    queued = [pool.submit(echo, t) for t in items[11:16]]
    assert all(f.cancel() for f in queued)
    mapped, late_items = items[16:20], items[20:]
    items.clear()
    gate.set()
    assert [f.result(JOIN_TIMEOUT).n for f in done] == list(range(10))
    assert [t.n for t in pool.map(echo, mapped)] == list(range(16, 20))
    mapped.clear()
    assert pool.join(JOIN_TIMEOUT)
    del done
    assert_all_die(refs[:11] + refs[16:20], "arguments and results of finished tasks")
    assert_all_die(refs[11:16], "arguments of cancelled tasks")
    gate2 = threading.Event()
    pool.submit(gate2.wait, JOIN_TIMEOUT)
    late = [pool.submit(echo, t) for t in late_items]
    late_items.clear()
    pool.shutdown(wait=False, cancel_futures=True)
    gate2.set()
    pool.shutdown(wait=True)
    assert all(f.cancelled() for f in late)
    del late, queued
    assert_all_die(refs, "arguments of tasks cancelled by shutdown")
    return 30



RELEASE_CASES: dict[str, Callable[..., int]] = {
    "RingBuffer": _release_ring("RingBuffer"),
    "SpscRingBuffer": _release_ring("SpscRingBuffer"),
    "WorkStealingDeque": _release_deque,
    "WorkStealingPool": _release_pool,
}


@pytest.mark.parametrize("name", sorted(RELEASE_CASES))
def test_items_are_released(impl, name, tally):
    tally.add(leak_checks=RELEASE_CASES[name](impl))


@pytest.mark.compiled
def test_backends_under_test_are_the_expected_ones():
    # The cython parameter must be the compiled code, or the release checks
    # above test nothing in C (conftest's load_backend imports it directly).
    ns = load_backend("cython")
    assert ns.Channel.__module__ == "fastconc._channel_c"
