"""API fuzz of the primitives (Channel, Queue, the rings, the deque, the
pool): see tests/fuzzkit.py for what is drawn and what must hold."""

from __future__ import annotations

import array
import concurrent.futures
import math
from dataclasses import dataclass
from typing import Any

from conftest import JOIN_TIMEOUT
from fuzzkit import (
    FUTURE_ERRORS,
    NEVER_RAISES,
    PSEUDO,
    SENTINEL,
    TIMEOUT_ARG,
    WORKERS,
    BadBool,
    Boom,
    Model,
    Op,
    Recipe,
    Sequence,
    Spec,
    _boom,
    _noop,
    _sink,
    any_timeouts,
    bad_arity,
    batch_of,
    bounded_timeouts,
    check_exception,
    fuzz_tests,
    is_unbounded,
    items,
    iterables,
    key,
    materialize,
    np,
    op,
    owner_op,
    ring_sizes,
    sizes,
    small_ints,
    small_sizes,
    wild,
)
from hypothesis import strategies as st

from fastconc import ChannelClosed, Deadlock, Empty, Full, PoolClosed, Timeout


class RingSpec(Spec):
    """RingBuffer and SpscRingBuffer."""

    default_errors = (TypeError,)

    def __init__(self, kind: str) -> None:
        self.name = kind
        self.spsc = kind == "SpscRingBuffer"
        owner = (RuntimeError,) if self.spsc else ()
        self.errors = {
            "push": (TypeError, *owner),
            "pop": (Empty, TypeError, *owner),
            "push_many": (TypeError, OverflowError, Boom, *owner),
            "pop_many": (TypeError, ValueError, OverflowError, Boom, *owner),
            "len": NEVER_RAISES, "repr": NEVER_RAISES, "is_empty": NEVER_RAISES,
            "is_full": NEVER_RAISES, ".capacity": NEVER_RAISES,
        }

    def ctor(self):
        return st.tuples(st.tuples(ring_sizes), st.just({}))

    def valid_ctor(self):
        return st.tuples(st.tuples(small_sizes), st.just({}))

    def make(self, ns, args, kwargs):
        return getattr(ns, self.name)(*args, **kwargs)

    def ops(self, concurrent):
        mk = owner_op if self.spsc else op
        return st.one_of(
            mk("push", items),
            mk("pop"),
            mk("pop", st.just(SENTINEL)),
            mk("push_many", iterables()),
            mk("pop_many", sizes),
            st.builds(lambda n: Op("pop_many", (n,)), st.sampled_from([2**31, 2**63 - 1, 2**64])),
            op("is_empty"), op("is_full"), op(".capacity"), PSEUDO,
            bad_arity("push", "pop_many", "is_empty"),
        )

    def new_model(self, obj):
        return Model(obj.capacity)

    def update_model(self, model, op, outcome, result):
        if outcome[0] != "returned":
            return
        if op.method == "push":
            if result:
                model.items.append(op.args[0])
            model.pushed[key(op.args[0])] += 1
        elif op.method == "push_many":
            batch = batch_of(op.args[0])
            assert batch is not None, f"push_many({op.args[0]!r}) accepted a non-iterable"
            model.items.extend(batch[:result])
            for x in batch:
                model.pushed[key(x)] += 1
        elif op.method == "pop":
            got = [] if result is SENTINEL else [result]
            model.popped.extend(got)
            if model.capacity is not None and got:
                want = model.items.popleft()
                assert key(result) == key(want), f"pop() gave {result!r}, pushed {want!r}"
        elif op.method == "pop_many":
            model.popped.extend(result)
            for x in result:
                want = model.items.popleft()
                assert key(x) == key(want), f"pop_many gave {x!r}, pushed {want!r}"

    def check(self, obj, model):
        cap = obj.capacity
        assert cap >= 2 and cap & (cap - 1) == 0
        n = len(obj)
        assert 0 <= n <= cap
        assert obj.is_empty() == (n == 0) and obj.is_full() == (n == cap)
        assert n == len(model.items), f"len() is {n}, the model holds {len(model.items)}"
        rest = obj.pop_many(cap)
        assert [key(x) for x in rest] == [key(x) for x in model.items]
        assert len(obj) == 0
        return 5


class TypedSpec(RingSpec):
    """TypedRingBuffer, every typecode."""

    name = "TypedRingBuffer"

    def __init__(self) -> None:
        self.spsc = True
        self.errors = {
            "push": (TypeError, OverflowError, ValueError, Boom, RuntimeError),
            "pop": (Empty, TypeError, RuntimeError),
            "push_many": (TypeError, ValueError, BufferError, RuntimeError),
            "pop_into": (TypeError, ValueError, BufferError, RuntimeError),
            "pop_many": (TypeError, ValueError, OverflowError, Boom, RuntimeError),
            "len": NEVER_RAISES, "repr": NEVER_RAISES, "is_empty": NEVER_RAISES,
            "is_full": NEVER_RAISES, ".capacity": NEVER_RAISES, ".typecode": NEVER_RAISES,
            ".itemsize": NEVER_RAISES,
        }

    def ctor(self):
        return st.tuples(st.tuples(ring_sizes, st.one_of(st.sampled_from(list("bBhHiIlLqQfd")),
                                                  st.sampled_from(["u", "w", "c", "", "dd", "D",
                                                                   "?", None, 100, b"d"]))),
                         st.just({}))

    def valid_ctor(self):
        return st.tuples(st.tuples(small_sizes, st.sampled_from(list("bBhHiIlLqQfd"))),
                         st.just({}))

    def ops(self, concurrent):
        numbers = st.one_of(
            st.integers(-300, 300),
            st.sampled_from([-129, -128, 127, 128, 255, 256, -32769, 32767, 32768, 65535, 65536,
                             2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
                             2**64, -2**63, -2**63 - 1, 2**1024, True]),
            st.floats(allow_nan=True, allow_infinity=True),
            wild,
        )
        return st.one_of(
            owner_op("push", numbers),
            owner_op("pop"),
            owner_op("pop", st.just(SENTINEL)),
            owner_op("push_many", buffers(writable=False)),
            owner_op("pop_into", buffers(writable=True)),
            owner_op("pop_many", sizes),
            op("is_empty"), op("is_full"), op(".capacity"), op(".typecode"), op(".itemsize"),
            PSEUDO, bad_arity("push", "pop_into"),
        )

    def new_model(self, obj):
        return Model(obj.capacity)

    def update_model(self, model, op, outcome, result):
        if outcome[0] != "returned":
            return
        tc = self.typecode
        if op.method == "push":
            if result:
                one = array.array(tc)
                one.append(op.args[0])
                model.items.append(one[0])
        elif op.method == "push_many":
            data = op.args[0].last_bytes
            got = array.array(tc)
            got.frombytes(data[:result * got.itemsize])
            model.items.extend(got)
        elif op.method == "pop":
            if result is not SENTINEL:
                want = model.items.popleft()
                assert key(result) == key(want), f"pop() gave {result!r}, pushed {want!r}"
        elif op.method in ("pop_many", "pop_into"):
            if op.method == "pop_into":
                out = array.array(tc)
                out.frombytes(op.args[0].last_view.tobytes()[:result * out.itemsize])
                assert len(out) == result
            else:
                out = result
                assert isinstance(out, array.array) and out.typecode == tc
            for x in out:
                want = model.items.popleft()
                assert key(x) == key(want), f"{op.method} gave {x!r}, pushed {want!r}"

    def make(self, ns, args, kwargs):
        ring = ns.TypedRingBuffer(*args, **kwargs)
        self.typecode = ring.typecode
        return ring


@dataclass(frozen=True, eq=False)
class Buffer(Recipe):
    """A buffer-protocol object (or not) for push_many / pop_into."""

    shape: str
    typecode: str
    n: int
    fill: int = 1

    def make(self) -> Any:
        tc, n = self.typecode, self.n
        values = [(i * self.fill) % 100 for i in range(n)]
        if self.shape == "array":
            obj: Any = array.array(tc, values)
        elif self.shape == "bytes":
            obj = bytes(values)
        elif self.shape == "bytearray":
            obj = bytearray(values)
        elif self.shape == "view":
            obj = memoryview(array.array(tc, values))
        elif self.shape == "readonly":
            obj = memoryview(array.array(tc, values).tobytes()).cast(tc)
        elif self.shape == "strided":
            obj = memoryview(array.array(tc, values * 2))[::2]
        elif self.shape == "bytes_view":
            obj = memoryview(array.array(tc, values)).cast("B")
        elif self.shape == "released":
            obj = memoryview(array.array(tc, values))
            obj.release()
        elif self.shape == "2d":
            obj = memoryview(array.array(tc, values * 2)).cast("B").cast(tc, (2, n))
        elif self.shape in ("np_native", "np_swapped", "np_bool", "np_complex", "np_f16"):
            dtype = {"np_native": tc, "np_swapped": np.dtype(tc).newbyteorder(),
                     "np_bool": "?", "np_complex": "c16", "np_f16": "e"}[self.shape]
            obj = np.array(values, dtype=dtype)
        elif self.shape == "np_fortran":
            obj = np.asfortranarray(np.array(values * 2, dtype=tc).reshape(2, n))
        elif self.shape == "np_strided":
            obj = np.array(values * 2, dtype=tc)[::2]
        elif self.shape == "np_0d":
            obj = np.array(values[0] if values else 0, dtype=tc)
        else:
            obj = {"list": values, "none": None, "int": n, "str": "abc"}[self.shape]
        try:
            view = memoryview(obj)
        except (TypeError, ValueError):
            view = None
        object.__setattr__(self, "last_view", view)
        object.__setattr__(self, "last_bytes", view.tobytes() if view is not None else b"")
        return obj

    def __repr__(self) -> str:
        return f"Buffer({self.shape}, {self.typecode!r}, n={self.n})"


BUFFER_SHAPES = ["array", "array", "array", "bytes", "bytearray", "view", "readonly", "strided",
                 "bytes_view", "released", "2d", "list", "none", "int", "str"]
if np is not None:
    BUFFER_SHAPES += ["np_native", "np_native", "np_swapped", "np_bool", "np_complex", "np_f16",
                      "np_fortran", "np_strided", "np_0d"]


def buffers(writable: bool) -> st.SearchStrategy[Buffer]:
    return st.builds(Buffer, st.sampled_from(BUFFER_SHAPES),
                     st.sampled_from(list("bBhHiIlLqQfd")), st.integers(0, 12),
                     st.integers(1, 7))


class ChannelSpec(Spec):
    name = "Channel"
    errors = {
        "send": (ChannelClosed, Timeout, *TIMEOUT_ARG),
        "try_send": (ChannelClosed, TypeError),
        "send_many": (ChannelClosed, Timeout, *TIMEOUT_ARG),
        "recv": (ChannelClosed, Timeout, *TIMEOUT_ARG),
        "try_recv": (ChannelClosed, Empty, TypeError),
        "recv_many": (ChannelClosed, Timeout, *TIMEOUT_ARG),
        "close": (TypeError,), "drain": NEVER_RAISES, "with": NEVER_RAISES,
        "len": NEVER_RAISES, "repr": NEVER_RAISES, ".capacity": NEVER_RAISES,
        ".closed": NEVER_RAISES,
    }

    def ctor(self):
        return st.tuples(st.tuples(sizes), st.just({}))

    def valid_ctor(self):
        return st.tuples(st.tuples(small_sizes), st.just({}))

    def make(self, ns, args, kwargs):
        return ns.Channel(*args, **kwargs)

    def ops(self, concurrent):
        t = bounded_timeouts if concurrent else any_timeouts
        return st.one_of(
            op("send", items, t),
            op("send", items, timeout=t),
            op("try_send", items),
            op("send_many", iterables(), t),
            op("recv", t),
            op("recv", timeout=t),
            op("try_recv"),
            op("recv_many", sizes, t),
            op("close"),
            op(".capacity"), op(".closed"), PSEUDO,
            st.just(Op("drain")), st.just(Op("with")),
            bad_arity("send", "recv", "try_recv", "recv_many", "close"),
        )

    def invoke(self, seq, op):
        if op.method == "drain":  # closed: iterating ends once drained
            seq.obj.close()
            return list(seq.obj)
        if op.method == "with":
            with seq.obj as ch:
                assert ch is seq.obj
            return None
        return super().invoke(seq, op)

    def _timeout(self, op: Op) -> tuple[Any, bool]:
        if "timeout" in op.kwargs:
            return op.kwargs["timeout"], True
        positional = 1 if op.method == "recv" else 2  # where timeout is, counting from 1
        return (op.args[positional - 1] if len(op.args) >= positional else None), False

    def prepare(self, seq, op, concurrent):
        if op.method not in ("send", "send_many", "recv", "recv_many") or "bogus_kw" in op.kwargs:
            return op
        timeout, as_kw = self._timeout(op)
        if not is_unbounded(timeout):
            return op
        ch = seq.obj
        if op.method in ("send", "send_many"):
            batch = batch_of(op.args[0]) if op.method == "send_many" else [op.args[0]]
            n = 1 if batch is None else len(batch)
            safe = ch.closed or len(ch) + n <= ch.capacity
        else:
            safe = ch.closed or len(ch) > 0
        if safe:
            return op
        if as_kw:
            return Op(op.method, op.args, {**op.kwargs, "timeout": 0}, op.other_thread)
        return Op(op.method, (*op.args[:-1], 0), op.kwargs, op.other_thread)

    def new_model(self, obj):
        return Model(obj.capacity)

    def update_model(self, model, op, outcome, result):
        if op.method in ("close", "drain", "with") and outcome[0] == "returned":
            model.closed = True
        if outcome[0] != "returned":
            return
        if op.method in ("send", "try_send"):
            if op.method == "send" or result:
                model.items.append(op.args[0])
        elif op.method == "send_many":
            batch = batch_of(op.args[0])
            assert batch is not None
            model.items.extend(batch[:result])
        elif op.method in ("recv", "try_recv"):
            want = model.items.popleft()
            assert key(result) == key(want), f"{op.method} gave {result!r}, sent {want!r}"
        elif op.method in ("recv_many", "drain"):
            assert op.method == "drain" or result, "recv_many returned an empty list"
            for x in result:
                want = model.items.popleft()
                assert key(x) == key(want), f"{op.method} gave {x!r}, sent {want!r}"

    def check(self, obj, model):
        n = len(obj)
        assert 0 <= n <= obj.capacity
        assert obj.closed == model.closed
        assert n == len(model.items), f"len() is {n}, the model holds {len(model.items)}"
        obj.close()
        assert [key(x) for x in obj] == [key(x) for x in model.items]
        return 3


class QueueSpec(Spec):
    name = "Queue"
    errors = {
        "put": (ChannelClosed, Full, *TIMEOUT_ARG),
        "get": (ChannelClosed, Empty, *TIMEOUT_ARG),
        "put_nowait": (ChannelClosed, Full, TypeError),
        "get_nowait": (ChannelClosed, Empty, TypeError),
        "task_done": (ValueError, TypeError),
        "join": (TypeError,),
        "shutdown": (TypeError, Boom),
        "qsize": NEVER_RAISES, "empty": NEVER_RAISES, "full": NEVER_RAISES,
        ".maxsize": NEVER_RAISES, ".is_shutdown": NEVER_RAISES,
        ".unfinished_tasks": NEVER_RAISES, "repr": NEVER_RAISES,
    }

    def ctor(self):
        return st.one_of(st.tuples(st.tuples(sizes), st.just({})),
                         st.tuples(st.just(()), st.fixed_dictionaries({"maxsize": sizes})),
                         st.just(((), {})))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.integers(-1, 6)), st.just({}))

    def make(self, ns, args, kwargs):
        return ns.Queue(*args, **kwargs)

    def ops(self, concurrent):
        t = bounded_timeouts if concurrent else any_timeouts
        blocks = st.sampled_from([True, False, 0, 1, [], "x", None, BadBool()])
        return st.one_of(
            op("put", items, blocks, t),
            op("put", items, timeout=t),
            op("put", items, block=blocks, timeout=t),
            op("get", blocks, t),
            op("get", timeout=t),
            op("put_nowait", items),
            op("get_nowait"),
            op("task_done"),
            op("join"),
            op("shutdown"),
            op("shutdown", st.sampled_from([True, False, 0, 1, None, "", BadBool(), []])),
            op("qsize"), op("empty"), op("full"), op(".maxsize"), op(".is_shutdown"),
            op(".unfinished_tasks"), st.just(Op("repr")),
            bad_arity("put", "get", "task_done", "shutdown", "qsize"),
        )

    def prepare(self, seq, op, concurrent):
        q = seq.obj
        if op.method == "join":
            return op if not concurrent and q.unfinished_tasks == 0 else Op("qsize")
        if op.method not in ("put", "get") or "bogus_kw" in op.kwargs:
            return op
        if "timeout" in op.kwargs:
            timeout = op.kwargs["timeout"]
        else:
            timeout = op.args[-1] if len(op.args) == (3 if op.method == "put" else 2) else None
        if not is_unbounded(timeout):
            return op
        if op.method == "put":
            safe = q.is_shutdown or q.maxsize <= 0 or q.qsize() < q.maxsize
        else:
            safe = q.is_shutdown or q.qsize() > 0
        if safe:
            return op
        return Op(op.method, op.args[:1] if op.method == "put" else (), {"timeout": 0},
                  op.other_thread)

    def new_model(self, obj):
        return Model(None)

    def loose_check(self, obj):
        n = obj.qsize()
        assert n >= 0 and (obj.maxsize <= 0 or n <= obj.maxsize)
        assert obj.unfinished_tasks >= 0
        return 2

    def update_model(self, model, op, outcome, result):
        if outcome[0] != "returned":
            return
        if op.method in ("put", "put_nowait"):
            model.items.append(op.args[0])
        elif op.method in ("get", "get_nowait"):
            want = model.items.popleft()
            assert key(result) == key(want), f"{op.method} gave {result!r}, put {want!r}"
        elif op.method == "shutdown":
            model.closed = True
            if op.args and op.args[0]:
                model.items.clear()

    def check(self, obj, model):
        assert obj.qsize() == len(model.items)
        assert obj.is_shutdown == model.closed
        assert obj.unfinished_tasks >= 0
        out = []
        while True:
            try:
                out.append(obj.get_nowait())
            except (Empty, ChannelClosed):
                break
        assert [key(x) for x in out] == [key(x) for x in model.items]
        return 4


class DequeSpec(Spec):
    name = "WorkStealingDeque"
    errors = {
        "push": (RuntimeError, TypeError),
        "push_burst": (RuntimeError,),
        "pop": (Empty, RuntimeError, TypeError),
        "steal": (Empty, TypeError),
        "len": NEVER_RAISES, "is_empty": NEVER_RAISES, "repr": NEVER_RAISES,
    }
    ctor_errors = (TypeError,)

    def ctor(self):
        return st.one_of(st.just(((), {})), st.tuples(st.tuples(wild), st.just({})),
                         st.tuples(st.just(()), st.fixed_dictionaries({"capacity": wild})))

    def valid_ctor(self):
        return st.just(((), {}))

    def make(self, ns, args, kwargs):
        return ns.WorkStealingDeque(*args, **kwargs)

    def ops(self, concurrent):
        return st.one_of(
            owner_op("push", items),
            st.builds(lambda n: Op("push_burst", (n,)), st.integers(1, 300)),
            owner_op("pop"),
            op("steal"), op("steal"), op("is_empty"), PSEUDO,
            bad_arity("push", "pop", "steal"),
            st.builds(lambda x: Op("pop", (x,)), wild),
        )

    def invoke(self, seq, op):
        if op.method == "push_burst":
            for i in range(op.args[0]):
                seq.obj.push(i)
            return None
        return super().invoke(seq, op)

    def new_model(self, obj):
        return Model(None)

    def update_model(self, model, op, outcome, result):
        if outcome[0] != "returned":
            return
        if op.method == "push":
            model.items.append(op.args[0])
        elif op.method == "push_burst":
            model.items.extend(range(op.args[0]))
        elif op.method == "pop":
            want = model.items.pop()
            assert key(result) == key(want), f"pop() gave {result!r}, pushed {want!r}"
        elif op.method == "steal":
            want = model.items.popleft()
            assert key(result) == key(want), f"steal() gave {result!r}, pushed {want!r}"

    def check(self, obj, model):
        assert len(obj) == len(model.items)
        out = []
        while True:
            try:
                out.append(obj.steal())
            except Empty:
                break
        assert [key(x) for x in out] == [key(x) for x in model.items]
        assert obj.is_empty()
        return 2


# ---------------------------------------------------------------- thread pools


class PoolSpec(Spec):
    """WorkStealingPool: submit/execute/map/join/shutdown with hostile functions
    and arguments; at the end every future must be done (run or cancelled)."""

    name = "WorkStealingPool"
    scale = 0.4
    deterministic = False
    ctor_errors = (TypeError, ValueError, OverflowError, Boom)
    errors = {
        "submit": (PoolClosed, RuntimeError, TypeError),
        "execute": (PoolClosed, RuntimeError, TypeError),
        "map": (PoolClosed, RuntimeError, TypeError, ValueError, OverflowError, TimeoutError,
                concurrent.futures.TimeoutError,
                *FUTURE_ERRORS),
        "join": (Deadlock, PoolClosed, *TIMEOUT_ARG),
        "shutdown": (TypeError, Boom),
        "stats": NEVER_RAISES, ".max_workers": NEVER_RAISES, "is_worker_thread": NEVER_RAISES,
        "create_future": NEVER_RAISES, "repr": NEVER_RAISES,
    }

    def ctor(self):
        return st.tuples(
            st.tuples(st.sampled_from(WORKERS)),
            st.fixed_dictionaries({}, optional={
                "thread_name_prefix": st.sampled_from(["", "fz", 5, None]),
                "initializer": st.sampled_from([None, _noop, abs, 5]),
                "initargs": st.sampled_from([(), (1,), (-1,), 5, None, "a", [2]]),
                "error_handler": st.sampled_from([_sink, 5, "x"]),
            }))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.integers(1, 3)), st.just({"error_handler": _sink}))

    def make(self, ns, args, kwargs):
        kwargs = {"error_handler": _sink, **kwargs}
        return ns.WorkStealingPool(*args, **kwargs)

    def ops(self, concurrent):
        fns = st.sampled_from(["abs", "boom", "noncallable", "join0", "nested", "shutdown_nowait",
                               "stats"])
        return st.one_of(
            st.builds(lambda f, a: Op("submit", (f, *a)), fns, st.lists(items, max_size=2)),
            st.builds(lambda f, a: Op("execute", (f, *a)), fns, st.lists(items, max_size=2)),
            st.builds(lambda f, it, kw: Op("map", (f, it), kw), fns, iterables(small_ints),
                      st.fixed_dictionaries({}, optional={
                          "timeout": st.sampled_from([None, 5.0, 0, -1, math.nan, "x"]),
                          "chunksize": st.sampled_from([None, 1, 2, 0, -1, 1.5, "x", 2**63])})),
            op("join", bounded_timeouts),
            op("join", timeout=bounded_timeouts),
            st.builds(lambda w, c: Op("shutdown", (w,), {"cancel_futures": c}),
                      st.sampled_from([False, True, 0, None, BadBool()]),
                      st.sampled_from([False, True, BadBool()])),
            op("stats"), op(".max_workers"), op("is_worker_thread"), op("create_future"),
            st.just(Op("repr")), bad_arity("join", "stats", "shutdown"),
        )

    def _fn(self, pool: Any, name: Any) -> Any:
        return {
            "abs": abs, "boom": _boom, "noncallable": 5, "stats": pool.stats,
            "join0": lambda *a: pool.join(0),
            "nested": lambda *a: pool.submit(abs, -1).result(JOIN_TIMEOUT),
            "shutdown_nowait": lambda *a: pool.shutdown(wait=False),
        }.get(name, name)

    def invoke(self, seq, op):
        pool = seq.obj
        if op.method in ("submit", "execute", "map"):
            fn = self._fn(pool, op.args[0])
            rest = tuple(materialize(a) for a in op.args[1:])
            if op.method == "submit":
                future = pool.submit(fn, *rest)
                seq.futures.append(future)
                return future
            if op.method == "execute":
                return pool.execute(fn, *rest)
            return list(pool.map(fn, *rest, **op.kwargs))
        if op.method == "create_future":
            return pool.create_future().cancel()
        return super().invoke(seq, op)

    def normalize(self, result):
        return type(result).__name__

    def check(self, obj, model):
        return 0

    def finish_sequence(self, seq: Sequence) -> int:
        pool = seq.obj
        pool.shutdown(wait=True)
        for future in seq.futures:
            # shutdown(wait=True) returned: every task ran or was cancelled.
            assert future.done(), f"{future!r} still pending after shutdown(wait=True)"
            if not future.cancelled():
                exc = future.exception(0)
                if exc is not None:
                    check_exception(exc, FUTURE_ERRORS, f"a task's future ({exc!r})")
        return 1 + len(seq.futures)


def _pool_cleanup(obj: Any) -> None:
    obj.shutdown(wait=False, cancel_futures=True)


PoolSpec.cleanup = staticmethod(_pool_cleanup)  # type: ignore[method-assign]

SPECS: list[Spec] = [ChannelSpec(), QueueSpec(), RingSpec("RingBuffer"),
                     RingSpec("SpscRingBuffer"), TypedSpec(), DequeSpec(), PoolSpec()]
test_api_fuzz, test_concurrent_fuzz, test_backends_agree = fuzz_tests(SPECS)
