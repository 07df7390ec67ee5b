"""ObjectPool (both backends) against a minimal queue.Queue-based pool, side
by side: borrow+return pairs from one thread, then 4 threads sharing a pool
of 2 objects.  Pairs per second = pairs / median.
Run: ``tox -e bench -- -k objpool``."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest
from conftest import scaled

from fastconc import _impl
from fastconc._bench.workloads import borrow_return
from fastconc.objpool import ObjectPool

PAIRS = scaled(100_000)
CONTENDED_PAIRS = scaled(20_000)
THREADS = 4
TIMEOUT = 600.0

BACKENDS = list(_impl.implementations())


class QueuePool:
    """The stdlib baseline: pre-made objects in a queue.Queue (no lazy
    creation, no ownership checks, no hooks)."""

    def __init__(self, factory: Callable[[], object], size: int) -> None:
        self._q: queue.Queue[object] = queue.Queue()
        for _ in range(size):
            self._q.put(factory())

    def get(self) -> object:
        return self._q.get()

    def put(self, obj: object) -> None:
        self._q.put(obj)


def _make(name: str, size: int):  # noqa: ANN202 - (get, put, acquire or None)
    if name == "queue.Queue":
        pool = QueuePool(object, size)
        return pool.get, pool.put, None
    backend = name.removesuffix("-acquire")
    op = ObjectPool(object, size, min_size=size, backend=_impl.implementations()[backend])
    return op.get, op.put, (op.acquire if name.endswith("-acquire") else None)


def _loop(name: str, size: int, n: int) -> Callable[[], None]:
    get, put, acquire = _make(name, size)
    if acquire is not None:
        def run() -> None:
            for _ in range(n):
                with acquire():
                    pass
    else:
        def run() -> None:
            borrow_return(get, put, n)
    return run


CONTENDERS = [*BACKENDS, *(f"{b}-acquire" for b in BACKENDS), "queue.Queue"]


@pytest.mark.benchmark(group="objpool-borrow-return")
@pytest.mark.parametrize("name", CONTENDERS)
def test_borrow_return(benchmark, name):
    benchmark.extra_info["pairs"] = PAIRS
    benchmark.pedantic(_loop(name, 4, PAIRS), rounds=5, iterations=1)


@pytest.mark.benchmark(group="objpool-borrow-return, 4 threads on a pool of 2")
@pytest.mark.parametrize("name", CONTENDERS)
def test_borrow_return_contended(benchmark, name):
    per_thread = CONTENDED_PAIRS // THREADS
    work = _loop(name, 2, per_thread)

    def run() -> None:
        start = threading.Barrier(THREADS)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                start.wait(TIMEOUT)
                work()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
        assert not errors, errors[0]

    benchmark.extra_info["pairs"] = per_thread * THREADS
    benchmark.pedantic(run, rounds=5, iterations=1)
