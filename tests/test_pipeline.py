"""Pipeline on both backends: the lesson's usage, order, backpressure,
errors, close/cancel, executors, stats, bad arguments."""

from __future__ import annotations

import gc
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import BACKENDS, check_exactly_once_sent, stress_scale
from conftest import JOIN_TIMEOUT as T
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconc import ChannelClosed, Timeout
from fastconc.pipeline import Pipeline, Stage, StageStats

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))


def no_threads_left(p: Pipeline) -> None:
    """Every thread of p's runs has exited (bounded wait)."""
    for t in threading.enumerate():
        if t.name.startswith(p.name + "_"):
            t.join(T)
            assert not t.is_alive(), f"{t.name} still running"


def jitter(seed: int):  # noqa: ANN201 - a stage function
    """A stage whose calls take random, GIL-releasing time, so several
    workers finish out of order."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            pause = rng.random() * 0.0005
        time.sleep(pause)  # the workload, not synchronization
        return x

    return work


def test_lesson_usage(impl):
    p = Pipeline([lambda x: x + 1, lambda x: x * 2], backend=impl)
    p.start()
    for i in range(10):
        p.send(i, timeout=T)
    assert [p.recv(timeout=T) for _ in range(10)] == [(i + 1) * 2 for i in range(10)]
    p.close()
    with pytest.raises(ChannelClosed):
        p.recv(timeout=T)
    with pytest.raises(ChannelClosed):
        p.send(1)
    assert p.join(T)
    no_threads_left(p)


def test_map_streams_in_order(impl):
    p = Pipeline([lambda x: x + 1, lambda x: x * 2, str], backend=impl)
    n = 20_000
    assert list(p.map(range(n))) == [str((x + 1) * 2) for x in range(n)]
    # A pipeline is a recipe: map() can run it again.
    assert list(p.map([1, 2])) == ["4", "6"]
    no_threads_left(p)


def test_map_yields_before_the_input_ends(impl):
    """Results come out while the source is still being read: the source
    blocks after item 0 until the consumer has seen that item's result."""
    seen = threading.Event()

    def source():  # noqa: ANN202
        yield 0
        assert seen.wait(T), "no result came out while the input was open"
        yield 1

    results = Pipeline([lambda x: x * 10], backend=impl).map(source())
    assert next(results) == 0
    seen.set()
    assert list(results) == [10]


def test_ordered_output_with_jittery_parallel_stages(impl):
    p = Pipeline([Stage(jitter(1), workers=4), lambda x: -x, Stage(jitter(2), workers=3)],
                 backend=impl)
    n = 2_000
    assert list(p.map(range(n))) == [-x for x in range(n)]


def test_unordered_stage_delivers_each_item_once(impl):
    p = Pipeline([Stage(jitter(3), workers=4, ordered=False)], backend=impl)
    n = 2_000
    out = list(p.map(range(n)))
    assert sorted(out) == list(range(n))


def test_pipeline_default_ordered_false_applies_to_stages(impl):
    p = Pipeline([jitter(4)], workers=3, ordered=False, backend=impl)
    assert [s.workers for s in p.stages] == [3]
    assert [s.ordered for s in p.stages] == [False]
    assert sorted(p.map(range(500))) == list(range(500))


def test_backpressure_bounds_what_is_in_flight(impl):
    """With the last stage stuck, sends stop once every channel and worker is
    full: what got in is bounded by the capacities, whatever the input."""
    capacity = 4
    release = threading.Event()
    entered = threading.Event()

    def stuck(x: int) -> int:
        entered.set()
        assert release.wait(T)
        return x

    p = Pipeline([lambda x: x, stuck], capacity=capacity, backend=impl).start()
    try:
        sent = 0
        while True:
            try:
                p.send(sent, timeout=0.2)
            except Timeout:
                break
            sent += 1
            # 3 channels of 4 + one batch in each stage's hands.
            assert sent <= 3 * capacity + 2 * capacity, "no backpressure"
        assert sent >= capacity  # the first channel alone takes that many
        assert entered.wait(T)
        release.set()
        p.close()
        assert [p.recv(T) for _ in range(sent)] == list(range(sent))
        with pytest.raises(ChannelClosed):
            p.recv(T)
    finally:
        release.set()
        p.cancel()
    assert p.join(T)


def test_infinite_source_with_early_stop(impl):
    p = Pipeline([lambda x: x * 2], capacity=8, backend=impl)
    results = p.map(itertools.count())
    assert [next(results) for _ in range(1000)] == [2 * i for i in range(1000)]
    results.close()  # type: ignore[attr-defined]
    no_threads_left(p)


def test_dropped_iterator_cancels_its_run(impl):
    p = Pipeline([lambda x: x], capacity=2, backend=impl)
    results = p.map(itertools.count())
    del results
    gc.collect()
    no_threads_left(p)


def test_error_stops_and_reraises_at_consumer(impl):
    def boom(x: int) -> int:
        if x == 500:
            raise ValueError("bad item 500")
        return x

    p = Pipeline([lambda x: x, Stage(boom, workers=2), lambda x: x], backend=impl)
    got = []
    with pytest.raises(ValueError, match="bad item 500"):
        for x in p.map(range(100_000)):
            got.append(x)
    assert got == list(range(len(got)))
    assert len(got) < 100_000
    no_threads_left(p)


def test_error_reaches_recv(impl):
    p = Pipeline([lambda x: 1 // x], backend=impl).start()
    p.send(0, timeout=T)
    with pytest.raises(ZeroDivisionError):
        p.recv(timeout=T)
    with pytest.raises(ZeroDivisionError):  # it stays failed
        p.recv(timeout=T)
    with pytest.raises(ChannelClosed):
        p.send(1)
    assert p.join(T)


def test_skip_and_replace(impl):
    seen = []

    def replace(item: int, exc: Exception) -> str:
        seen.append((item, type(exc)))
        return "r"

    p = Pipeline([Stage(lambda x: 10 // x, on_error="skip"),
                  Stage(lambda x: 1 // (x - 5), on_error=replace)], backend=impl)
    assert list(p.map([1, 0, 2, 5, 10])) == [0, "r", -1, -1]
    assert seen == [(5, ZeroDivisionError)]
    stats = p.stats()
    assert (stats[0].items, stats[0].errors) == (5, 1)
    assert (stats[1].items, stats[1].errors) == (4, 1)


def test_failing_replacement_stops_the_pipeline(impl):
    def bad_handler(item: int, exc: Exception) -> int:
        raise KeyError(item)

    p = Pipeline([Stage(lambda x: 1 // x, on_error=bad_handler)], backend=impl)
    with pytest.raises(KeyError):
        list(p.map([1, 0, 1]))


def test_source_error_comes_after_earlier_items(impl):
    def source():  # noqa: ANN202
        yield from range(100)
        raise OSError("source broke")

    p = Pipeline([Stage(lambda x: x, workers=2)], backend=impl)
    got = []
    with pytest.raises(OSError, match="source broke"):
        for x in p.map(source()):
            got.append(x)
    assert got == list(range(100))
    no_threads_left(p)


def test_source_raising_channel_closed_is_not_an_end(impl):
    """A ChannelClosed from the source (say, another pipeline's iterator) is
    the source's error, not a quiet end of input."""
    def source():  # noqa: ANN202
        yield from range(10)
        raise ChannelClosed("upstream went away")

    got = []
    with pytest.raises(ChannelClosed, match="upstream went away"):
        for x in Pipeline([lambda x: x], backend=impl).map(source()):
            got.append(x)
    assert got == list(range(10))


def test_live_source_does_not_hold_back_results(impl):
    """Items already read are processed while the source waits for more:
    the source's 4th item only comes once the first 3 results are out."""
    got: list[int] = []
    three_out = threading.Event()

    def source():  # noqa: ANN202
        yield from (0, 1, 2)
        assert three_out.wait(T), "results held back while the source waited"
        yield 3

    for x in Pipeline([lambda x: x, lambda x: x], backend=impl).map(source()):
        got.append(x)
        if len(got) == 3:
            three_out.set()
    assert got == [0, 1, 2, 3]


def test_first_result_goes_on_before_later_calls(impl):
    first_out = threading.Event()

    def stage(x: int) -> int:
        if x == 1:
            assert first_out.wait(T), "result 0 held back behind call 1"
        return x

    p = Pipeline([stage], backend=impl).start()
    for i in range(8):
        p.send(i, timeout=T)
    assert p.recv(timeout=T) == 0
    first_out.set()
    assert [p.recv(timeout=T) for _ in range(7)] == list(range(1, 8))
    p.close()
    assert p.join(T)


def test_cancel_starts_no_further_calls(impl):
    entered = threading.Event()
    release = threading.Event()
    calls = []

    def stage(x: int) -> int:
        calls.append(x)
        entered.set()
        assert release.wait(T)
        return x

    p = Pipeline([Stage(lambda x: x), stage], backend=impl).start()
    for i in range(20):
        p.send(i, timeout=T)
    assert entered.wait(T)
    p.cancel()
    release.set()
    assert p.join(T)
    assert calls == [0]


def test_with_block_keeps_results_of_a_finished_run(impl):
    with Pipeline([lambda x: x + 1], backend=impl) as p:
        p.start()
        for i in range(3):
            p.send(i, timeout=T)
        p.close()
        assert p.join(T)
    assert list(p) == [1, 2, 3]


def test_close_drains_in_flight(impl):
    p = Pipeline([Stage(jitter(5), workers=3), str], capacity=16, backend=impl).start()
    results: list[str] = []

    def consume() -> None:
        results.extend(p)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(300):
        p.send(i, timeout=T)
    p.close()
    consumer.join(T)
    assert not consumer.is_alive()
    assert results == [str(i) for i in range(300)]
    assert p.join(T)
    no_threads_left(p)


def test_breaking_out_of_iteration_loses_nothing(impl):
    p = Pipeline([lambda x: x], backend=impl).start()
    for i in range(10):
        p.send(i, timeout=T)
    p.close()
    for x in p:
        if x == 3:
            break
    assert list(p) == list(range(4, 10))
    assert p.join(T)


def test_cancel_aborts_and_leaves_no_threads(impl):
    entered = threading.Event()
    release = threading.Event()

    def stuck(x: int) -> int:
        entered.set()
        assert release.wait(T)
        return x

    p = Pipeline([stuck, lambda x: x], capacity=4, backend=impl).start()
    for i in range(5):  # one in the stuck call, four in the first channel
        p.send(i, timeout=T)
    assert entered.wait(T)
    p.cancel()
    with pytest.raises(ChannelClosed):
        p.recv(timeout=T)
    with pytest.raises(ChannelClosed):
        p.send(99, timeout=T)
    release.set()  # the call already running finishes, nothing more starts
    assert p.join(T)
    no_threads_left(p)


def test_cancel_wakes_ordered_workers_waiting_their_turn(impl):
    first = threading.Event()
    release = threading.Event()

    def slow_first(x: int) -> int:
        if x == 0:
            first.set()
            assert release.wait(T)
        return x

    p = Pipeline([Stage(slow_first, workers=3)], capacity=8, backend=impl).start()
    for i in range(8):
        p.send(i, timeout=T)
    assert first.wait(T)
    p.cancel()
    release.set()
    assert p.join(T)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpreter_exits_with_a_pipeline_left_open(backend):
    """Stage loops blocked on an input nobody closes must not hold up exit."""
    code = f"""if True:
        import fastconc
        from fastconc.pipeline import Pipeline, Stage
        ns = fastconc.implementations()[{backend!r}]
        p = Pipeline([lambda x: x, Stage(lambda x: x, workers=2)], backend=ns).start()
        p.send(1)
        assert p.recv(5) == 1
        p.send(2)
        it = Pipeline([str], capacity=1, backend=ns).map(iter(int, 1))  # endless
        next(it)
        print("done")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=T)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"


def test_with_block_cancels(impl):
    with Pipeline([lambda x: x], backend=impl) as p:
        p.start()
        p.send(1, timeout=T)
        assert p.recv(timeout=T) == 1
        p.send(2, timeout=T)
    with pytest.raises(ChannelClosed):
        p.recv(timeout=T)
    assert p.join(T)


def test_executor_runs_the_stages_in_order_with_bounded_in_flight(impl):
    lock = threading.Lock()
    running = 0
    most = 0
    work = jitter(6)

    def counted(x: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return work(x)
        finally:
            with lock:
                running -= 1

    with ThreadPoolExecutor(8) as ex:
        p = Pipeline([Stage(counted, workers=3), lambda x: x * 2], executor=ex, backend=impl)
        assert list(p.map(range(500))) == [2 * x for x in range(500)]
        assert 1 <= most <= 3
        # unordered through an executor: every item exactly once
        p = Pipeline([Stage(work, workers=4, ordered=False)], executor=ex, backend=impl)
        assert sorted(p.map(range(500))) == list(range(500))
        stats = p.stats()[0]
        assert stats.items == 500
        assert stats.busy > 0
    no_threads_left(p)


def test_executor_error_policies(impl):
    with ThreadPoolExecutor(2) as ex:
        p = Pipeline([Stage(lambda x: 10 // x, on_error="skip", workers=2)], executor=ex,
                     backend=impl)
        assert list(p.map([1, 0, 2])) == [10, 5]
        p = Pipeline([Stage(lambda x: 10 // x, on_error=lambda item, exc: -1)], executor=ex,
                     backend=impl)
        assert list(p.map([1, 0, 2])) == [10, -1, 5]
        p = Pipeline([Stage(lambda x: 10 // x, workers=2)], executor=ex, backend=impl)
        with pytest.raises(ZeroDivisionError):
            list(p.map([1, 2, 0, 3]))
        no_threads_left(p)


def test_executor_cancel_cancels_queued_calls(impl):
    release = threading.Event()
    entered = threading.Event()

    def stuck(x: int) -> int:
        entered.set()
        assert release.wait(T)
        return x

    with ThreadPoolExecutor(1) as ex:
        p = Pipeline([Stage(stuck, workers=4)], executor=ex, backend=impl).start()
        for i in range(6):
            p.send(i, timeout=T)
        assert entered.wait(T)
        p.cancel()
        release.set()
        assert p.join(T)
    no_threads_left(p)


def test_stats(impl):
    p = Pipeline([Stage(lambda x: x, name="first"), Stage(lambda x: x, workers=2)],
                 backend=impl)
    before = p.stats()
    assert [s.items for s in before] == [0, 0]
    assert before[0].name == "first"
    assert list(p.map(range(1000))) == list(range(1000))
    after = p.stats()
    assert all(isinstance(s, StageStats) for s in after)
    assert [(s.items, s.errors, s.queue_depth) for s in after] == [(1000, 0, 0), (1000, 0, 0)]
    assert [s.workers for s in after] == [1, 2]
    assert all(s.busy >= 0 for s in after)


def test_many_producers_and_consumers_exactly_once(impl, threads):
    producers, consumers = 4, 3
    n = int(2_000 * stress_scale())
    p = Pipeline([Stage(lambda t: t, workers=3), Stage(jitter(7), workers=2)], capacity=32,
                 backend=impl).start()
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]
    done = threading.Barrier(producers + 1, timeout=T)

    def produce(k: int) -> None:
        for i in range(n):
            p.send((k, i), timeout=T)
        done.wait()

    def consume(k: int) -> None:
        received[k].extend(p)

    for k in range(consumers):
        threads.start(consume, k)
    for k in range(producers):
        threads.start(produce, k)
    done.wait()
    p.close()
    threads.join()
    # Ordered stages keep channel order, so each producer's items stay in order.
    check_exactly_once_sent(received, [n] * producers)
    assert p.join(T)


@pytest.mark.stress
def test_stress_unordered_parallel_stages_exactly_once(impl):
    n = int(50_000 * stress_scale())
    p = Pipeline([Stage(lambda x: (0, x), workers=3, ordered=False),
                  Stage(lambda t: t, workers=2, ordered=False),
                  Stage(lambda t: t, workers=2)], capacity=16, backend=impl)
    out = list(p.map(range(n)))
    assert sorted(out) == [(0, i) for i in range(n)]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.integers(-5, 20), max_size=60),
       stages=st.lists(st.tuples(st.integers(1, 3), st.booleans(), st.sampled_from(
           ["add", "skip-neg", "replace-neg"])), min_size=1, max_size=3),
       capacity=st.integers(1, 5))
def test_matches_a_list_model(impl, items, stages, capacity):
    """Any stage layout gives what a plain loop gives (as a multiset when a
    stage is unordered)."""
    def add(x: int) -> int:
        return x + 1

    def check(x: int) -> int:
        if x < 0:
            raise ValueError(x)
        return x

    built = []
    model = list(items)
    for workers, ordered, kind in stages:
        if kind == "add":
            built.append(Stage(add, workers, ordered=ordered))
            model = [x + 1 for x in model]
        elif kind == "skip-neg":
            built.append(Stage(check, workers, ordered=ordered, on_error="skip"))
            model = [x for x in model if x >= 0]
        else:
            built.append(Stage(check, workers, ordered=ordered, on_error=lambda x, e: 0))
            model = [x if x >= 0 else 0 for x in model]
    out = list(Pipeline(built, capacity=capacity, backend=impl).map(items))
    if all(ordered for _, ordered, _ in stages):
        assert out == model
    else:
        assert sorted(out) == sorted(model)


def test_bad_arguments(impl):
    with pytest.raises(ValueError, match="stages"):
        Pipeline([], backend=impl)
    with pytest.raises(TypeError, match="stage 1"):
        Pipeline([str, 3], backend=impl)
    with pytest.raises(TypeError, match="stages"):
        Pipeline(str, backend=impl)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity"):
        Pipeline([str], capacity=0, backend=impl)
    with pytest.raises(TypeError, match="capacity"):
        Pipeline([str], capacity=1.5, backend=impl)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        Pipeline([str], workers=0, backend=impl)
    with pytest.raises(TypeError, match="ordered"):
        Pipeline([str], ordered=1, backend=impl)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="executor"):
        Pipeline([str], executor=object(), backend=impl)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn"):
        Stage(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        Stage(str, 0)
    with pytest.raises(ValueError, match="on_error"):
        Stage(str, on_error="ignore")
    p = Pipeline([str], backend=impl)
    with pytest.raises(RuntimeError, match="start"):
        p.send(1)
    with pytest.raises(RuntimeError, match="start"):
        p.recv()
    with pytest.raises(TypeError, match="iterable"):
        p.map(3)  # type: ignore[arg-type]
    p.start()
    with pytest.raises(RuntimeError, match="already started"):
        p.start()
    p.cancel()
    assert p.join(T)
    assert "Pipeline" in repr(p) and "str" in repr(Stage(str))


def test_pipeline_timeouts_bound_each_call_while_a_stage_is_blocked(impl):
    """With a stage blocked in its function, send(timeout),
    recv(timeout) and join(timeout) return within their timeout, and
    close()/cancel() (no timeout) return at once: each while the call is
    still blocked."""
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def stuck(x: int) -> int:
        entered.set()
        release.wait(T)
        finished.set()
        return x

    p = Pipeline([stuck], capacity=1, backend=impl).start()
    try:
        p.send(0, timeout=T)
        assert entered.wait(T)
        p.send(1, timeout=T)  # the first channel (1 slot) is now full
        with pytest.raises(Timeout):
            p.send(2, timeout=0.2)
        with pytest.raises(Timeout):
            p.recv(timeout=0.2)
        assert p.join(timeout=0.2) is False
        p.close()
        assert p.join(timeout=0.2) is False
        p.cancel()
        assert not finished.is_set()  # every call above returned first
    finally:
        release.set()
    assert p.join(T)
    no_threads_left(p)
