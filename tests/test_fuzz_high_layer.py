"""API fuzz of the high layer (actors, pipeline, object pool, breaker): see
tests/fuzzkit.py for what is drawn and what must hold."""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import JOIN_TIMEOUT
from fuzzkit import (
    NEVER_RAISES,
    TIMEOUT_ARG,
    WORKERS,
    Boom,
    IndexInt,
    Op,
    Opaque,
    Sequence,
    Spec,
    _boom,
    _noop,
    bad_arity,
    bounded_timeouts,
    check_exception,
    fuzz_tests,
    items,
    iterables,
    materialize,
    op,
    run_sequence,
    small_ints,
)
from hypothesis import strategies as st

import fastconc
from fastconc import (
    ActorStopped,
    ChannelClosed,
    CircuitOpenError,
    Deadlock,
    Full,
    PoolClosed,
    ResourceUnavailable,
    Timeout,
)

# ---------------------------------------------------------------- the high layer


class Echo(fastconc.Actor):
    def handle_message(self, msg: Any) -> Any:
        if isinstance(msg, str):
            if msg == "boom":
                raise Boom("handler failed")
            if msg == "self-ask":
                return self.context.self_ref.ask("x", timeout=1)
            if msg == "stop":
                self.context.stop()
        return msg


def _not_an_actor() -> Any:
    return {}


ACTOR_ERRORS = (ActorStopped, Timeout, Full, Deadlock, Boom, TypeError, ValueError,
                OverflowError, RuntimeError)


class ActorSpec(Spec):
    """ActorSystem.spawn with hostile options, then tell/ask/stop on the refs."""

    name = "ActorSystem"
    scale = 0.3
    deterministic = False
    errors = {
        "spawn": (TypeError, ValueError, OverflowError, ActorStopped, Boom),
        "lookup": (TypeError,),
        "shutdown": (*TIMEOUT_ARG, Deadlock),
        "tell": ACTOR_ERRORS, "try_tell": ACTOR_ERRORS, "ask": ACTOR_ERRORS,
        "ask_async": ACTOR_ERRORS, "stop": NEVER_RAISES, ".is_alive": NEVER_RAISES,
        ".name": NEVER_RAISES, ".dead_letters": NEVER_RAISES,
    }

    def ctor(self):
        return st.tuples(st.tuples(st.sampled_from(WORKERS)), st.just({}))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.integers(1, 2)), st.just({}))

    def make(self, ns, args, kwargs):
        return fastconc.ActorSystem(*args, backend=ns, **kwargs)

    def ops(self, concurrent):
        msgs = st.one_of(st.sampled_from(["boom", "self-ask", "stop", "x"]), items)
        ref = st.integers(0, 3)
        spawn = st.builds(
            lambda f, kw: Op("spawn", (f,), kw),
            st.sampled_from([Echo, Echo, _not_an_actor, _boom, 5, None]),
            st.fixed_dictionaries({}, optional={
                "name": st.sampled_from(["a", "b", None, 5, ""]),
                "mailbox_size": st.one_of(st.integers(1, 3), st.sampled_from(
                    [0, -1, 2**31, 2**63, 2**64, 1.5, "x", None, True])),
                "supervision": st.sampled_from(["restart", "resume", "stop", "escalate",
                                                "bogus", None, 5]),
                "max_restarts": st.sampled_from([0, 1, 3, -1, True, 1.5, None]),
                "within": st.sampled_from([5.0, 0.001, 0, -1, math.nan, math.inf, "x", None]),
                "backoff": st.sampled_from([(0.0, 0.0), (0.001, 0.002), (1, 0), (-1, 0),
                                            (math.nan, math.nan), None, (1,), "ab",
                                            ("a", "b")]),
                "overflow": st.sampled_from(["block", "drop", "raise", "bogus", None]),
            }))
        return st.one_of(
            spawn, spawn,
            st.builds(lambda i, m: Op("tell", (i, m)), ref, msgs),
            st.builds(lambda i, m: Op("try_tell", (i, m)), ref, msgs),
            st.builds(lambda i, m, t: Op("ask", (i, m), {"timeout": t}), ref, msgs,
                      st.sampled_from([0, 0.001, 5.0, -1, math.nan, "x"])),
            st.builds(lambda i, m: Op("ask_async", (i, m)), ref, msgs),
            st.builds(lambda i: Op("stop", (i,)), ref),
            st.builds(lambda i: Op(".is_alive", (i,)), ref),
            st.builds(lambda i: Op(".name", (i,)), ref),
            op("lookup", st.sampled_from(["a", "b", None, 5, [], "zz"])),
            op(".dead_letters"),
            op("shutdown", st.sampled_from([0, 0.001, 5.0, -1, math.nan, "x"])),
        )

    def invoke(self, seq, op):
        system = seq.obj
        if op.method == "spawn":
            ref = system.spawn(*op.args, **op.kwargs)
            seq.refs.append(ref)
            return ref
        if op.method in ("tell", "try_tell", "ask", "ask_async", "stop", ".is_alive", ".name"):
            if not seq.refs:
                return None
            ref = seq.refs[op.args[0] % len(seq.refs)]
            if op.method.startswith("."):
                return getattr(ref, op.method[1:])
            result = getattr(ref, op.method)(*op.args[1:], **op.kwargs)
            if op.method == "ask_async":
                seq.futures.append(result)
            return result
        return super().invoke(seq, op)

    def normalize(self, result):
        return type(result).__name__

    def finish_sequence(self, seq: Sequence) -> int:
        assert seq.obj.shutdown(JOIN_TIMEOUT), "ActorSystem.shutdown() timed out"
        for future in seq.futures:
            exc = future.exception(JOIN_TIMEOUT)  # answered or failed, never left pending
            if exc is not None:
                check_exception(exc, ACTOR_ERRORS, f"ask_async's future ({exc!r})")
        for ref in seq.refs:
            assert not ref.is_alive
        return 1 + len(seq.futures)


class PipelineSpec(Spec):
    """Pipeline with hostile stages and options; start/send/recv/close/
    cancel/join/map/stats in any order."""

    name = "Pipeline"
    scale = 0.3
    deterministic = False
    ctor_errors = (TypeError, ValueError, OverflowError, Boom)
    run_errors = (ChannelClosed, Timeout, RuntimeError, Boom, TypeError, ValueError,
                  OverflowError)
    errors = {
        "start": (RuntimeError, ValueError, OverflowError), "send": run_errors,
        "recv": run_errors, "close": (RuntimeError,), "cancel": NEVER_RAISES,
        "join": (RuntimeError, *TIMEOUT_ARG), "map": run_errors, "stats": NEVER_RAISES,
        "repr": NEVER_RAISES, ".capacity": NEVER_RAISES,
    }

    def ctor(self):
        stage = st.one_of(
            st.sampled_from([abs, str, _boom, _noop, 5, "abc", None]),
            st.builds(lambda fn, w, o, e: ("Stage", fn, w, o, e),
                      st.sampled_from([abs, str, _boom, 5]),
                      st.sampled_from([None, 1, 2, 0, -1, 1.5, "2"]),
                      st.sampled_from([None, True, False, 1, "x"]),
                      st.sampled_from(["raise", "skip", lambda item, exc: -1, "bogus", 5])))
        return st.tuples(
            st.tuples(st.one_of(st.lists(stage, max_size=3), st.sampled_from([5, None, "ab"]))),
            st.fixed_dictionaries({}, optional={
                "capacity": st.one_of(st.integers(1, 4), st.sampled_from(
                    [0, -1, 2**31, 2**63, 2**64, 1.5, "x", None, True])),
                "workers": st.sampled_from([1, 2, 0, -1, 1.5, "2", True, 4097, 2**31]),
                "ordered": st.sampled_from([True, False, 1, None, "x"]),
                "name": st.sampled_from(["p", None, 5]),
            }))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.lists(st.sampled_from([abs, str, _boom]), min_size=1,
                                            max_size=2)),
                         st.fixed_dictionaries({"capacity": st.integers(1, 4),
                                                "workers": st.integers(1, 2)}))

    def make(self, ns, args, kwargs):
        stages = args[0]
        if isinstance(stages, list):
            built = []
            for s in stages:
                if isinstance(s, tuple):
                    _, fn, w, o, e = s
                    s = fastconc.Stage(fn, w, ordered=o, on_error=e)
                built.append(s)
            stages = built
        return fastconc.Pipeline(stages, backend=ns, **kwargs)

    def ops(self, concurrent):
        return st.one_of(
            op("start"),
            op("send", items, bounded_timeouts),
            op("recv", bounded_timeouts),
            op("recv", timeout=st.sampled_from([0, 0.001, 0.05])),
            op("close"), op("cancel"),
            op("join", st.sampled_from([0, 0.001, -1, math.nan, "x"])),
            op("map", iterables(small_ints)),
            op("stats"), op(".capacity"), st.just(Op("repr")),
        )

    def invoke(self, seq, op):
        if op.method == "map":
            return list(seq.obj.map(materialize(op.args[0])))
        return super().invoke(seq, op)

    def normalize(self, result):
        return type(result).__name__

    def finish_sequence(self, seq: Sequence) -> int:
        p = seq.obj
        p.cancel()
        if p._run is not None:
            assert p.join(JOIN_TIMEOUT), "the pipeline's run did not end after cancel()"
        return 2


class ObjPoolSpec(Spec):
    """ObjectPool: hostile hooks and options, get/put/invalidate/acquire of
    own, foreign and already-returned objects, close."""

    name = "ObjectPool"
    scale = 0.4
    deterministic = True
    get_errors = (ResourceUnavailable, PoolClosed, Boom, *TIMEOUT_ARG)
    errors = {
        "get": get_errors, "acquire": get_errors,
        "put": (ValueError, Boom, TypeError), "invalidate": (ValueError, TypeError),
        "prune": (Boom,), "close": (Boom,), "stats": NEVER_RAISES, ".closed": NEVER_RAISES,
        ".max_size": NEVER_RAISES, "repr": NEVER_RAISES,
    }
    ctor_errors = (TypeError, ValueError, OverflowError, Boom)

    def ctor(self):
        return st.tuples(
            st.tuples(st.sampled_from([Opaque, list, _boom, 5, None]),
                      # permits are made up front: sizes over 2**20 are refused
                      st.one_of(st.integers(1, 4), st.sampled_from(
                          [0, -1, 2**21, 2**31, 2**48, 2**63, 2**64, 1.5, "x", None, True,
                           IndexInt(2)]))),
            st.fixed_dictionaries({}, optional={
                "min_size": st.sampled_from([0, 1, 2, -1, 1.5, "x", True]),
                "timeout": st.sampled_from([0, 0.001, -1, math.nan, "x", True, None]),
                "validate": st.sampled_from([None, bool, lambda o: False, _boom, 5]),
                "reset": st.sampled_from([None, _noop, _boom, 5]),
                "max_uses": st.sampled_from([None, 1, 2, 0, -1, "x"]),
                "max_idle": st.sampled_from([None, 0.001, 1e9, 0, -1, math.nan, "x"]),
                "max_lifetime": st.sampled_from([None, 0.001, 1e9, 0, math.inf, "x"]),
                "destroy": st.sampled_from([None, _noop, 5]),
                "clock": st.sampled_from([None, lambda: 0.0, lambda: 1e300, 5]),
            }))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.just(Opaque), st.integers(1, 3)),
                         st.just({"timeout": 0.001}))

    def make(self, ns, args, kwargs):
        if kwargs.get("clock", 1) is None:
            kwargs = {k: v for k, v in kwargs.items() if k != "clock"}
        return fastconc.ObjectPool(*args, backend=ns, **kwargs)

    def ops(self, concurrent):
        timeouts = st.sampled_from([0, 0.001, -1, math.nan, "x", True, None])
        which = st.one_of(st.integers(0, 5), st.sampled_from(["foreign", "returned", None, 5]))
        return st.one_of(
            op("get"), op("get", timeouts), op("get", timeout=timeouts),
            st.builds(lambda w: Op("put", (w,)), which),
            st.builds(lambda w: Op("invalidate", (w,)), which),
            st.builds(lambda t, inv: Op("acquire", (t, inv)), timeouts, st.booleans()),
            op("prune"), op("close"), op("stats"), op(".closed"), op(".max_size"),
            st.just(Op("repr")), bad_arity("get", "put", "close"),
        )

    def _target(self, seq: Sequence, which: Any) -> Any:
        if isinstance(which, int) and not isinstance(which, bool):
            return seq.out[which % len(seq.out)] if seq.out else Opaque()
        if which == "foreign":
            return Opaque()
        if which == "returned":
            return seq.returned[-1] if seq.returned else Opaque()
        return which

    @staticmethod
    def _returned(seq: Sequence, target: Any) -> None:
        # By identity: the pool tracks objects so (two [] are different).
        for i, held in enumerate(seq.out):
            if held is target:
                del seq.out[i]
                seq.returned.append(target)
                break

    def _unbounded(self, seq: Sequence, timeout: Any) -> Any:
        if timeout is None and (seq.concurrent or seq.obj.stats().in_use >= seq.obj.max_size):
            return 0
        return timeout

    def invoke(self, seq, op):
        pool = seq.obj
        if op.method == "get":
            if "timeout" in op.kwargs or op.args:
                timeout = op.kwargs.get("timeout", op.args[0] if op.args else None)
            else:
                timeout = pool._timeout
            obj = pool.get(self._unbounded(seq, timeout))
            seq.out.append(obj)
            return obj
        if "bogus_kw" in op.kwargs:
            return super().invoke(seq, op)
        if op.method in ("put", "invalidate"):
            target = self._target(seq, op.args[0])
            try:
                getattr(pool, op.method)(target)
            except Boom:
                # reset() raised: the pool destroyed the object, which is no
                # longer checked out either.
                self._returned(seq, target)
                raise
            self._returned(seq, target)
            return None
        if op.method == "acquire":
            timeout, invalidate = op.args
            with pool.acquire(self._unbounded(seq, timeout)) as obj:
                if invalidate:
                    pool.invalidate(obj)
            return None
        return super().invoke(seq, op)

    def normalize(self, result):
        return type(result).__name__

    def finish_sequence(self, seq: Sequence) -> int:
        pool = seq.obj
        stats = pool.stats()
        assert 0 <= stats.in_use <= pool.max_size
        if not seq.concurrent:
            assert stats.in_use == len(seq.out), (stats, seq.out)
        for obj in list(seq.out):
            try:
                pool.put(obj)
            except (Boom, ValueError):  # reset() failed; or another thread put it back
                pass
        pool.close()
        assert pool.stats().in_use == 0
        return 3


class BreakerSpec(Spec):
    """CircuitBreaker: hostile options and calls (backend-independent, run
    once per backend all the same: it is cheap)."""

    name = "CircuitBreaker"
    scale = 0.5
    call_errors = (CircuitOpenError, Boom, TypeError)
    errors = {
        "call": call_errors, "decorated": call_errors, "with": call_errors,
        "reset": NEVER_RAISES, "force_open": NEVER_RAISES, ".state": NEVER_RAISES,
        "metrics": NEVER_RAISES, "add_listener": (TypeError,),
        "remove_listener": (ValueError,), "repr": NEVER_RAISES,
    }

    def ctor(self):
        secs = st.sampled_from([None, 0, 1e-320, 5e-324, 1e-300, 0.001, 1.0, 30.0, math.inf,
                                -1, math.nan, "x", True, 2**1024])
        return st.tuples(
            st.tuples(st.one_of(st.integers(1, 4), st.sampled_from([0, -1, 2**64, 1.5, "x"])),
                      st.sampled_from([0, 0.001, 30.0, math.inf, -1, math.nan, "x", 2**1024])),
            st.fixed_dictionaries({}, optional={
                "half_open_max_calls": st.sampled_from([1, 2, 0, -1, "x"]),
                "success_threshold": st.sampled_from([1, 2, 0, 3, None]),
                "exclude": st.sampled_from([(), (KeyError,), (lambda e: True,), (5,), 5,
                                            (int,)]),
                "window_size": st.sampled_from([None, 1, 3, 0, -1, 2**63, "x"]),
                "window_duration": secs,
                "failure_rate_threshold": st.sampled_from([0.5, 1, 0, 2, -1, math.nan, "x"]),
                "minimum_calls": st.sampled_from([1, 10, 0, -1, "x"]),
                "slow_call_duration": secs,
                "clock": st.sampled_from([None, lambda: 0.0, lambda: 1e300, 5]),
                "name": st.sampled_from([None, "b", 5]),
                "listeners": st.sampled_from([(), (_noop,), (5,), 5, "ab"]),
            }))

    def valid_ctor(self):
        return st.tuples(st.tuples(st.integers(1, 3), st.sampled_from([0, 0.001, 30.0])),
                         st.just({}))

    def make(self, ns, args, kwargs):
        if kwargs.get("clock", 1) is None:
            kwargs = {k: v for k, v in kwargs.items() if k != "clock"}
        return fastconc.CircuitBreaker(*args, **kwargs)

    def ops(self, concurrent):
        fns = st.sampled_from(["ok", "boom", "keyerror", 5])
        return st.one_of(
            op("call", fns), op("call", fns), op("decorated", fns), op("with", fns),
            op("reset"), op("force_open"), op(".state"), op("metrics"),
            op("add_listener", st.sampled_from([_noop, 5])),
            op("remove_listener", st.sampled_from([_noop, _boom])),
            st.just(Op("repr")),
        )

    def invoke(self, seq, op):
        b = seq.obj
        if op.method in ("call", "decorated", "with"):
            fn = {"ok": _noop, "boom": _boom, "keyerror": _keyerror}.get(op.args[0], op.args[0])
            if op.method == "call":
                return b.call(fn)
            if op.method == "decorated":
                return b(fn)()
            with b:
                if callable(fn):
                    fn()
            return None
        return super().invoke(seq, op)

    def allowed(self, op):
        allowed = super().allowed(op)
        if op.method in ("call", "decorated", "with") and op.args[0] == "keyerror":
            allowed = (*allowed, KeyError)  # the user function's own exception
        return allowed

    def loose_check(self, obj):
        return self.check(obj, None)

    def check(self, obj, model):
        m = obj.metrics()
        assert obj.state in fastconc.CircuitState
        assert m.calls >= m.failures >= 0
        return 2


def _keyerror() -> None:
    raise KeyError("user function's KeyError")


ActorSpec.cleanup = staticmethod(lambda obj: obj.shutdown(0))  # type: ignore[method-assign]
PipelineSpec.cleanup = staticmethod(lambda obj: obj.cancel())  # type: ignore[method-assign]
ObjPoolSpec.cleanup = staticmethod(lambda obj: obj.close())  # type: ignore[method-assign]

SPECS: list[Spec] = [ActorSpec(), PipelineSpec(), ObjPoolSpec(), BreakerSpec()]
test_api_fuzz, test_concurrent_fuzz, test_backends_agree = fuzz_tests(SPECS)


@pytest.mark.parametrize("ops", [
    [Op("get"), Op("put", (0,))],
    [Op("get"), Op("put", (0,)), Op("put", ("returned",)), Op("get"), Op("invalidate", (0,))],
], ids=["put", "put-again-then-invalidate"])
def test_objpool_model_when_reset_raises(impl, ops: list[Op]) -> None:
    """A sequence the draws reach only now and then, run every time: put()
    whose reset() raises destroys the object, so the model must no longer
    count it as checked out (a model bug found by the asan env's run)."""
    spec = next(s for s in SPECS if s.name == "ObjectPool")
    pool = spec.make(impl, (Opaque, 1), {"reset": _boom})
    outcomes, _ = run_sequence(spec, impl, pool, ops)
    assert outcomes[1] == ("put", ("raised", Boom))
    assert pool.stats().destroyed >= 1
