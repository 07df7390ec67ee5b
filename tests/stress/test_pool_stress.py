"""WorkStealingPool under load: every task runs exactly once, whether it came
from outside (injector), from a task (own deque) or was stolen; fork-join
trees from several threads at once; shutdown racing running work."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import Counter

import pytest
from conftest import JOIN_TIMEOUT, stress_scale
from stress_helpers import Budget

from fastconc import PoolClosed

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


@pytest.mark.parametrize("workers", [2, 4])
def test_nested_submissions_run_exactly_once(impl, tally, workers):
    """A 10-ary tree of tasks: each records its id and spawns its children,
    half by execute() and half by submit(), so tasks flow through the
    injector, the workers' own deques and steals.  Once the time budget is
    spent, tasks stop spawning children."""
    n = int(100_000 * max(1.0, stress_scale()))
    budget = Budget()
    seen: list[int] = []
    spawned: list[int] = [0]
    futures: list[cf.Future] = []

    def task(i: int) -> None:
        seen.append(i)
        if budget.over():
            return
        for c in range(10 * i + 1, min(n, 10 * i + 11)):
            spawned.append(c)
            if c % 2:
                futures.append(pool.submit(task, c))
            else:
                pool.execute(task, c)

    with impl.WorkStealingPool(workers) as pool:
        # Several roots from outside: ids 0 and the first level go through
        # the injector.
        pool.execute(task, 0)
        assert pool.join(T)
        stats = pool.stats()
    counts = Counter(seen)
    assert not [i for i, c in counts.items() if c > 1], "a task ran twice"
    n = len(spawned)
    assert len(counts) == n, f"{n - len(counts)} tasks never ran"
    assert counts.keys() == set(spawned)
    assert all(f.done() and f.exception() is None for f in futures)
    assert stats.executed == n and stats.pending == 0
    tally.add(operations=n, items_checked=n)


def test_fork_join_trees_from_several_threads(impl, threads, tally):
    def fib(n: int) -> int:
        if n < 2:
            return n
        f = pool.submit(fib, n - 1)
        return fib(n - 2) + f.result(T)

    depth = 14 if stress_scale() < 2 else 16
    expected = {14: 377, 16: 987}[depth]
    results: list[int] = []
    with impl.WorkStealingPool(2) as pool:
        start = threading.Barrier(3)

        def client() -> None:
            start.wait(T)
            for _ in range(3):
                results.append(pool.submit(fib, depth).result(T))

        for _ in range(3):
            threads.start(client)
        threads.join()
        assert pool.join(T)
    assert results == [expected] * 9
    # one tree of fib(d) is F(d + 1) submits (the root's included), all
    # checked through the sum
    tasks = 9 * {14: 610, 16: 1597}[depth]
    tally.add(operations=tasks, items_checked=tasks)


def test_shutdown_with_cancel_races_running_work(impl, tally):
    """Tasks keep spawning children while the pool shuts down with
    cancel_futures: every future ends done (result, or cancelled), every
    refused spawn saw PoolClosed, and nothing is left pending or hanging."""
    futures: list[cf.Future] = []
    refused = Counter[str]()
    started = threading.Event()
    rounds = max(200, int(2_000 * stress_scale()))

    def spawner(i: int) -> int:
        started.set()
        if i < rounds:
            try:
                futures.append(pool.submit(spawner, i + 1))
                futures.append(pool.submit(abs, -i))
            except PoolClosed:
                refused["closed"] += 1
        return i

    pool = impl.WorkStealingPool(2)
    for k in range(4):
        futures.append(pool.submit(spawner, k * rounds // 4))
    assert started.wait(T)
    pool.shutdown(wait=True, cancel_futures=True)
    done, not_done = cf.wait(list(futures), timeout=T)
    assert not not_done
    for f in done:
        assert f.cancelled() or f.exception() is None
    assert pool.stats().pending == 0
    assert pool.join(0)
    tally.add(operations=len(futures) + refused["closed"], items_checked=len(futures))
