"""Ring buffers against their fallback twins, collections.deque and
queue.SimpleQueue, side by side.  Run: ``tox -e bench``."""

from __future__ import annotations

import array

import pytest
from conftest import scaled

from fastconc import _impl
from fastconc._bench import workloads as w

PAIRS = scaled(200_000)
TRANSFER = scaled(10_000_000)


@pytest.mark.benchmark(group="ring push+pop pair, one thread")
@pytest.mark.parametrize("name,make", [pytest.param(n, m, id=n) for n, m in w.ring_contenders()])
def test_ring_pair(benchmark, name, make):
    benchmark.extra_info["items"] = PAIRS
    benchmark.pedantic(w.ring_pairs, (make, PAIRS), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="ring push+pop pair, one thread")
def test_deque_pair(benchmark):
    benchmark.extra_info["items"] = PAIRS
    benchmark.pedantic(w.deque_pairs, (PAIRS,), rounds=5, warmup_rounds=1)


@pytest.fixture(scope="module")
def numbers():
    src = array.array("d", range(TRANSFER))
    return src, array.array("d", bytes(8 * TRANSFER))


@pytest.mark.benchmark(group="10M float64 between two threads")
@pytest.mark.parametrize("backend", list(_impl.implementations()))
def test_typed_transfer(benchmark, numbers, backend):
    src, dst = numbers
    make = _impl.implementations()[backend].TypedRingBuffer

    def run():
        w.typed_transfer(make(1 << 16, "d"), src, dst, chunk=4096)

    benchmark.extra_info["items"] = TRANSFER
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert dst == src


@pytest.mark.benchmark(group="10M float64 between two threads")
def test_simplequeue_transfer(benchmark, numbers):
    src, dst = numbers
    benchmark.extra_info["items"] = TRANSFER
    benchmark.pedantic(w.simplequeue_transfer, (src, dst), rounds=3, warmup_rounds=1)
    assert dst == src
