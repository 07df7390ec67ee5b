"""The API-fuzz machinery shared by tests/test_fuzz_primitives.py and
tests/test_fuzz_high_layer.py: hostile values, the call/outcome recorder,
the per-class Spec (which calls, which exceptions each may raise, a model),
and the three fuzz runs each class goes through.

API fuzz: random call sequences against every primitive.

Hypothesis draws a constructor call with arguments from a wide pool of
values (ints at and past every C boundary, nan/inf, wrong types, objects
whose ``__bool__``/``__index__``/``__iter__`` raise, lying ``__len__``...),
then a sequence of method calls with arguments drawn the same way: wrong
types, negative / nan / inf timeouts, huge ``max_items``, non-iterables for
the ``*_many`` methods, calls after close/shutdown, buffers of the wrong
format, item size or layout for TypedRingBuffer, owner-only calls made from
a second thread, and several threads calling one object at once.

The property: every call returns or raises an exception from the set the
method documents (per method below), with a non-empty message.  A
SystemError, an AssertionError, an exception outside the set, an empty
message, a crash (the sanitizer build runs this file) or a hang (every wait
is bounded) fails.  After a sequence the cheap invariants are checked (length
within 0..capacity, and for the FIFO/LIFO structures an exact model: a call
that raised changed nothing, popped items are the pushed ones in order).
``test_backends_agree`` runs one drawn sequence on both backends and
compares the outcome of every call (exception type, or returned value).

Blocking calls always get a bounded timeout; ``None``/``inf``/huge timeouts
are used only where the single-threaded state guarantees the call cannot
block.  Absurd sizes are at least 2**48, so an allocation is refused by any
allocator instead of being touched (the sanitizer env needs
``ASAN_OPTIONS=allocator_may_return_null=1`` for that).
"""

from __future__ import annotations

import array
import concurrent.futures
import math
import os
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conftest import BACKENDS, JOIN_TIMEOUT, load_backend
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fastconc import (
    ActorStopped,
    Deadlock,
    Full,
    PoolClosed,
)

try:
    import numpy as np
except ImportError:  # optional: the buffers below then come from array/memoryview only
    np = None

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))


def fuzz_settings(scale: float = 1.0) -> settings:
    # No explain phase: before 3.12 it traces every line (sys.settrace) while
    # it replays a failure, which with threads and pools running turned a
    # failure into a pytest-timeout with the failure itself lost.
    return settings(max_examples=max(5, int(EXAMPLES * scale)), deadline=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

# ---------------------------------------------------------------- hostile values


class Boom(Exception):
    """Raised by the hostile objects below (user code failing inside a call)."""


class Opaque:
    """An arbitrary object (no buffer, no number, not iterable)."""

    def __repr__(self) -> str:
        return "<Opaque>"


class BadBool:
    def __bool__(self) -> bool:
        raise Boom("__bool__ failed")

    def __repr__(self) -> str:
        return "<BadBool>"


class BadIndex:
    def __index__(self) -> int:
        raise Boom("__index__ failed")

    def __float__(self) -> float:
        raise Boom("__float__ failed")

    def __repr__(self) -> str:
        return "<BadIndex>"


class IndexInt:
    """Not an int, but usable as one (operator.index)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"IndexInt({self.n})"


class Recipe:
    """An argument built fresh for every call (iterators are used up,
    buffers are written to; each backend must get its own copy)."""

    def make(self) -> Any:
        raise NotImplementedError

    def model_items(self) -> list[Any] | None:
        """What the argument yields when iterated, if it iterates fine."""
        return None


@dataclass(frozen=True)
class Items(Recipe):
    """An iterable of items, in one of several shapes."""

    items: tuple[Any, ...]
    shape: str  # list, tuple, gen, boom_iter, lying_len

    def make(self) -> Any:
        items = self.items
        if self.shape == "list":
            return list(items)
        if self.shape == "tuple":
            return tuple(items)
        if self.shape == "gen":
            return (x for x in items)
        if self.shape == "boom_iter":
            def boom():
                yield from items
                raise Boom("iteration failed part-way")
            return boom()
        return LyingLen(items)

    def model_items(self) -> list[Any] | None:
        return None if self.shape == "boom_iter" else list(self.items)

    def __repr__(self) -> str:
        return f"Items({self.shape}, {len(self.items)} items)"


class LyingLen:
    """__len__ says 3 whatever __iter__ yields."""

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items

    def __len__(self) -> int:
        return 3

    def __iter__(self):
        return iter(self.items)


class HugeList(list):
    def __repr__(self) -> str:
        return f"<list of {len(self)} zeros>"


HUGE_LIST = HugeList([0] * 100_000)
SENTINEL = Opaque()  # pop(default): never an item
HUGE = 2**31  # sizes at or above this may raise MemoryError

INTS = [0, 1, -1, 2, 3, 7, 64, -2, 2**31 - 1, 2**31, -2**31, 2**32, 2**48, 2**55, 2**59 - 1,
        2**59, 2**62, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, 2**100, -2**100]
FLOATS = [0.0, -0.0, 0.5, -0.5, 1e-9, math.nan, math.inf, -math.inf, 1e300, -1e300, 2.5]
OTHERS = [None, True, False, "", "x", "d", b"", b"\x00", bytearray(b"ab"), [], [1, 2], (),
          (1,), {}, {1}, Opaque(), BadBool(), BadIndex(), IndexInt(3), IndexInt(-1),
          IndexInt(2**64), Fraction(1, 3), Decimal("0.001"), 1j, HUGE_LIST]
WILD = INTS + FLOATS + OTHERS

wild = st.sampled_from(WILD)
small_ints = st.integers(-3, 70)
items = st.one_of(small_ints, wild)
# A size argument: mostly sensible, often not.
sizes = st.one_of(st.integers(1, 9), st.integers(-3, 12), wild)
small_sizes = st.integers(1, 9)
# Ring capacities: 2**21..2**47 slots would be allocated (and, for some, filled)
# for real on a large machine; above that every allocator refuses.
ring_sizes = sizes.filter(lambda v: not (isinstance(v, int) and 2**20 < abs(v) < 2**48))

# Timeouts a blocking call may get anywhere: they end within ~1 ms or raise.
BOUNDED_TIMEOUTS = [0, 0.0, -0.0, 0.001, 1e-9, False, -1, -1e-9, -math.inf, math.nan, "1",
                    b"1", [], Opaque(), BadIndex(), 1j, Fraction(1, 1000), Decimal("0.001"),
                    2**1024]
# Timeouts that may wait forever: only where the call cannot block.
UNBOUNDED_TIMEOUTS = [None, math.inf, 1e10, 2**64, 1e300]
bounded_timeouts = st.sampled_from(BOUNDED_TIMEOUTS)
any_timeouts = st.sampled_from(BOUNDED_TIMEOUTS + UNBOUNDED_TIMEOUTS)


def iterables(elements: st.SearchStrategy[Any] = items) -> st.SearchStrategy[Any]:
    """An argument for a *_many method: an iterable in some shape, or not."""
    return st.one_of(
        st.builds(Items, st.lists(elements, max_size=12).map(tuple),
                  st.sampled_from(["list", "tuple", "gen", "boom_iter", "lying_len"])),
        st.sampled_from([None, 5, 1.5, Opaque(), BadIndex(), HUGE_LIST, "abc", b"ab", {1: 2},
                         range(5)]),
    )


def materialize(value: Any) -> Any:
    return value.make() if isinstance(value, Recipe) else value


def is_unbounded(timeout: Any) -> bool:
    return any(timeout is t for t in UNBOUNDED_TIMEOUTS)


def huge_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    def huge(v: Any) -> bool:
        if isinstance(v, IndexInt):
            v = v.n
        return isinstance(v, int) and not isinstance(v, bool) and abs(v) >= HUGE
    return any(huge(v) for v in (*args, *kwargs.values()))


# ---------------------------------------------------------------- calls and outcomes


@dataclass
class Op:
    """One call: ``method`` on the object (or a pseudo-method such as
    ``len``), run on the main thread or on the sequence's second thread."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    other_thread: bool = False

    def __repr__(self) -> str:
        where = " [other thread]" if self.other_thread else ""
        inner = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.method}({inner}){where}"


NEVER_RAISES: tuple[type[BaseException], ...] = ()
TIMEOUT_ARG = (TypeError, ValueError, OverflowError, Boom)  # a bad timeout value
FORBIDDEN = (SystemError, AssertionError)


def check_exception(exc: BaseException, allowed: tuple[type[BaseException], ...],
                    what: str) -> None:
    assert not isinstance(exc, FORBIDDEN), f"{what} raised {type(exc).__name__}: {exc}"
    assert isinstance(exc, allowed), (
        f"{what} raised {type(exc).__name__}: {exc!r}; allowed: "
        f"{', '.join(t.__name__ for t in allowed) or 'nothing'}")
    message = str(exc)
    assert isinstance(message, str) and message.strip(), (
        f"{what} raised {type(exc).__name__} with an empty message")


def normalize(value: Any, depth: int = 0) -> Any:
    """A comparable form of a returned value.  Other objects compare by type:
    each backend's run makes its own (metrics, futures...), and whether a
    popped item is the very object pushed is checked by the models of
    test_api_fuzz."""
    if isinstance(value, float):
        return ("float", repr(value))
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, array.array):
        return ("array", value.typecode, tuple(normalize(x) for x in value))
    if isinstance(value, (list, tuple)) and len(value) <= 100 and depth < 3:
        return (type(value).__name__, tuple(normalize(x, depth + 1) for x in value))
    return ("object", type(value).__qualname__)


class Sequence:
    """Runs ops against one object; a lazily started second thread plays
    "another thread" (one live thread for the whole sequence, so its
    identity is never reused and ownership outcomes are deterministic)."""

    def __init__(self, spec: Spec, obj: Any, ns: Any) -> None:
        self.spec = spec
        self.obj = obj
        self.ns = ns
        self._other: concurrent.futures.ThreadPoolExecutor | None = None
        self.calls = 0
        self.concurrent = False
        self.model: Any = None
        # what the high-layer specs keep between calls
        self.futures: list[Any] = []
        self.refs: list[Any] = []
        self.out: list[Any] = []
        self.returned: list[Any] = []

    def run(self, op: Op) -> tuple[tuple[str, Any], Any]:
        """((kind, comparable result or exception type), raw result)."""
        self.calls += 1
        if op.other_thread and not self.concurrent:
            if self._other is None:
                self._other = concurrent.futures.ThreadPoolExecutor(1)
            return self._other.submit(self._call, op).result(JOIN_TIMEOUT)
        return self._call(op)

    def _call(self, op: Op) -> tuple[tuple[str, Any], Any]:
        spec = self.spec
        allowed = spec.allowed(op)
        if huge_args(op.args, op.kwargs):
            allowed = (*allowed, MemoryError)
        if "bogus_kw" in op.kwargs:
            allowed = (*allowed, TypeError)
        try:
            result = spec.invoke(self, op)
        except Exception as exc:
            check_exception(exc, allowed, f"{spec.name}.{op!r}")
            return ("raised", type(exc)), None
        return ("returned", spec.normalize(result)), result

    def close(self) -> None:
        if self._other is not None:
            self._other.shutdown(wait=True)


class Spec:
    """How to fuzz one primitive."""

    name = ""
    scale = 1.0  # share of the examples (thread-starting structures get fewer)
    deterministic = True  # a sequence gives the same outcomes on both backends
    ctor_errors: tuple[type[BaseException], ...] = (TypeError, ValueError, OverflowError, Boom)
    errors: dict[str, tuple[type[BaseException], ...]] = {}
    default_errors: tuple[type[BaseException], ...] = (TypeError,)

    def ctor(self) -> st.SearchStrategy[tuple[tuple[Any, ...], dict[str, Any]]]:
        raise NotImplementedError

    def valid_ctor(self) -> st.SearchStrategy[tuple[tuple[Any, ...], dict[str, Any]]]:
        raise NotImplementedError

    def make(self, ns: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def ops(self, concurrent: bool) -> st.SearchStrategy[Op]:
        raise NotImplementedError

    def allowed(self, op: Op) -> tuple[type[BaseException], ...]:
        return self.errors.get(op.method, self.default_errors)

    def invoke(self, seq: Sequence, op: Op) -> Any:
        if op.method == "len":
            return len(seq.obj)
        if op.method == "repr":
            return repr(seq.obj) and None
        if op.method.startswith("."):
            return getattr(seq.obj, op.method[1:])
        args = tuple(materialize(a) for a in op.args)
        kwargs = {k: materialize(v) for k, v in op.kwargs.items()}
        return getattr(seq.obj, op.method)(*args, **kwargs)

    def prepare(self, seq: Sequence, op: Op, concurrent: bool) -> Op:
        """Last-moment fix-up (e.g. an unbounded timeout where it could block)."""
        return op

    def normalize(self, result: Any) -> Any:
        return normalize(result)

    def new_model(self, obj: Any) -> Any:
        return None

    def update_model(self, model: Any, op: Op, outcome: tuple[str, Any], result: Any) -> None:
        pass

    def check(self, obj: Any, model: Any) -> int:
        """Invariants after a sequence; returns the number of calls made."""
        return 0

    def finish_sequence(self, seq: Sequence) -> int:
        """Invariants after a sequence (model in seq.model, None when several
        threads ran); returns the number of calls made."""
        if seq.concurrent:
            return self.loose_check(seq.obj)
        try:
            return self.check(seq.obj, seq.model)
        except RuntimeError:
            if seq._other is None:
                raise
            # the other thread owns the consumer side: it drains
            return seq._other.submit(self.check, seq.obj, seq.model).result(JOIN_TIMEOUT)

    def loose_check(self, obj: Any) -> int:
        """Invariants that hold whatever several threads did."""
        n = len(obj)
        cap = getattr(obj, "capacity", None)
        assert 0 <= n and (cap is None or n <= cap), f"len() is {n}, capacity {cap}"
        return 1

    def cleanup(self, obj: Any) -> None:
        """Best effort release of threads when a sequence failed part-way."""


def op(method: str, *args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any],
       ) -> st.SearchStrategy[Op]:
    """Ops calling ``method`` with drawn positional and keyword arguments;
    sometimes from the other thread."""
    return st.builds(
        lambda a, k, other: Op(method, tuple(a), dict(k), other),
        st.tuples(*args), st.fixed_dictionaries(kwargs), st.just(False),
    )


def owner_op(method: str, *args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any],
             ) -> st.SearchStrategy[Op]:
    """Like op(), but one call in five runs on the other thread."""
    return st.builds(
        lambda a, k, other: Op(method, tuple(a), dict(k), other),
        st.tuples(*args), st.fixed_dictionaries(kwargs), st.integers(0, 4).map(lambda i: i == 0),
    )


def bad_arity(*methods: str) -> st.SearchStrategy[Op]:
    """A method called with an unexpected keyword (must be a TypeError)."""
    return st.builds(lambda m, v: Op(m, (), {"bogus_kw": v}), st.sampled_from(methods), wild)


PSEUDO = st.sampled_from([Op("len"), Op("repr")])


# ---------------------------------------------------------------- FIFO model


@dataclass
class Model:
    capacity: int | None
    items: deque[Any] = field(default_factory=deque)
    closed: bool = False
    pushed: Counter[Any] = field(default_factory=Counter)  # concurrent runs: multiset
    popped: list[Any] = field(default_factory=list)


def key(x: Any) -> Any:
    return normalize(x)


def batch_of(value: Any) -> list[Any] | None:
    if isinstance(value, Recipe):
        return value.model_items()
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (str, bytes, range, dict)):
        return list(value)
    return None


# ---------------------------------------------------------------- user callables


def _sink(exc: BaseException) -> None:
    """error_handler for execute(): failures are expected here."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom("user function failed")


FUTURE_ERRORS = (Boom, TypeError, ValueError, Deadlock, PoolClosed, RuntimeError,
                 concurrent.futures.CancelledError, TimeoutError,
                 concurrent.futures.TimeoutError,  # not the builtin one before 3.11
                 ActorStopped, Full)
# Huge worker counts are refused (ValueError: every worker is a thread made
# at construction, at most fastconc._support.args.MAX_THREADS).
WORKERS = [1, 2, 3, 0, -1, 1.5, "2", True, IndexInt(2), BadIndex(), None, 4097, 2**31]


def _noop(*args: Any) -> None:
    pass


# ---------------------------------------------------------------- the runs


def construct(spec: Spec, ns: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The object, or None when the constructor raised an allowed exception."""
    allowed = spec.ctor_errors
    if huge_args(args, kwargs):
        allowed = (*allowed, MemoryError)
    try:
        return spec.make(ns, args, kwargs)
    except Exception as exc:
        check_exception(exc, allowed, f"{spec.name}(*{args!r}, **{kwargs!r})")
        return None


def run_sequence(spec: Spec, ns: Any, obj: Any, ops: list[Op]) -> tuple[list[Any], int]:
    """Run ops in order on this thread (a second thread for the ops marked
    so); returns the outcomes and the number of calls made."""
    seq = Sequence(spec, obj, ns)
    seq.model = spec.new_model(obj)
    outcomes: list[Any] = []
    try:
        for planned in ops:
            current = spec.prepare(seq, planned, False)
            outcome, result = seq.run(current)
            outcomes.append((current.method, outcome))
            if seq.model is not None:
                spec.update_model(seq.model, current, outcome, result)
        calls = seq.calls + spec.finish_sequence(seq)
    except BaseException:
        spec.cleanup(obj)
        raise
    finally:
        seq.close()
    return outcomes, calls


def api_fuzz(impl: Any, spec: Spec, tally: Any) -> None:
    """A random constructor call, then a random call sequence (some calls
    from a second thread): every call returns or raises an allowed, clearly
    worded exception, and the invariants and model hold afterwards."""
    calls = 0

    @fuzz_settings(spec.scale)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        nonlocal calls
        args, kwargs = data.draw(spec.ctor(), label="constructor")
        obj = construct(spec, impl, args, kwargs)
        calls += 1
        if obj is None:
            return
        ops = data.draw(st.lists(spec.ops(False), max_size=25), label="calls")
        _, n = run_sequence(spec, impl, obj, ops)
        calls += n

    run()
    tally.add(operations=calls)


def concurrent_fuzz(impl: Any, spec: Spec, tally: Any) -> None:
    """Several threads run random calls on one object at once (started
    together by a barrier): the same allowed exceptions, no hang, and the
    invariants hold afterwards."""
    calls = 0

    @fuzz_settings(spec.scale * 0.5)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        nonlocal calls
        args, kwargs = data.draw(spec.valid_ctor(), label="constructor")
        obj = spec.make(impl, args, kwargs)
        nthreads = data.draw(st.integers(2, 4), label="threads")
        plans = [data.draw(st.lists(spec.ops(True), min_size=1, max_size=12), label="calls")
                 for _ in range(nthreads)]
        seq = Sequence(spec, obj, impl)
        seq.concurrent = True
        barrier = threading.Barrier(nthreads)
        errors: list[BaseException] = []

        def worker(plan: list[Op]) -> None:
            try:
                barrier.wait(JOIN_TIMEOUT)
                for planned in plan:
                    seq.run(spec.prepare(seq, planned, True))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(plan,), daemon=True) for plan in plans]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(JOIN_TIMEOUT)
                assert not t.is_alive(), f"a thread calling {spec.name} hung"
            if errors:
                raise errors[0]
            calls += seq.calls + spec.finish_sequence(seq)
        except BaseException:
            spec.cleanup(obj)
            raise

    run()
    tally.add(operations=calls)


def backends_agree(spec: Spec, tally: Any) -> None:
    """One drawn sequence on both backends: every call has the same outcome
    (the same exception type, or an equal result)."""
    calls = 0

    @fuzz_settings(spec.scale * 0.5)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        nonlocal calls
        args, kwargs = data.draw(spec.ctor(), label="constructor")
        ops = data.draw(st.lists(spec.ops(False), max_size=25), label="calls")
        results = {}
        for backend in BACKENDS:
            ns = load_backend(backend)
            try:
                obj = spec.make(ns, args, kwargs)
            except Exception as exc:
                results[backend] = ("constructor raised", type(exc)), []
                continue
            results[backend] = ("constructed", None), run_sequence(spec, ns, obj, ops)[0]
            calls += len(ops) + 1
        (ctor_c, seq_c), (ctor_py, seq_py) = results["cython"], results["python"]
        if ctor_c != ctor_py and MemoryError in (ctor_c[1], ctor_py[1]):
            return  # an absurd size one backend allocates up front and the other lazily
        assert ctor_c == ctor_py, f"{spec.name}(*{args!r}, **{kwargs!r}): cython {ctor_c}, " \
                                  f"python {ctor_py}"
        for i, (c, p) in enumerate(zip(seq_c, seq_py, strict=False)):
            assert c == p, f"call {i} ({ops[i]!r}): cython {c}, python {p}"
        assert len(seq_c) == len(seq_py)

    run()
    tally.add(operations=calls)


FuzzTest = Callable[..., None]


def fuzz_tests(specs: list[Spec]) -> tuple[FuzzTest, FuzzTest, FuzzTest]:
    """The three fuzz tests over `specs`, for a test module to bind to its
    own names: ``test_api_fuzz, test_concurrent_fuzz, test_backends_agree =
    fuzz_tests(SPECS)``."""
    ids = [s.name for s in specs]
    deterministic = [s for s in specs if s.deterministic]

    @pytest.mark.thread_unsafe  # starts its own threads
    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_api_fuzz(impl: Any, spec: Spec, tally: Any) -> None:
        """A random constructor call, then a random call sequence (some calls
        from a second thread): every call returns or raises an allowed, clearly
        worded exception, and the invariants and model hold afterwards."""
        api_fuzz(impl, spec, tally)

    @pytest.mark.thread_unsafe  # starts its own threads, shares one object between them
    @pytest.mark.parametrize("spec", specs, ids=ids)
    def test_concurrent_fuzz(impl: Any, spec: Spec, tally: Any) -> None:
        """Several threads run random calls on one object at once (started
        together by a barrier): the same allowed exceptions, no hang, and the
        invariants hold afterwards."""
        concurrent_fuzz(impl, spec, tally)

    @pytest.mark.thread_unsafe  # starts its own threads
    @pytest.mark.parametrize("spec", deterministic, ids=[s.name for s in deterministic])
    @pytest.mark.compiled
    def test_backends_agree(spec: Spec, tally: Any) -> None:
        """One drawn sequence on both backends: every call has the same outcome
        (the same exception type, or an equal result)."""
        backends_agree(spec, tally)

    return test_api_fuzz, test_concurrent_fuzz, test_backends_agree
