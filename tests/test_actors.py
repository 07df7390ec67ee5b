"""Actors on both backends: tell/ask, ordering,
lifecycle, supervision, dead letters, deadlock detection."""

from __future__ import annotations

import random
import threading

import pytest
from conftest import JOIN_TIMEOUT, watch_stopped

from fastconc import Actor, ActorStopped, ActorSystem, Deadlock, Terminated, Timeout

T = JOIN_TIMEOUT


@pytest.fixture
def system(impl):  # noqa: ANN201
    s = ActorSystem(2, backend=impl)
    yield s
    s.shutdown(T)


class Counter(Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def handle_message(self, msg):  # noqa: ANN001, ANN201
        if msg == "inc":
            self.n += 1
        elif msg == "get":
            return self.n
        elif msg == "boom":
            raise ValueError("boom")
        return None


def wait_stopped(system, ref) -> None:  # noqa: ANN001
    """Block (bounded) until ref has stopped."""
    assert watch_stopped(system, ref).wait(T), f"{ref} did not stop"


@pytest.mark.thread_unsafe(reason="spawns a fixed name in the shared system")
def test_counter_from_the_lesson(system):
    counter = system.spawn(Counter, name="counter")
    counter.tell("inc")
    counter.tell("inc")
    assert counter.ask("get", timeout=T) == 2
    assert system.lookup("counter").name == "counter"
    assert system.lookup("nobody") is None


def test_ask_reraises_and_ask_async_is_a_future(system):
    c = system.spawn(Counter, 5)
    with pytest.raises(ValueError, match="boom"):
        c.ask("boom", timeout=T)
    f = c.ask_async("get")
    assert f.result(T) == 5


def test_per_sender_order_under_concurrency(system, threads):
    class Recorder(Actor):
        def __init__(self) -> None:
            self.seen: list[tuple[int, int]] = []

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "dump":
                return list(self.seen)
            self.seen.append(msg)
            return None

    r = system.spawn(Recorder, mailbox_size=16)
    senders, n = 4, 500
    start = threading.Barrier(senders)

    def send(k: int) -> None:
        start.wait(T)
        for i in range(n):
            r.tell((k, i))

    for k in range(senders):
        threads.start(send, k)
    threads.join()
    seen = r.ask("dump", timeout=T)
    assert sorted(seen) == [(k, i) for k in range(senders) for i in range(n)]
    for k in range(senders):
        assert [i for kk, i in seen if kk == k] == list(range(n))


def test_many_actors_answer_concurrently(system):
    refs = [system.spawn(Counter, i) for i in range(5000)]
    futures = [r.ask_async("get") for r in refs]
    assert [f.result(T) for f in futures] == list(range(5000))


def test_one_actor_never_runs_two_handlers_at_once(system, threads):
    class Exclusive(Actor):
        def __init__(self) -> None:
            self.inside = 0
            self.overlaps = 0
            self.count = 0

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "result":
                return self.overlaps, self.count
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
            self.count += 1
            self.inside -= 1
            return None

    a = system.spawn(Exclusive)
    for _ in range(4):
        threads.start(lambda: [a.tell(i) for i in range(1000)])
    threads.join()
    assert a.ask("result", timeout=T) == (0, 4000)


@pytest.mark.thread_unsafe(reason="spawns a fixed name in the shared system")
def test_lifecycle_hooks_and_context(system):
    events: list[str] = []

    class Hooked(Actor):
        def on_start(self) -> None:
            events.append(f"start {self.context.self_ref.name}")

        def on_stop(self) -> None:
            events.append("stop")

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            return self.context.system is system

    h = system.spawn(Hooked, name="hooked")
    assert h.ask("x", timeout=T) is True
    h.stop()
    wait_stopped(system, h)
    with pytest.raises(ActorStopped):
        h.ask("x", timeout=T)
    assert events == ["start hooked", "stop"]
    assert not h.is_alive


def test_tell_to_a_stopped_actor_is_a_dead_letter(system):
    c = system.spawn(Counter)
    c.stop()
    assert c.ask_async("get").exception(T) is not None
    c.tell("late")
    assert any(msg == "late" for _, msg in system.dead_letters)
    with pytest.raises(ActorStopped):
        c.ask("get", timeout=T)


def test_supervision_restart_resets_state_resume_keeps_it(system):
    restarted = system.spawn(Counter, 10, supervision="restart", max_restarts=5)
    resumed = system.spawn(Counter, 10, supervision="resume")
    for ref in (restarted, resumed):
        ref.tell("inc")
        ref.tell("boom")
        ref.tell("inc")
    assert restarted.ask("get", timeout=T) == 11  # fresh instance from the factory, then one inc
    assert resumed.ask("get", timeout=T) == 12


def test_restart_limit_stops_the_actor_and_tells_watchers(system):
    seen: list[object] = []
    got = threading.Event()

    class Watcher(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if isinstance(msg, Terminated):
                seen.append(msg)
                got.set()
            else:
                self.context.watch(msg)
            return None

    fragile = system.spawn(Counter, supervision="restart", max_restarts=1, within=60)
    w = system.spawn(Watcher)
    w.ask(fragile, timeout=T)
    fragile.tell("boom")  # restarted once
    fragile.tell("boom")  # over the limit: stops
    assert got.wait(T)
    assert seen == [Terminated(fragile)]
    assert not fragile.is_alive


def test_stop_strategy(system):
    c = system.spawn(Counter, supervision="stop")
    c.tell("boom")
    wait_stopped(system, c)
    with pytest.raises(ActorStopped):
        c.ask("get", timeout=T)


@pytest.mark.thread_unsafe(reason="spawns fixed names in the shared system")
def test_self_ask_and_cycles_raise_deadlock(system):
    class Selfish(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            return self.context.self_ref.ask("again", timeout=T)

    class Forward(Actor):
        def __init__(self, peers: dict) -> None:
            self.peers = peers

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "ping":
                return "pong"
            other = "b" if self.context.self_ref.name == "a" else "a"
            return self.peers[other].ask("ping" if msg == "end" else msg, timeout=T)

    with pytest.raises(Deadlock, match="Deadlock detected"):
        system.spawn(Selfish).ask("go", timeout=T)
    peers: dict = {}
    peers["a"] = system.spawn(Forward, peers, name="a")
    peers["b"] = system.spawn(Forward, peers, name="b")
    with pytest.raises(Deadlock):
        peers["a"].ask("loop", timeout=T)
    # A blocking ask inside a handler that is not a cycle works (the worker
    # helps while it waits, so even 2 workers never starve).
    assert peers["a"].ask("end", timeout=T) == "pong"


def test_ask_without_timeout_from_outside_may_run_inline(system):
    """An idle actor asked (no timeout) from a thread outside the pool may
    answer on the asking thread; queued tells still come first."""
    c = system.spawn(Counter)
    for _ in range(100):
        c.tell("inc")
    assert c.ask("get") == 100  # behind the queued tells, whoever runs it
    assert c.ask("get") == 100


def test_ask_timeout(system):
    release = threading.Event()

    class Slow(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            release.wait(T)

    s = system.spawn(Slow)
    with pytest.raises(Timeout):
        s.ask("x", timeout=0.05)
    release.set()


def test_shutdown_handles_everything_accepted(impl):
    handled: list[int] = []

    class Sink(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            handled.append(msg)

    s = ActorSystem(2, backend=impl)
    refs = [s.spawn(Sink) for _ in range(10)]
    for i in range(2000):
        refs[i % 10].tell(i)
    assert s.shutdown(T)
    assert sorted(handled) == list(range(2000))
    with pytest.raises(ActorStopped):
        s.spawn(Sink)


@pytest.mark.thread_unsafe(reason="spawns a fixed name in the shared system")
def test_bad_spawn_arguments(system):
    with pytest.raises(TypeError):
        system.spawn(42)
    with pytest.raises(ValueError, match="supervision"):
        system.spawn(Counter, supervision="pray")
    with pytest.raises(TypeError, match="Actor"):
        system.spawn(lambda: object())
    system.spawn(Counter, name="dup")
    with pytest.raises(ValueError, match="dup"):
        system.spawn(Counter, name="dup")


@pytest.mark.thread_unsafe(reason="compares the shared system's dead letters")
def test_mailbox_overflow_policies(system):
    from fastconc import Full

    release = threading.Event()
    busy = threading.Event()

    class Blocked(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            busy.set()
            release.wait(T)

    dropper = system.spawn(Blocked, mailbox_size=2, overflow="drop")
    dropper.tell("first")  # taken by the handler, which then blocks
    assert busy.wait(T)
    dropper.tell(1)
    dropper.tell(2)
    dropper.tell(3)  # mailbox full: dropped to the dead letters
    assert not dropper.try_tell(4)
    assert [m for _, m in system.dead_letters] == [3]
    busy.clear()
    raiser = system.spawn(Blocked, mailbox_size=1, overflow="raise")
    raiser.tell("first")
    assert busy.wait(T)
    raiser.tell(1)
    with pytest.raises(Full):
        raiser.tell(2)
    release.set()


def test_receive_timeout_calls_handle_timeout(system):
    fired = threading.Event()
    seen: list[object] = []

    class Idle(Actor):
        receive_timeout = 0.02

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            seen.append(msg)

        def handle_timeout(self) -> None:
            seen.append("timeout")
            self.receive_timeout = None  # once is enough
            fired.set()

    a = system.spawn(Idle)
    a.tell("hello")
    assert fired.wait(T)
    assert seen == ["hello", "timeout"]


@pytest.mark.thread_unsafe(reason="spawns a fixed name in the shared system")
def test_escalate_hands_the_failure_to_the_parent(system):
    failures: list[BaseException] = []
    stopped = threading.Event()

    class Child(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            raise RuntimeError(msg)

    class Parent(Actor):
        def on_failure(self, exc: BaseException) -> None:
            failures.append(exc)

        def on_stop(self) -> None:
            stopped.set()

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            return self.context.spawn(Child, supervision="escalate", name="child")

    parent = system.spawn(Parent, supervision="stop")
    child = parent.ask("make", timeout=T)
    child.tell("child broke")
    assert stopped.wait(T)  # the parent's own strategy (stop) applied
    assert [str(e) for e in failures] == ["child broke"]
    assert not child.is_alive and not parent.is_alive


def test_restart_backoff_keeps_the_mailbox(system):
    restarts: list[float] = []

    class Flaky(Actor):
        def __init__(self) -> None:
            self.n = 0

        def on_start(self) -> None:
            restarts.append(1.0)

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "boom":
                raise ValueError
            self.n += 1
            return self.n

    f = system.spawn(Flaky, supervision="restart", max_restarts=3, backoff=(0.01, 0.05))
    f.tell("boom")
    f.tell("inc")  # waits in the mailbox through the back-off
    assert f.ask("inc", timeout=T) == 2
    assert len(restarts) == 2


@pytest.mark.thread_unsafe(reason="reads the random module's shared state")
def test_restart_jitter_leaves_the_random_module_alone(system):
    """Back-off jitter comes from a generator of fastconc's own: an
    application's seeded random sequence does not shift because an actor
    restarted."""
    class Flaky(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "boom":
                raise ValueError("boom")
            return msg

    before = random.getstate()
    f = system.spawn(Flaky, supervision="restart", max_restarts=5, backoff=(0.001, 0.002))
    for _ in range(3):
        f.tell("boom")
    assert f.ask("ok", timeout=T) == "ok"
    assert random.getstate() == before


def test_children_stop_with_their_parent(system):
    class Parent(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            return self.context.spawn(Counter)

    p = system.spawn(Parent)
    kid = p.ask("spawn", timeout=T)
    p.stop()
    wait_stopped(system, kid)  # stopped by its parent's stop, asynchronously
    with pytest.raises(ActorStopped):
        kid.ask("get", timeout=T)


# ------------------------------------------------- timeouts bound the whole call

BOUND = 5.0  # "not blocked": generous, 10x the small timeouts below
SMALL = 0.5


def call_bounded(fn, bound: float = BOUND):  # noqa: ANN001, ANN201
    """Run fn on a thread; fail unless it returns or raises within ``bound``
    seconds.  Returns ("ok", value) or ("raised", exc)."""
    out: list = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:  # handed to the test
            out.append(("raised", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"{fn} still blocked after {bound} s"
    return out[0]


class BusyActor:
    """An actor (mailbox_size=1) whose handler of "first" is blocked on an
    Event: one message being handled, and after ``fill()`` one waiting."""

    def __init__(self, system: ActorSystem, **spawn_options) -> None:  # noqa: ANN003
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()  # the blocked handler returned
        self.stopped = threading.Event()  # on_stop ran
        self.handled: list = []
        busy = self

        class Busy(Actor):
            def handle_message(self, msg):  # noqa: ANN001, ANN201
                busy.handled.append(msg)
                if msg == "first":
                    busy.started.set()
                    busy.release.wait(T)
                    busy.finished.set()
                return msg

            def on_stop(self) -> None:
                busy.stopped.set()

        self.ref = system.spawn(Busy, mailbox_size=1, **spawn_options)

    def fill(self) -> None:
        self.ref.tell("first")
        assert self.started.wait(T)
        self.ref.tell("waiting")  # the mailbox (1 slot) is now full


def test_actor_shutdown_timeout_returns_with_a_busy_actor_and_a_full_mailbox(impl):
    """shutdown(timeout) returns False once the timeout passes (the
    stop request takes no mailbox slot), and the actor stops as soon as its
    handler returns; what was still queued goes to the dead letters."""
    system = ActorSystem(2, backend=impl)
    busy = BusyActor(system)
    try:
        busy.fill()
        assert call_bounded(lambda: system.shutdown(timeout=SMALL)) == ("ok", False)
        assert not busy.finished.is_set()  # returned while the handler was blocked
        assert busy.ref.is_alive
    finally:
        busy.release.set()
    assert busy.stopped.wait(T)
    assert system.shutdown(T)  # returns once the actor's stop is complete
    assert not busy.ref.is_alive
    assert busy.handled == ["first"]
    assert [m for r, m in system.dead_letters if r is busy.ref] == ["waiting"]


def test_actor_shutdown_timeout_none_still_handles_a_full_mailbox(impl):
    """Without a timeout, shutdown still handles every message accepted."""
    system = ActorSystem(2, backend=impl)
    busy = BusyActor(system)
    busy.fill()
    result = []
    t = threading.Thread(target=lambda: result.append(system.shutdown()), daemon=True)
    t.start()
    busy.release.set()
    t.join(T)
    assert result == [True]
    assert busy.handled == ["first", "waiting"]


def test_actor_stop_never_blocks_on_a_full_mailbox(impl):
    """ActorRef.stop() returns at once on a full mailbox; the messages
    accepted before it are still handled, later ones are refused, and a
    sender waiting for room is released to the dead letters."""
    system = ActorSystem(2, backend=impl)
    busy = BusyActor(system)
    try:
        busy.fill()
        blocked_tell = threading.Thread(target=busy.ref.tell, args=("blocked",), daemon=True)
        blocked_tell.start()  # waits for room, or finds the mailbox closed
        assert call_bounded(busy.ref.stop) == ("ok", None)
        assert not busy.finished.is_set()
        blocked_tell.join(BOUND)
        assert not blocked_tell.is_alive(), "stop() did not release a blocked tell"
        assert not busy.finished.is_set()
        busy.ref.tell("late")
        with pytest.raises(ActorStopped):
            busy.ref.ask("late ask", timeout=T)
    finally:
        busy.release.set()
    assert busy.stopped.wait(T)
    assert system.shutdown(T)
    assert busy.handled == ["first", "waiting"]
    letters = [m for r, m in system.dead_letters if r is busy.ref]
    assert sorted(letters) == ["blocked", "late"]


def test_actor_ask_timeout_bounds_the_wait_for_mailbox_room(impl):
    """ask(timeout) on a full mailbox raises Timeout once the timeout passes,
    from outside the pool and from another actor's handler."""
    system = ActorSystem(2, backend=impl)
    busy = BusyActor(system)

    class Asker(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            try:
                return busy.ref.ask(msg, timeout=SMALL)
            except Timeout:
                return "timed out"

    asker = system.spawn(Asker)
    try:
        busy.fill()
        kind, exc = call_bounded(lambda: busy.ref.ask("outside", timeout=SMALL))
        assert kind == "raised" and isinstance(exc, Timeout), exc
        assert call_bounded(lambda: asker.ask("inside", timeout=T)) == ("ok", "timed out")
        assert not busy.finished.is_set()
    finally:
        busy.release.set()
    assert busy.ref.ask("after", timeout=T) == "after"
    assert busy.handled == ["first", "waiting", "after"]  # the timed-out asks queued nothing
    assert system.shutdown(T)


class Blockable(Actor):
    """mailbox_size=1 in the tests below: "block" holds its handler on an
    Event so that one more message fills the mailbox."""

    def __init__(self, log: list, started: threading.Event, release: threading.Event,
                 target=None) -> None:  # noqa: ANN001 - an ActorRef to watch
        self.log, self.started, self.release, self.target = log, started, release, target

    def on_start(self) -> None:
        if self.target is not None:
            self.context.watch(self.target)

    def handle_message(self, msg):  # noqa: ANN001, ANN201
        self.log.append(msg)
        if msg == "block":
            self.started.set()
            self.release.wait(T)
        return msg


def test_terminated_reaches_a_watcher_whose_mailbox_is_full(impl):
    """Terminated needs no mailbox slot: it waits beside a full mailbox and
    is handled before the message queued earlier (it used to go to the dead
    letters)."""
    system = ActorSystem(2, backend=impl)
    target = system.spawn(Counter)
    log: list = []
    started, release = threading.Event(), threading.Event()
    watcher = system.spawn(Blockable, log, started, release, target, mailbox_size=1)
    target_stopped = watch_stopped(system, target)
    try:
        watcher.tell("block")
        assert started.wait(T)
        watcher.tell("queued")  # the mailbox (1 slot) is now full
        target.stop()
        assert target_stopped.wait(T)
    finally:
        release.set()
    assert watcher.ask("after", timeout=T) == "after"
    assert log == ["block", Terminated(target), "queued", "after"]
    assert not [m for r, m in system.dead_letters if r is watcher]
    assert system.shutdown(T)


def test_escalation_to_a_parent_with_a_full_mailbox_never_blocks_the_child(impl):
    """A child's escalated failure takes no slot in its parent's mailbox: the
    child stops at once though its parent is busy with a full mailbox (its
    turn used to wait for room, holding a worker), and the parent handles
    the failure before the message queued earlier."""
    system = ActorSystem(2, backend=impl)
    log: list = []
    failures: list = []
    started, release = threading.Event(), threading.Event()

    class Child(Actor):
        def handle_message(self, msg):  # noqa: ANN001, ANN201
            raise RuntimeError(msg)

    class Parent(Blockable):
        def on_failure(self, exc: BaseException) -> None:
            failures.append(str(exc))
            self.log.append("failure")

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if msg == "spawn":
                return self.context.spawn(Child, supervision="escalate")
            return super().handle_message(msg)

    parent = system.spawn(Parent, log, started, release, mailbox_size=1, supervision="resume")
    child = parent.ask("spawn", timeout=T)
    child_stopped = watch_stopped(system, child)
    try:
        parent.tell("block")
        assert started.wait(T)
        parent.tell("queued")  # the parent's mailbox (1 slot) is now full
        child.tell("child broke")
        assert child_stopped.wait(BOUND), "the child's escalation waited for mailbox room"
    finally:
        release.set()
    assert parent.ask("after", timeout=T) == "after"
    assert failures == ["child broke"]
    assert log == ["block", "failure", "queued", "after"]
    assert system.shutdown(T)
