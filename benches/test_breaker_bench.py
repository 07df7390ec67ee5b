"""CircuitBreaker against pybreaker's, with a bare call as the baseline, side
by side.  Run: ``tox -e bench -- -k breaker``.

The breaker is pure Python on the standard library (no backend primitive), so
there is one fastconc contender, whichever backend is installed.  Per-call
overhead is ``(median - bare median) / calls``; it is written to each
benchmark's extra_info and, with the fastconc/pybreaker ratio (target: at most
1/4 in CLOSED), printed once the module is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pybreaker
import pytest
from conftest import scaled

from fastconc._bench.workloads import bare_call, breaker_calls
from fastconc.breaker import CircuitBreaker

CALLS = scaled(100_000)
THREADS = 8
THREAD_CALLS = scaled(200)
SLOW_CALL = 0.0005  # seconds asleep per call: the workload, not a synchronization
TIMEOUT = 600.0

CLOSED_GROUP = "breaker-closed-overhead"
THREADS_GROUP = "breaker-8-threads"

# Medians in seconds, by (group, contender), for the overhead lines.
_medians: dict[tuple[str, str], float] = {}


def trivial() -> None:
    return None


def slow_call() -> None:
    time.sleep(SLOW_CALL)


def _record(benchmark, group: str, name: str, calls: int) -> None:  # noqa: ANN001
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    _medians[group, name] = stats.stats.median
    bare = _medians.get((group, "bare"))
    if bare is not None and name != "bare":
        benchmark.extra_info["overhead per call (ns)"] = (stats.stats.median - bare) / calls * 1e9


def _overhead(group: str, name: str, calls: int) -> float | None:
    try:
        return (_medians[group, name] - _medians[group, "bare"]) / calls
    except KeyError:
        return None


def _overhead_lines() -> list[str]:
    lines = []
    for group, calls in ((CLOSED_GROUP, CALLS), (THREADS_GROUP, THREADS * THREAD_CALLS)):
        ours, theirs = _overhead(group, "fastconc", calls), _overhead(group, "pybreaker", calls)
        if ours is None or theirs is None:
            continue
        lines.append(
            f"{group}: overhead per call fastconc {ours * 1e9:,.0f} ns, pybreaker "
            f"{theirs * 1e9:,.0f} ns, ratio {ours / theirs:.3f}"
            + (" (target <= 0.25)" if group == CLOSED_GROUP else ""))
    return lines


class _OverheadSummary:
    """Prints the overhead lines at the end of the session, beside
    pytest-benchmark's tables (output during the tests is captured)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        for line in _overhead_lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def overhead_summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if manager.get_plugin("fastconc-breaker-overhead") is None:
        manager.register(_OverheadSummary(), "fastconc-breaker-overhead")


# -- CLOSED: the cost of going through the breaker ----------------------------


def _closed_loop(name: str) -> Callable[[], None]:
    n = CALLS
    if name == "fastconc-decorator":
        decorated = CircuitBreaker()(trivial)

        def run() -> None:
            for _ in range(n):
                decorated()
        return run
    # The loop `fastconc bench` times; "bare" is call(fn) -> fn(),
    # so the difference is what the breaker adds to the same call shape.
    call = {"bare": bare_call, "fastconc": CircuitBreaker().call,
            "pybreaker": pybreaker.CircuitBreaker().call}[name]
    return lambda: breaker_calls(call, n)


@pytest.mark.benchmark(group=CLOSED_GROUP)
@pytest.mark.parametrize("name", ["bare", "fastconc", "fastconc-decorator", "pybreaker"])
def test_closed_overhead(benchmark, name):
    benchmark.extra_info["calls"] = CALLS
    benchmark.pedantic(_closed_loop(name), rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, CLOSED_GROUP, name, CALLS)


# -- 8 threads sharing one breaker, each call sleeping -------------------------


def _threads_run(name: str) -> Callable[[], None]:
    if name == "bare":
        call: Callable[[Callable[[], None]], None] = lambda fn: fn()  # noqa: E731
    elif name == "fastconc":
        call = CircuitBreaker().call
    else:
        # pybreaker holds its lock while the function runs: calls serialize.
        call = pybreaker.CircuitBreaker().call

    def worker(start: threading.Barrier) -> None:
        start.wait()
        for _ in range(THREAD_CALLS):
            call(slow_call)

    def run() -> None:
        start = threading.Barrier(THREADS, timeout=TIMEOUT)
        threads = [threading.Thread(target=worker, args=(start,)) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()

    return run


@pytest.mark.benchmark(group=THREADS_GROUP)
@pytest.mark.parametrize("name", ["bare", "fastconc", "pybreaker"])
def test_eight_threads_slow_calls(benchmark, name):
    benchmark.extra_info["threads"] = THREADS
    benchmark.extra_info["calls per thread"] = THREAD_CALLS
    benchmark.pedantic(_threads_run(name), rounds=5, iterations=1)
    _record(benchmark, THREADS_GROUP, name, THREADS * THREAD_CALLS)
