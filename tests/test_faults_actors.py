"""Fault injection in actors: exceptions and misbehaviour from user code,
on both backends.  What is covered and how: tests/faultkit.py and the
fault-injection row of docs/RELIABILITY.md."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import watch_stopped
from faultkit import (
    Boom,
    T,
)

from fastconc import (
    Actor,
    ActorStopped,
    ActorSystem,
)

pytestmark = pytest.mark.timeout(120)


# ================================================================ actors

@contextlib.contextmanager
def _system(impl) -> Iterator[ActorSystem]:  # noqa: ANN001
    """An ActorSystem whose shutdown is bounded (and must succeed)."""
    system = ActorSystem(2, backend=impl)
    try:
        yield system
    except BaseException:
        system.shutdown(T)
        raise
    assert system.shutdown(T), "the actor system did not shut down"




class Recorder(Actor):
    """Records every message it handles (shared list: survives restarts);
    raises ``exc`` for the messages in ``bad``."""

    def __init__(self, log: list, bad: frozenset = frozenset(),
                 exc: type[BaseException] = Boom, failures: list | None = None) -> None:
        self.log = log
        self.bad = bad
        self.exc = exc
        self.failures = failures
        self.instance = object()

    def handle_message(self, msg):  # noqa: ANN001, ANN201
        if msg == "sync":
            return len(self.log)
        if msg == "whoami":
            return self.instance
        if msg in self.bad:
            raise self.exc(msg)
        self.log.append(msg)
        return msg

    def on_failure(self, exc: BaseException) -> None:
        if self.failures is not None:
            self.failures.append(exc)


def _mine(system: ActorSystem, ref) -> list:  # noqa: ANN001
    return [m for r, m in system.dead_letters if r is ref]


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("strategy", ["resume", "restart"])
def test_actor_handler_failures_on_tell(impl, tally, strategy, exc_type):
    """handle_message raising (any kind) for a tell: on_failure hears it,
    supervision acts (resume keeps the instance, restart makes a new one),
    and every other message, before and after, is handled exactly once and
    in order.  Other actors on the same workers are not disturbed."""
    n = 200
    bad = frozenset(range(5, n, 20))
    log: list[int] = []
    failures: list[BaseException] = []
    other_log: list[int] = []
    with _system(impl) as system:
        ref = system.spawn(Recorder, log, bad, exc_type, failures, supervision=strategy,
                           max_restarts=len(bad) + 1, within=60.0)
        other = system.spawn(Recorder, other_log)
        before = ref.ask("whoami", timeout=T)
        for i in range(n):
            ref.tell(i)
            other.tell(i)
        assert ref.ask("sync", timeout=T) == n - len(bad)
        assert other.ask("sync", timeout=T) == n
        assert (ref.ask("whoami", timeout=T) is before) == (strategy == "resume")
        assert ref.is_alive
    assert log == [i for i in range(n) if i not in bad]
    assert other_log == list(range(n))
    assert sorted(e.args[0] for e in failures) == sorted(bad)
    assert all(type(e) is exc_type for e in failures)
    tally.add(faults=len(bad), operations=2 * n + 5, items_checked=2 * n)


def test_actor_stop_and_escalate_strategies_account_for_every_message(impl, tally):
    """supervision="stop": the failing actor stops; every message is either
    handled or a dead letter, once.  supervision="escalate": the parent's
    on_failure hears the child's error and the child stops likewise."""
    n = 100
    log: list[int] = []
    with _system(impl) as system:
        gate = threading.Event()

        class Slow(Recorder):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                if msg == 0:
                    gate.wait(T)  # hold the turn so the rest queue up
                return super().handle_message(msg)

        ref = system.spawn(Slow, log, frozenset({10}), supervision="stop")
        stopped = watch_stopped(system, ref)
        for i in range(n):
            ref.tell(i)
        gate.set()
        assert stopped.wait(T)
        for i in range(n, n + 10):
            ref.tell(i)  # after the stop: dead letters
        with pytest.raises(ActorStopped):
            ref.ask("sync", timeout=T)
        dead = _mine(system, ref)
        assert log == list(range(10))
        assert sorted(log + dead) == [i for i in range(n + 10) if i != 10]

        parent_failures: list[BaseException] = []
        child_log: list[int] = []
        spawned = threading.Event()
        holder: list = []

        class Parent(Actor):
            def on_start(self) -> None:
                holder.append(self.context.spawn(Recorder, child_log, frozenset({"x"}),
                                                 supervision="escalate"))
                spawned.set()

            def handle_message(self, msg):  # noqa: ANN001, ANN201
                return msg

            def on_failure(self, exc: BaseException) -> None:
                parent_failures.append(exc)

        parent = system.spawn(Parent, supervision="resume")
        assert spawned.wait(T)
        child = holder[0]
        child_stopped = watch_stopped(system, child)
        for msg in (1, 2, "x", 3):
            child.tell(msg)
        assert child_stopped.wait(T)
        assert parent.ask("still here", timeout=T) == "still here"
        assert [str(e) for e in parent_failures] == ["x"]
        assert child_log == [1, 2] and _mine(system, child) in ([3], [])
        assert sorted(child_log + _mine(system, child)) in ([1, 2, 3], [1, 2])
    tally.add(faults=2, operations=n + 20, items_checked=n + 13)


def test_actor_ask_failures_go_to_the_asker(impl, tally):
    """handle_message raising for an ask (from outside, and from another
    actor's handler): the asker gets the exception, KeyboardInterrupt
    included; the actor is not supervised for it and keeps its state."""
    log: list = []
    failures: list = []
    with _system(impl) as system:
        ref = system.spawn(Recorder, log, frozenset({"bad", "int"}), Boom, failures)
        me = ref.ask("whoami", timeout=T)
        for _ in range(3):
            with pytest.raises(Boom):
                ref.ask("bad", timeout=T)
            with pytest.raises(Boom):
                ref.ask("bad")  # answered inline on this thread when idle
            with pytest.raises(Boom):
                ref.ask_async("bad").result(T)

        class Asker(Actor):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                try:
                    ref.ask(msg, timeout=T)
                except Boom as exc:
                    return f"caught {exc}"
                return "no error"

        asker = system.spawn(Asker)
        assert asker.ask("bad", timeout=T) == "caught bad"
        ki = system.spawn(Recorder, log, frozenset({"int"}), KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            ki.ask("int", timeout=T)
        assert ki.ask("fine", timeout=T) == "fine"
        assert ref.ask("whoami", timeout=T) is me
        assert ref.ask("ok", timeout=T) == "ok"
    assert failures == [] and log == ["fine", "ok"]
    tally.add(faults=11, operations=16, items_checked=2)


class RaisingHooks(Recorder):
    """A Recorder whose lifecycle hooks all raise."""

    def on_start(self) -> None:
        raise Boom("on_start")

    def on_failure(self, exc: BaseException) -> None:
        raise Boom("on_failure")

    def on_stop(self) -> None:
        raise Boom("on_stop")


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_lifecycle_hook_failures_are_reported(impl, reported, tally):
    """on_start, on_failure and on_stop raising: each reported through
    threading.excepthook; the actor still handles its messages, supervision
    still restarts it, and stopping still completes (watchers told, name
    freed)."""
    log: list[int] = []

    with _system(impl) as system:
        ref = system.spawn(RaisingHooks, log, frozenset({3}), name="hooky", max_restarts=5)
        first = ref.ask("whoami", timeout=T)
        for i in range(6):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 5
        assert ref.ask("whoami", timeout=T) is not first  # restarted all the same
        stopped = watch_stopped(system, ref)
        ref.stop()
        assert stopped.wait(T)
        assert system.lookup("hooky") is None
        again = system.spawn(Recorder, log, name="hooky")
        assert again.ask("sync", timeout=T) == 5
    assert log == [0, 1, 2, 4, 5]
    # on_start, on_failure, on_stop (restart), on_start (new), on_stop (stop)
    errors = reported.wait_thread(5)
    assert Counter(str(e) for e in errors) == {"on_start": 2, "on_failure": 1, "on_stop": 2}
    tally.add(faults=6, operations=12, items_checked=6)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_handle_timeout_failure_is_supervised(impl, reported, tally):
    """handle_timeout raising: supervised like a handler (on_failure hears
    it, resume keeps going), and timeouts and messages keep coming."""
    fired = threading.Event()
    failures: list[BaseException] = []
    calls = [0]
    log: list[int] = []

    class Ticker(Recorder):
        receive_timeout = 0.005

        def handle_timeout(self) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise Boom("timeout")
            fired.set()

    with _system(impl) as system:
        ref = system.spawn(Ticker, log, frozenset(), Boom, failures, supervision="resume")
        assert fired.wait(T)
        for i in range(10):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 10
        ref.stop()
    assert [str(e) for e in failures] == ["timeout"] and log == list(range(10))
    assert reported.thread == []
    tally.add(faults=1, operations=12, items_checked=10)


def test_actor_factory_failure_at_spawn(impl, tally):
    """A factory raising at spawn: spawn raises it, nothing is left
    registered, and the name can be used again."""
    tries = [0]

    def factory() -> Actor:
        tries[0] += 1
        if tries[0] == 1:
            raise Boom("factory")
        return Recorder([])

    with _system(impl) as system:
        with pytest.raises(Boom):
            system.spawn(factory, name="svc")
        assert system.lookup("svc") is None
        with pytest.raises(TypeError):
            system.spawn(lambda: object(), name="svc")
        ref = system.spawn(factory, name="svc")
        assert ref.ask("hello", timeout=T) == "hello"
    tally.add(faults=2, operations=4, items_checked=1)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
@pytest.mark.parametrize("backoff", [(0.0, 0.0), (0.001, 0.001)], ids=["at-once", "backoff"])
def test_actor_restart_whose_factory_fails_stops_the_actor(impl, reported, tally, backoff):
    """The factory raising when supervision restarts the actor (Akka's
    ActorInitializationException): reported, the actor stops, queued asks
    fail with ActorStopped, queued and later tells are dead letters, and
    watchers are told.  (It used to wedge: the actor looked alive and never
    handled, nor rejected, anything again.)"""
    made = [0]
    log: list[int] = []
    gate = threading.Event()

    def factory() -> Actor:
        made[0] += 1
        if made[0] == 2:
            raise Boom("factory on restart")

        class Gated(Recorder):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                if msg == 0:
                    gate.wait(T)
                return super().handle_message(msg)

        return Gated(log, frozenset({1}))

    with _system(impl) as system:
        ref = system.spawn(factory, max_restarts=3, backoff=backoff)
        stopped = watch_stopped(system, ref)
        for i in range(5):
            ref.tell(i)
        asks = [ref.ask_async(f"q{i}") for i in range(3)]
        gate.set()
        assert stopped.wait(T), "the actor whose restart failed neither ran nor stopped"
        for f in asks:
            assert isinstance(f.exception(T), ActorStopped)
        ref.tell(5)
        assert not ref.is_alive
        assert log == [0]
        assert sorted(_mine(system, ref)) == [2, 3, 4, 5]
    assert [str(e) for e in reported.wait_thread(1)] == ["factory on restart"]
    tally.add(faults=2, operations=10, items_checked=9)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook")
def test_actor_reply_callback_raising_baseexception(impl, reported, tally):
    """A done callback on an ask_async() future raising KeyboardInterrupt
    runs on the actor's turn: it is reported and the actor goes on handling
    messages (it used to stay scheduled forever, answering nothing)."""
    log: list[int] = []
    gate = threading.Event()

    class GatedRecorder(Recorder):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == 1:
                assert gate.wait(T)
            return super().handle_message(msg)

    with _system(impl) as system:
        ref = system.spawn(GatedRecorder, log)
        # The reply waits for the gate, so the callback is registered before
        # the future settles and runs on the worker that settles it (never
        # here, on the caller's thread).
        f = ref.ask_async(1)
        f.add_done_callback(lambda fut: (_ for _ in ()).throw(KeyboardInterrupt("cb")))
        gate.set()
        assert f.result(T) == 1
        for i in range(2, 12):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 11
    assert log == list(range(1, 12))
    assert [type(e) for e in reported.wait_thread(1)] == [KeyboardInterrupt]
    tally.add(faults=1, operations=14, items_checked=11)


@pytest.mark.thread_unsafe(reason="replaces threading.excepthook and sys.unraisablehook")
def test_actor_hooks_with_a_raising_excepthook(impl, reported, monkeypatch, tally):
    """threading.excepthook itself raising while an actor's hook failure is
    reported: the report falls back to sys.unraisablehook and the actor and
    its supervision keep working."""
    def broken_hook(args) -> None:  # noqa: ANN001
        raise RuntimeError("excepthook is broken")

    log: list[int] = []

    monkeypatch.setattr(threading, "excepthook", broken_hook)
    with _system(impl) as system:
        ref = system.spawn(RaisingHooks, log, frozenset({2}), max_restarts=3)
        for i in range(5):
            ref.tell(i)
        assert ref.ask("sync", timeout=T) == 4
    assert log == [0, 1, 3, 4]
    assert len(reported.wait_unraisable(3)) >= 3
    tally.add(faults=4, operations=6, items_checked=4)
