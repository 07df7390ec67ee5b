"""No growth from repeating operations of the high layer (actors, pipeline,
object pool on each backend; the breaker once), and what it is handed is
released: see tests/leakkit.py."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

import pytest
from conftest import JOIN_TIMEOUT
from leakkit import (
    Cases,
    Token,
    assert_all_die,
    assert_dies,
    assert_no_growth,
    echo,
    just,
    run_case,
    tokens,
)

from fastconc import (
    Actor,
    ActorSystem,
    ChannelClosed,
    CircuitBreaker,
    CircuitOpenError,
    ObjectPool,
    Pipeline,
    PoolClosed,
    ResourceUnavailable,
)

pytestmark = pytest.mark.thread_unsafe(
    reason="reads process-wide gc/tracemalloc state that concurrent tests would disturb")


CASES = Cases()
case = CASES.case


# --- the high layer (built on the backend under test)

class Echo(Actor):
    def handle_message(self, msg: object) -> object:
        return msg


@case("ActorSystem.tell_ask")
def _(impl):
    system = ActorSystem(2, backend=impl)
    ref = system.spawn(Echo)

    def op() -> None:
        ref.tell(Token())
        assert isinstance(ref.ask(Token()), Token)  # answered inline
        assert isinstance(ref.ask(Token(), timeout=JOIN_TIMEOUT), Token)  # via a worker
        assert isinstance(ref.ask_async(Token()).result(JOIN_TIMEOUT), Token)
    return op, lambda: ref.ask(None, timeout=JOIN_TIMEOUT), system.shutdown


@case("ActorSystem.spawn_stop", runs=100)
def _(impl):
    system = ActorSystem(2, backend=impl)
    last: list[object] = []

    def op() -> None:
        ref = system.spawn(Echo)
        ref.tell(Token())
        ref.ask(Token(), timeout=JOIN_TIMEOUT)
        ref.stop()
        last[:] = [ref]

    def settle() -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while last and last[0].is_alive and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)
        assert system._pool.join(JOIN_TIMEOUT)

    return op, settle, system.shutdown


@case("ActorSystem.create_shutdown", warmup=5, runs=30)
def _(impl):
    def op() -> None:
        with ActorSystem(2, backend=impl) as system:
            system.spawn(Echo).ask(Token(), timeout=JOIN_TIMEOUT)
    return just(op)


def _inc(t: Token) -> Token:
    return Token(t.n + 1)


def _join_new_threads(before: set[threading.Thread]) -> Callable[[], None]:
    """A settle step: each run's threads end on their own after it (its pool
    is shut down without waiting); join them so a loaded machine's slower
    thread exits are not counted as growth."""
    def settle() -> None:
        for t in threading.enumerate():
            if t not in before and t is not threading.current_thread():
                t.join(JOIN_TIMEOUT)
                assert not t.is_alive(), f"{t.name} did not end"
    return settle


@case("Pipeline.map", warmup=5, runs=30)
def _(impl):
    p = Pipeline([_inc, _inc], backend=impl)
    before = set(threading.enumerate())

    def op() -> None:
        assert [t.n for t in p.map(Token(i) for i in range(20))] == list(range(2, 22))
    return op, _join_new_threads(before), None


@case("Pipeline.start_send_recv_close", warmup=5, runs=30)
def _(impl):
    before = set(threading.enumerate())

    def op() -> None:
        p = Pipeline([_inc], backend=impl).start()
        for i in range(5):
            p.send(Token(i))
        for _ in range(5):
            p.recv(JOIN_TIMEOUT)
        p.close()
        try:
            p.recv(JOIN_TIMEOUT)
        except ChannelClosed:
            pass
        assert p.join(JOIN_TIMEOUT)
    return op, _join_new_threads(before), None


@case("Pipeline.send_recv")
def _(impl):
    p = Pipeline([_inc], backend=impl).start()

    def op() -> None:
        p.send(Token())
        p.recv(JOIN_TIMEOUT)

    def cleanup() -> None:
        p.close()
        p.join(JOIN_TIMEOUT)
    return op, None, cleanup


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@case("ObjectPool.get_put_acquire")
def _(impl):
    pool = ObjectPool(Token, 2, backend=impl)

    def op() -> None:
        a = pool.get()
        with pool.acquire() as b:
            assert b is not a
        pool.put(a)
        c = pool.get(timeout=0)
        pool.invalidate(c)  # destroyed: the next get makes a new one
        x, y = pool.get(), pool.get()
        try:
            pool.get(timeout=0)
        except ResourceUnavailable:
            pass
        pool.put(x)
        pool.put(y)
    return op, None, pool.close


@case("ObjectPool.prune")
def _(impl):
    clock = FakeClock()
    pool = ObjectPool(Token, 3, max_idle=10, clock=clock, backend=impl)

    def op() -> None:
        objs = [pool.get() for _ in range(3)]
        for obj in objs:
            pool.put(obj)
        clock.now += 11
        assert pool.prune() == 3
    return op, None, pool.close


@case("ObjectPool.close", runs=150)
def _(impl):
    def op() -> None:
        pool = ObjectPool(Token, 4, min_size=2, backend=impl)
        out = pool.get()
        pool.put(pool.get())
        pool.close()
        try:
            pool.get()
        except PoolClosed:
            pass
        pool.put(out)  # destroyed as it comes back
    return just(op)



@pytest.mark.parametrize("name", sorted(CASES))
def test_no_growth(impl, name, tally):
    tally.add(leak_checks=run_case(CASES, impl, name))


# --- CircuitBreaker (uses no backend primitive: run once)

def _ok(t: Token) -> Token:
    return t


def _boom(t: Token) -> Token:
    raise OSError(t.n)


BREAKER_CASES: dict[str, Callable[[], Callable[[], object]]] = {}


def _breaker_success() -> Callable[[], object]:
    b = CircuitBreaker(5, 30.0, clock=FakeClock())
    return lambda: b.call(_ok, Token())


def _breaker_failure() -> Callable[[], object]:
    b = CircuitBreaker(10**9, 30.0, clock=FakeClock())

    def op() -> None:
        try:
            b.call(_boom, Token())
        except OSError:
            pass
        b.call(_ok, Token())
    return op


def _breaker_open() -> Callable[[], object]:
    b = CircuitBreaker(1, 30.0, clock=FakeClock())
    try:
        b.call(_boom, Token())
    except OSError:
        pass

    def op() -> None:
        try:
            b.call(_ok, Token())
        except CircuitOpenError:
            pass
        else:
            raise AssertionError("the open breaker let a call through")
    return op


def _breaker_decorator_and_with() -> Callable[[], object]:
    b = CircuitBreaker(10**9, 30.0, clock=FakeClock())
    wrapped = b(_boom)

    def op() -> None:
        try:
            wrapped(Token())
        except OSError:
            pass
        try:
            with b:
                raise KeyError(Token())
        except KeyError:
            pass
    return op


BREAKER_CASES = {
    "success": _breaker_success,
    "failure": _breaker_failure,
    "open_rejection": _breaker_open,
    "decorator_and_with": _breaker_decorator_and_with,
}


@pytest.mark.parametrize("name", sorted(BREAKER_CASES))
def test_breaker_no_growth(name, tally):
    tally.add(leak_checks=assert_no_growth(BREAKER_CASES[name](), warmup=50, runs=200))



def _release_high_layer(impl) -> int:
    # Actor messages and the actor itself.
    system = ActorSystem(2, backend=impl)
    ref = system.spawn(Echo)
    items, refs = tokens(10)
    list(map(ref.tell, items[:5]))
    replies = [ref.ask(t, timeout=JOIN_TIMEOUT) for t in items[5:]]
    items.clear()
    assert len(replies) == 5
    del replies
    cell = weakref.ref(ref._cell)
    ref.stop()
    system.shutdown(JOIN_TIMEOUT)
    del ref
    assert_all_die(refs, "messages handled by an actor")
    assert_dies(cell, "a stopped actor's cell")
    del system
    # Pipeline items.
    p = Pipeline([echo, echo], backend=impl)
    items, refs = tokens(20)
    assert len(list(p.map(iter(items)))) == 20
    items.clear()
    del p
    assert_all_die(refs, "items that went through a Pipeline")
    # ObjectPool objects are released by close().
    pool = ObjectPool(Token, 4, min_size=2, backend=impl)
    a, b = pool.get(), pool.get()
    objs = [weakref.ref(a), weakref.ref(b)]
    pool.put(a)
    del a
    pool.close()
    assert_dies(objs[0], "an idle object of a closed ObjectPool")
    pool.put(b)
    del b
    assert_dies(objs[1], "an object put back into a closed ObjectPool")
    return 32


def _release_cycles(impl) -> int:
    """An item that refers back to its container: the pair is garbage once
    dropped, which the collector can see only if the container traverses
    the items it holds."""
    makers: list[tuple[str, Callable[[], object], str]] = [
        ("Channel", lambda: impl.Channel(4), "send"),
        ("closed Channel", lambda: impl.Channel(4), "send"),
        ("Queue", impl.Queue, "put"),
        ("RingBuffer", lambda: impl.RingBuffer(4), "push"),
        ("SpscRingBuffer", lambda: impl.SpscRingBuffer(4), "push"),
        ("WorkStealingDeque", impl.WorkStealingDeque, "push"),
    ]
    for what, make, put in makers:
        container = make()
        item = Token()
        item.n = container  # type: ignore[assignment]
        getattr(container, put)(item)
        if what.startswith("closed"):
            container.close()  # type: ignore[attr-defined]
        refs = [weakref.ref(container), weakref.ref(item)]
        del container, item
        assert_all_die(refs, f"a {what} in a reference cycle with its item")
    return len(makers)



RELEASE_CASES: dict[str, Callable[..., int]] = {
    "high_layer": _release_high_layer,
    "cycles": _release_cycles,
}


@pytest.mark.parametrize("name", sorted(RELEASE_CASES))
def test_items_are_released(impl, name, tally):
    tally.add(leak_checks=RELEASE_CASES[name](impl))
