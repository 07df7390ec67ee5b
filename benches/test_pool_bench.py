"""WorkStealingPool (both backends) against concurrent.futures'
ThreadPoolExecutor, 2 workers each, side by side.  Run: ``tox -e bench``.
Pools are created once per module so thread start-up is not measured."""

from __future__ import annotations

import pytest
from conftest import scaled

from fastconc._bench import workloads as w

TASKS = scaled(50_000)
MAP_ITEMS = scaled(100_000)
FIB = 22
WORKERS = 2

CONTENDERS = w.pool_contenders()
OURS = [(n, m) for n, m in CONTENDERS if n.startswith("WorkStealingPool")]


@pytest.fixture(scope="module")
def pools():
    made = {name: make(WORKERS) for name, make in CONTENDERS}
    yield made
    for pool in made.values():
        pool.shutdown()


def _ids(contenders):  # noqa: ANN001, ANN202
    return [n for n, _ in contenders]


@pytest.mark.benchmark(group="50k no-op tasks: submit + result")
@pytest.mark.parametrize("name", _ids(CONTENDERS))
def test_submit_result(benchmark, pools, name):
    benchmark.extra_info["items"] = TASKS
    benchmark.pedantic(w.submit_result, (pools[name], TASKS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="50k no-op tasks: execute + join (stdlib: submit + wait)")
@pytest.mark.parametrize("name", _ids(CONTENDERS))
def test_fire_and_forget(benchmark, pools, name):
    pool = pools[name]
    run = w.submit_wait if name == "ThreadPoolExecutor" else w.execute_join
    benchmark.extra_info["items"] = TASKS
    benchmark.pedantic(run, (pool, TASKS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="map over 100k items")
@pytest.mark.parametrize("name", _ids(CONTENDERS))
def test_map(benchmark, pools, name):
    benchmark.extra_info["items"] = MAP_ITEMS
    benchmark.pedantic(w.map_items, (pools[name], MAP_ITEMS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group=f"fork-join fib({FIB}), submit one branch + wait")
@pytest.mark.parametrize("name", _ids(OURS))
def test_fork_join(benchmark, pools, name):
    steals: list[int] = []

    def run() -> None:
        steals.append(w.fork_join(pools[name], FIB))

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    benchmark.extra_info["steals per run"] = steals
