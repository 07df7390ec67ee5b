"""WorkStealingPool, both backends: bounded help-while-waiting, spare threads
for workers that must block, and the task wrapper's guarantee that every
submitted future settles exactly once, whatever the task or the pool's own
machinery raises."""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from conftest import JOIN_TIMEOUT

from fastconc._support.futures import PoolFuture, help_limit
from fastconc._support.spares import MAX_SPARES

T = JOIN_TIMEOUT


def _frame_depth() -> int:
    frame = sys._getframe()
    n = 0
    while frame is not None:
        n += 1
        frame = frame.f_back
    return n


@pytest.mark.thread_unsafe(reason="counts the frames of the pool's only worker")
def test_waiting_on_pending_gates_nests_boundedly(impl):
    """With one worker, task i waits on a pending
    future gates[i] the main thread completes later.  Helping nested every
    queued task on the worker's stack until RecursionError failed most of
    them (and on 3.13t left futures unsettled); bounded helping blocks at
    its limit instead, and all 3,000 finish with result 1."""
    n = 3000
    with impl.WorkStealingPool(1) as p:
        gates = [p.create_future() for _ in range(n)]
        cond = threading.Condition()
        started = 0
        deepest = 0

        def task(i: int) -> int:
            nonlocal started, deepest
            depth = _frame_depth()
            with cond:
                started += 1
                deepest = max(deepest, depth)
                cond.notify_all()
            return gates[i].result(T) + 1

        futures = [p.submit(task, i) for i in range(n)]
        # Give the worker time to nest as deep as it will before the gates
        # open (the "a second later").  Only the depth reached
        # depends on this wait; what is asserted below holds either way.
        with cond:
            cond.wait_for(lambda: started == n, timeout=1.0)
        for gate in gates:
            gate.set_result(0)
        done, not_done = cf.wait(futures, timeout=T)
        assert not not_done, f"{len(not_done)} futures never settled"
        outcomes = Counter(
            repr(f.exception()) if f.exception() is not None else f.result() for f in futures)
        assert outcomes == Counter({1: n})
        assert p.join(T)
        assert p.stats().pending == 0
    assert deepest < sys.getrecursionlimit() // 2


def test_dependency_chain_deeper_than_the_help_limit_on_one_worker(impl):
    """Each task waits on the one it just submitted: the waiter runs that
    queued dependency itself, so a chain far deeper than the help-depth
    limit still completes on a single worker (no deadlock)."""
    with impl.WorkStealingPool(1) as p:

        def chain(k: int) -> int:
            if k == 0:
                return 0
            return p.submit(chain, k - 1).result(T) + 1

        assert p.submit(chain, 80).result(T) == 80
        assert p.join(T)
        assert p.stats().pending == 0


def fib(pool: Any, n: int) -> int:
    if n < 2:
        return n
    f = pool.submit(fib, pool, n - 1)
    return fib(pool, n - 2) + f.result(T)


def test_fork_join_on_one_worker_still_completes(impl):
    with impl.WorkStealingPool(1) as p:
        assert p.submit(fib, p, 18).result(T) == 2584
        assert p.join(T)


def test_dependency_run_inline_is_not_run_again(impl):
    """A task claimed by its waiter stays queued; popped later, it is
    skipped (its future already settled), so it runs exactly once."""
    with impl.WorkStealingPool(1) as p:
        runs = Counter[int]()

        def child(i: int) -> int:
            runs[i] += 1
            return i

        def parent() -> int:
            futures = [p.submit(child, i) for i in range(20)]
            return sum(f.result(T) for f in futures)

        assert p.submit(parent).result(T) == sum(range(20))
        assert p.join(T)
        assert runs == Counter({i: 1 for i in range(20)})
        stats = p.stats()
        # Each task counted once, wherever it ran; skipped entries nowhere.
        assert (stats.executed, stats.pending) == (21, 0)


# ---------------------------------------------------------------- compensation


def _pool_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "_")]


def _unique_prefix(name: str) -> str:
    # Unique per pool: pytest-run-parallel runs a test in several threads.
    return f"{name}-{threading.get_ident()}-{id(object())}"


def test_blocked_worker_is_compensated_by_a_spare_thread(impl):
    """One worker, a chain of 100 tasks: task i waits on gates[i], which
    task i + 1 sets as it starts.  The worker nests tasks while helping up
    to help_limit() levels, then must block on its gate: without a spare
    the task that would set it stays queued behind it forever.  With
    compensation a spare thread takes over (and another when that one
    blocks too), the chain completes, and the spares retire afterwards."""
    n = 100
    prefix = _unique_prefix("compensated")
    with impl.WorkStealingPool(1, thread_name_prefix=prefix) as p:
        gates = [p.create_future() for _ in range(n)]
        ran_on: set[threading.Thread] = set()

        def task(i: int) -> int:
            ran_on.add(threading.current_thread())
            if i:
                gates[i - 1].set_result(i)
            # A submission from wherever this runs (a spare's goes to the
            # injector), run inline as the waiter's dependency.
            assert p.submit(abs, -i).result(T) == i
            if i < n - 1:
                assert gates[i].result(T) == i + 1
            return i

        futures = [p.submit(task, i) for i in range(n)]
        done, not_done = cf.wait(futures, timeout=T)
        assert not not_done, f"{len(not_done)} tasks never finished (no compensation?)"
        assert [f.result(0) for f in futures] == list(range(n))
        assert p.join(T)
        spares = ran_on - set(p._threads)
        assert spares, "the chain cannot complete on the worker alone"
        assert len(spares) <= MAX_SPARES
        # Idle and no longer needed, every spare retires on its own.
        for t in spares:
            t.join(T)
            assert not t.is_alive()
        stats = p.stats()
        assert (stats.spares, stats.blocked, stats.pending) == (0, 0, 0)
        assert stats.executed == 2 * n  # spares' tasks included, each once
        assert _pool_threads(prefix) == list(p._threads)
    assert _pool_threads(prefix) == []


def test_spare_threads_are_bounded_and_past_the_bound_a_worker_blocks(impl):
    """Every task waits on one gate the test completes.  Each thread nests
    help_limit() + 1 of them, then blocks; with at most 2 spares, 3 threads
    block and then nothing runs until the gate opens: no third spare is
    started.  Then all complete, and the spares retire."""
    bound = 2

    class SmallPool(impl.WorkStealingPool):  # type: ignore[name-defined,misc]
        _max_spares = bound

    per_thread = help_limit() + 1
    stall = (1 + bound) * per_thread
    n = stall + 20
    prefix = _unique_prefix("bounded")
    with SmallPool(1, thread_name_prefix=prefix) as p:
        gate = p.create_future()
        cond = threading.Condition()
        started = 0
        most_spares = 0
        ran_on: set[threading.Thread] = set()

        def task() -> int:
            nonlocal started, most_spares
            spares = p.stats().spares
            with cond:
                started += 1
                most_spares = max(most_spares, spares)
                ran_on.add(threading.current_thread())
                cond.notify_all()
            return gate.result(T) + 1

        futures = [p.submit(task) for _ in range(n)]
        with cond:
            assert cond.wait_for(lambda: started >= stall, timeout=T), started
        assert started == stall
        gate.set_result(0)
        done, not_done = cf.wait(futures, timeout=T)
        assert not not_done
        assert all(f.result(0) == 1 for f in futures)
        assert p.join(T)
        assert started == n
        assert most_spares <= bound
        spares = ran_on - set(p._threads)
        assert len(spares) == bound
        for t in spares:
            t.join(T)
            assert not t.is_alive()
        assert (p.stats().spares, p.stats().blocked) == (0, 0)
    assert _pool_threads(prefix) == []


class _GatedTasks:
    """Tasks that count themselves started, then wait on `gate` (a future of
    the pool under test)."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.cond = threading.Condition()
        self.started = 0

    def task(self) -> Any:
        with self.cond:
            self.started += 1
            self.cond.notify_all()
        return self.gate.result(T)

    def wait_started(self, enough: Any) -> bool:
        """Whether enough(started) came true within T."""
        with self.cond:
            return self.cond.wait_for(lambda: enough(self.started), timeout=T)


def test_no_spares_means_blocking_as_before(impl):
    """_max_spares = 0: a worker past the help limit blocks uncompensated
    (the documented behaviour beyond the bound); work resumes once the
    outside completes what it waits on."""

    class NoSpares(impl.WorkStealingPool):  # type: ignore[name-defined,misc]
        _max_spares = 0

    prefix = _unique_prefix("nospares")
    n = help_limit() + 5
    with NoSpares(1, thread_name_prefix=prefix) as p:
        gated = _GatedTasks(p.create_future())
        futures = [p.submit(gated.task) for _ in range(n)]
        assert gated.wait_started(lambda started: started == help_limit() + 1)
        assert p.stats().spares == 0
        gated.gate.set_result(3)
        done, not_done = cf.wait(futures, timeout=T)
        assert not not_done and all(f.result(0) == 3 for f in futures)
        assert _pool_threads(prefix) == list(p._threads)


def test_shutdown_joins_spare_threads(impl):
    """shutdown(wait=True) returns only once the spares have exited too."""
    prefix = _unique_prefix("shutdown")
    p = impl.WorkStealingPool(1, thread_name_prefix=prefix)
    gated = _GatedTasks(p.create_future())
    per_thread = help_limit() + 1
    futures = [p.submit(gated.task) for _ in range(2 * per_thread + 3)]
    # The worker and a first spare are blocked, a second spare runs.
    assert gated.wait_started(lambda started: started > 2 * per_thread)
    assert p.stats().spares >= 1
    p.shutdown(wait=False)
    gated.gate.set_result(5)
    closer = threading.Thread(target=p.shutdown)
    closer.start()
    closer.join(T)
    assert not closer.is_alive()
    assert _pool_threads(prefix) == []
    assert all(f.result(0) == 5 for f in futures)


# ---------------------------------------------------------------- fault injection

ERRORS = [RecursionError, MemoryError, KeyboardInterrupt, SystemExit, ValueError]
STEPS = ["claim", "call", "set_result", "set_exception", "callback"]


class FaultyFuture(PoolFuture[Any]):
    """Raises an injected error, once, at one step of the pool's task wrapper
    (the steps the wrapper reaches through the future's methods)."""

    def __init__(self, core: Any, step: str, error: type[BaseException]) -> None:
        super().__init__(core)
        self.step = step
        self.error = error
        self.fired = False

    def fault(self, step: str) -> None:
        if step == self.step and not self.fired:
            self.fired = True
            raise self.error(f"injected at {step}")

    def _claim(self) -> bool:
        self.fault("claim")
        return super()._claim()

    def set_result(self, result: Any) -> None:
        self.fault("set_result")
        super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        self.fault("set_exception")
        super().set_exception(exception)


def _check_settled_once(pool: Any, future: FaultyFuture, settles: list[object], step: str,
                        error: type[BaseException], ran: list[int], batch: bool) -> None:
    done, _ = cf.wait([future], timeout=T)
    assert done, f"fault at {step}: the future never settled"
    # join() first: done-callbacks run after the state change cf.wait sees.
    assert pool.join(T), f"fault at {step}: join() did not see the pool idle"
    assert len(settles) == 1, f"fault at {step}: settled {len(settles)} times"
    assert pool.stats().pending == 0
    exc = future.exception(0)
    if step == "claim":
        assert isinstance(exc, error) and not ran
    elif step == "callback":
        assert exc is None and ran
        assert future.result(0) == (([42], None) if batch else 42)
    else:
        assert isinstance(exc, error) and ran
    # The worker survived and the pool still works.
    assert pool.submit(int, 7).result(T) == 7


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("how", ["queued", "dependency", "batch"])
def test_every_future_settles_exactly_once_under_injected_faults(impl, how, step, error):
    reports: list[BaseException] = []
    with impl.WorkStealingPool(1, error_handler=reports.append) as p:
        future = FaultyFuture(p._core, step, error)
        settles: list[object] = []
        ran: list[int] = []

        def fn(x: int = 42) -> int:
            ran.append(1)
            if step == "set_exception":
                raise ValueError("the task's own error")
            if step == "call":
                raise error("injected in the task")
            return x

        def bad_callback(f: cf.Future[Any]) -> None:
            raise error("injected in a done-callback")

        if step == "callback":
            future.add_done_callback(bad_callback)
        future.add_done_callback(settles.append)

        if how == "queued":
            p._core.submit(future, fn, (), {})
        elif how == "batch":
            p._core.submit_batch(future, fn, [42], False)
        else:
            # A task of the pool submits it and waits: the waiter claims and
            # runs it inline as its dependency.
            def parent() -> str:
                p._core.submit(future, fn, (), {})
                try:
                    future.result(T)
                except BaseException as exc:  # noqa: BLE001 - any outcome is fine here
                    return type(exc).__name__
                return "ok"

            assert p.submit(parent).result(T) in ("ok", "ValueError", error.__name__)

        if how == "batch" and step in ("call", "set_exception"):
            # map() chunks give a task's error to the result tuple, not the future.
            done, _ = cf.wait([future], timeout=T)
            assert done and p.join(T) and len(settles) == 1
            values, failure = future.result(0)
            assert values == [] and isinstance(failure, error if step == "call" else ValueError)
            assert p.submit(int, 7).result(T) == 7
        else:
            _check_settled_once(p, future, settles, step, error, ran, how == "batch")


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_execute_task_and_its_error_handler_raising_never_stop_the_worker(impl, error,
                                                                           monkeypatch):
    reported: list[object] = []
    monkeypatch.setattr(threading, "excepthook", reported.append)

    def handler(exc: BaseException) -> None:
        raise error("injected in the error handler")

    with impl.WorkStealingPool(1, error_handler=handler) as p:
        def fail() -> None:
            raise error("injected in an execute() task")

        p.execute(fail)
        p.execute(lambda _x: fail(), 1)
        assert p.join(T)
        assert p.submit(int, 7).result(T) == 7
    # The handler's own failure, once per task, as an uncaught thread exception.
    assert [str(a.exc_value) for a in reported] == ["injected in the error handler"] * 2
