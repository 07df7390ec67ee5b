"""Channel/Queue against their fallback twins and the stdlib, side by side.

Run: ``tox -e bench`` (or ``pytest benches`` against an installed fastconc).
Every group holds the compiled backend, the fallback, queue.Queue and
queue.SimpleQueue on the same workload, so compare within a group.
"""

from __future__ import annotations

import pytest
from conftest import contender_params, scaled

from fastconc._bench import workloads as w

PAIRS = scaled(100_000)
CROSS = scaled(1_000_000)


@pytest.mark.benchmark(group="send+recv pair, one thread")
@pytest.mark.parametrize("contender", contender_params("channel"))
def test_channel_pair(benchmark, contender):
    benchmark.extra_info["items"] = PAIRS
    benchmark.pedantic(w.same_thread_pairs, (contender, PAIRS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="Queue put+get pair, one thread")
@pytest.mark.parametrize("contender", contender_params("queue"))
def test_queue_pair(benchmark, contender):
    benchmark.extra_info["items"] = PAIRS
    benchmark.pedantic(w.same_thread_pairs, (contender, PAIRS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="1 -> 1 thread, item by item, capacity 1024")
@pytest.mark.parametrize("contender", contender_params("channel"))
def test_cross_thread(benchmark, contender):
    benchmark.extra_info["items"] = CROSS
    benchmark.pedantic(w.cross_thread, (contender, CROSS), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="1 -> 1 thread, batches of 256, capacity 1024")
@pytest.mark.parametrize("contender", contender_params("channel"))
def test_cross_thread_batched(benchmark, contender):
    benchmark.extra_info["items"] = CROSS
    benchmark.pedantic(w.cross_thread_batched, (contender, CROSS), rounds=3, warmup_rounds=1)
