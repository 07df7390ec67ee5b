"""Channel/Queue against their fallback twins and the stdlib, side by side.

Run: ``tox -e bench`` (or ``pytest benches`` against an installed fastconc).
Every group holds the compiled backend, the fallback, queue.Queue and
queue.SimpleQueue on the same workload (the thread-to-thread groups also a
polling RingBuffer; the ping-pong group a SimpleQueue pair and ask(); the
select group a plain recv), so compare within a group.
"""

from __future__ import annotations

import pytest
from conftest import contender_params, scaled

import fastconc
from fastconc import _impl
from fastconc._bench import workloads as w

PAIRS = scaled(100_000)
CROSS = scaled(1_000_000)
ROUND_TRIPS = scaled(10_000)


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


def _ring_params() -> list:
    return [pytest.param(ns.RingBuffer, id=f"{backend} RingBuffer, polling")
            for backend, ns in _impl.implementations().items()]


@pytest.mark.benchmark(group="1 -> 1 thread, item by item, capacity 1024")
@pytest.mark.parametrize("make", _ring_params())
def test_cross_thread_ring_polling(benchmark, make):
    benchmark.extra_info["items"] = CROSS
    benchmark.pedantic(w.ring_polling, (make, CROSS), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="2 -> 2 threads, item by item, capacity 1024")
@pytest.mark.parametrize("contender", contender_params("channel"))
def test_two_to_two(benchmark, contender):
    benchmark.extra_info["items"] = CROSS
    benchmark.pedantic(w.cross_threads, (contender, CROSS, 2, 2), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="2 -> 2 threads, item by item, capacity 1024")
@pytest.mark.parametrize("make", _ring_params())
def test_two_to_two_ring_polling(benchmark, make):
    benchmark.extra_info["items"] = CROSS
    benchmark.pedantic(w.ring_polling, (make, CROSS, 2, 2), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="ping-pong: round trips between two threads")
@pytest.mark.parametrize("run", [pytest.param(run, id=name)
                                 for name, run in w.ping_pong_contenders()])
def test_ping_pong(benchmark, run):
    benchmark.extra_info["round_trips"] = ROUND_TRIPS
    benchmark.pedantic(run, (ROUND_TRIPS,), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="ping-pong: round trips between two threads")
@pytest.mark.parametrize("backend", list(_impl.implementations()))
def test_ask_with_timeout(benchmark, backend):
    ns = _impl.implementations()[backend]
    system = fastconc.ActorSystem(2, backend=ns)
    try:
        ref = system.spawn(w.echo_actor())
        benchmark.extra_info["round_trips"] = ROUND_TRIPS
        benchmark.pedantic(w.ask_round_trips, (ref.ask, ROUND_TRIPS), rounds=5,
                           warmup_rounds=1)
    finally:
        system.shutdown()


@pytest.mark.benchmark(group="a send, then select over k channels (one ready) / a plain recv")
@pytest.mark.parametrize("k", [0, 1, 4], ids=["plain recv", "select over 1", "select over 4"])
@pytest.mark.parametrize("backend", list(_impl.implementations()))
def test_select(benchmark, backend, k):
    ns = _impl.implementations()[backend]
    chans = [ns.Channel(1024) for _ in range(max(k, 1))]
    benchmark.extra_info["items"] = PAIRS
    benchmark.pedantic(w.select_loop, (ns.select if k else None, chans, PAIRS), rounds=5,
                       warmup_rounds=1)
