"""ObjectPool: many threads get/put (and acquire/invalidate) with random
timeouts while close() races them, round after round until the time budget
is spent.

Checked: never more than max_size objects alive at once (created and not
yet destroyed); an object is never checked out by two threads at once;
every object is destroyed at most once, and once the pool is closed and
everything is back, each one created was destroyed exactly once.
"""

from __future__ import annotations

import random
import threading

import pytest
from conftest import JOIN_TIMEOUT
from stress_helpers import jitter, random_pause, random_timeout, run_rounds

from fastconc import ObjectPool, PoolClosed, ResourceUnavailable

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


class Resource:
    __slots__ = ("destroyed", "holder", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.holder: int | None = None
        self.destroyed = 0


def test_objpool_get_put_with_timeouts_and_close_racing(impl, threads, tally):
    workers = 5
    run_rounds(tally, lambda: _objpool_round(impl, threads, workers))


def _objpool_round(impl, threads, workers: int) -> tuple[int, int]:
    """One round: a fresh pool, closed at a random moment.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed - 1)
    max_size = rnd.choice((1, 2, 3))
    lock = threading.Lock()
    made: list[Resource] = []
    live = [0, 0]  # now, most ever
    problems: list[str] = []

    def factory() -> Resource:
        with lock:
            live[0] += 1
            live[1] = max(live[1], live[0])
            obj = Resource(len(made))
            made.append(obj)
        return obj

    def destroy(obj: Resource) -> None:
        with lock:
            obj.destroyed += 1
            live[0] -= 1
            if obj.destroyed > 1:
                problems.append(f"object {obj.n} destroyed twice")
            if obj.holder is not None:
                problems.append(f"object {obj.n} destroyed while checked out")

    pool = ObjectPool(
        factory, max_size, destroy=destroy, backend=impl,
        # Some rounds make objects fail validation or retire after a few
        # uses, so destroy-and-replace races the rest.
        validate=(lambda obj: random.random() > 0.1) if rnd.random() < 0.5 else None,
        max_uses=rnd.choice((None, 3)))
    calls = [0] * workers
    start = threading.Barrier(workers + 1)

    def use(w: int, obj: Resource, r: random.Random) -> None:
        with lock:
            if obj.holder is not None:
                problems.append(f"object {obj.n} held by {obj.holder} and {w} at once")
            if obj.destroyed:
                problems.append(f"object {obj.n} handed out after being destroyed")
            obj.holder = w
        jitter(r, p=0.2)
        with lock:
            obj.holder = None

    def worker(w: int) -> None:
        r = random.Random(seed + w)
        start.wait(T)
        while True:
            calls[w] += 1
            timeout = random_timeout(r, T)
            try:
                if r.random() < 0.3:
                    with pool.acquire(timeout) as obj:
                        use(w, obj, r)
                    continue
                obj = pool.get(timeout)
            except ResourceUnavailable:
                continue
            except PoolClosed:
                return
            use(w, obj, r)
            calls[w] += 1
            if r.random() < 0.1:
                pool.invalidate(obj)
            else:
                pool.put(obj)  # after close(): destroyed, no error

    for w in range(workers):
        threads.start(worker, w)
    start.wait(T)
    random_pause(rnd)
    pool.close()
    threads.join()
    assert not problems, problems[:5]
    assert live[1] <= max_size, f"{live[1]} objects alive at once, max_size={max_size}"
    assert live[0] == 0, f"{live[0]} objects never destroyed"
    assert all(obj.destroyed == 1 for obj in made)
    stats = pool.stats()
    assert stats.size == 0 and stats.idle == 0 and stats.in_use == 0, stats
    assert stats.created == stats.destroyed == len(made), stats
    with pytest.raises(PoolClosed):
        pool.get(0)
    checked += len(made)
    total_calls += sum(calls)
    return total_calls, checked
