"""Fault injection in Pipeline: exceptions and misbehaviour from user code,
on both backends.  What is covered and how: tests/faultkit.py and the
fault-injection row of docs/RELIABILITY.md."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from faultkit import (
    Boom,
    T,
)

from fastconc import (
    ChannelClosed,
)
from fastconc.pipeline import Pipeline, Stage

pytestmark = pytest.mark.timeout(120)


# ================================================================ Pipeline

def _fails(i: int) -> bool:
    return i % 7 == 3


def _stage_fn(i: int) -> int:
    if _fails(i):
        raise Boom(i)
    return i * 10


@pytest.mark.parametrize("workers", [1, 3])
def test_pipeline_skip_and_replace(impl, tally, workers):
    """on_error="skip" drops exactly the failing items, a callable replaces
    them; order is kept, stats count them, and nothing else is lost."""
    n = 300
    p = Pipeline([Stage(_stage_fn, workers, on_error="skip"), lambda x: x + 1],
                 backend=impl)
    assert list(p.map(range(n))) == [i * 10 + 1 for i in range(n) if not _fails(i)]
    first = p.stats()[0]
    bad = sum(_fails(i) for i in range(n))
    assert (first.items, first.errors) == (n, bad)
    q = Pipeline([Stage(_stage_fn, workers, on_error=lambda item, exc: -item)], backend=impl)
    assert list(q.map(range(n))) == [-i if _fails(i) else i * 10 for i in range(n)]
    tally.add(faults=2 * bad, operations=2 * n, items_checked=2 * n)


@pytest.mark.parametrize("workers", [1, 3])
def test_pipeline_on_error_callable_that_raises(impl, tally, workers):
    """An on_error callable that itself raises fails the run with its own
    exception (chained to the stage's); what came out before is a duplicate-
    free prefix, and the pipeline runs again afterwards."""
    def on_error(item: int, exc: Exception) -> int:
        if item == 52:
            raise RuntimeError("handler gave up")
        return -item

    p = Pipeline([Stage(_stage_fn, workers, on_error=on_error)], backend=impl)
    out = []
    with pytest.raises(RuntimeError, match="handler gave up") as info:
        for x in p.map(range(200)):
            out.append(x)
    assert isinstance(info.value.__context__, Boom)
    expect = [-i if _fails(i) else i * 10 for i in range(52)]
    assert out == expect[:len(out)]
    assert list(p.map(range(40))) == [-i if _fails(i) else i * 10 for i in range(40)]
    tally.add(faults=1 + sum(_fails(i) for i in range(52)), operations=240,
              items_checked=len(out) + 40)


def test_pipeline_raise_policy_with_send_recv(impl, tally):
    """on_error="raise" with start()/send()/recv(): results before the
    failure come out in order, recv() then re-raises it, send() is refused,
    join() returns; a fresh map() on the same pipeline works."""
    p = Pipeline([_stage_fn, lambda x: x + 1], capacity=8, backend=impl).start()
    for i in range(3):
        p.send(i, timeout=T)
    out = [p.recv(timeout=T) for _ in range(3)]
    assert out == [1, 11, 21]
    p.send(3, timeout=T)  # fails in stage one
    with pytest.raises(Boom) as info:
        p.recv(timeout=T)  # usually waiting in the output channel when it closes
    # The stage's own error, not chained to the ChannelClosed the consumer saw.
    assert info.value.__context__ is None
    with pytest.raises(ChannelClosed):
        p.send(4, timeout=T)
    with pytest.raises(Boom):
        p.recv(timeout=T)  # still the stage's error
    assert p.join(T)
    assert list(p.map([0, 1, 2])) == [1, 11, 21]
    tally.add(faults=1, operations=10, items_checked=6)


def test_pipeline_source_failures(impl, tally):
    """A source iterable raising after k items: the k results, then its
    exception; a source whose __iter__ raises: that exception, nothing else."""
    def source():  # noqa: ANN202
        for i in range(25):
            yield i + 100
        raise Boom("source")

    class BadIterable:
        def __iter__(self):  # noqa: ANN204
            raise Boom("iter")

    p = Pipeline([lambda x: x * 2, Stage(abs, workers=2)], backend=impl)
    out = []
    with pytest.raises(Boom, match="source") as info:
        for x in p.map(source()):
            out.append(x)
    assert out == [2 * (i + 100) for i in range(25)]
    assert not isinstance(info.value.__context__, ChannelClosed)
    with pytest.raises(Boom, match="iter"):
        list(p.map(BadIterable()))
    assert list(p.map(range(5))) == [0, 2, 4, 6, 8]
    tally.add(faults=2, operations=31, items_checked=30)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_baseexception_in_a_stage(impl, tally, exc_type, workers):
    """A stage function raising KeyboardInterrupt/SystemExit is not an
    error the on_error policy handles: the run stops and the consumer gets
    it (never a hang, never silently dropped); the pipeline runs again."""
    def fn(i: int) -> int:
        if i == 40:
            raise exc_type("stage")
        return i

    p = Pipeline([Stage(fn, workers, on_error="skip")], backend=impl)
    out = []
    with pytest.raises(exc_type):
        for x in p.map(range(100)):
            out.append(x)
    assert out == list(range(len(out))) and len(out) <= 40
    assert list(p.map(range(10))) == list(range(10))
    tally.add(faults=1, operations=110, items_checked=len(out) + 10)


@pytest.mark.parametrize("on_error", ["skip", "replace", "raising-handler"])
def test_pipeline_executor_stage_errors(impl, tally, on_error):
    """The same policies when the stage runs on an external Executor."""
    def handler(item: int, exc: Exception) -> int:
        if on_error == "raising-handler" and item == 24:
            raise RuntimeError("handler gave up")
        return -item

    policy = "skip" if on_error == "skip" else handler
    n = 60
    with ThreadPoolExecutor(2) as ex:
        p = Pipeline([Stage(_stage_fn, 2, on_error=policy)], executor=ex, backend=impl)
        out = []
        if on_error == "raising-handler":
            with pytest.raises(RuntimeError, match="handler gave up"):
                for x in p.map(range(n)):
                    out.append(x)
            expect = [-i if _fails(i) else i * 10 for i in range(24)]
            assert out == expect[:len(out)]
        else:
            out = list(p.map(range(n)))
            if on_error == "skip":
                assert out == [i * 10 for i in range(n) if not _fails(i)]
            else:
                assert out == [-i if _fails(i) else i * 10 for i in range(n)]
        assert list(p.map(range(8))) == [-i if _fails(i) and on_error != "skip" else i * 10
                                         for i in range(8) if on_error != "skip" or not _fails(i)]
    tally.add(faults=sum(_fails(i) for i in range(n)), operations=n + 8,
              items_checked=len(out) + 8)
