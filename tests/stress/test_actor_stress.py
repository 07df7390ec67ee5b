"""Actors stopped (or the whole system shut down) while several threads
tell and ask, round after round until the time budget is spent.

What fastconc.actors guarantees, and is checked here: a tell never raises
for a stopped actor; its message is either handled exactly once or ends up
in ``system.dead_letters`` exactly once (so does a message dropped by a full
mailbox with ``overflow="drop"``), never both.  An ask either gets the
handler's reply (the message was handled exactly once) or raises
ActorStopped (it was never handled); asks are never dead letters.  Messages
from one sender are handled in the order sent.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
from conftest import JOIN_TIMEOUT, watch_stopped
from stress_helpers import jitter, random_pause, run_rounds

from fastconc import Actor, ActorStopped, ActorSystem
from fastconc.actors import DEAD_LETTERS_KEPT

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT
HALT = "halt"  # a handler that gets it stops its own actor (context.stop())
SENDERS = 3
ACTORS = 3
# Messages one sender sends per round at most: all dead letters of a round
# must fit in the system's dead-letter record to be accounted for.
PER_SENDER = 2000
assert SENDERS * PER_SENDER < DEAD_LETTERS_KEPT


class Sink(Actor):
    def __init__(self, handled: list[tuple[int, tuple[int, int]]], index: int) -> None:
        self.handled = handled
        self.index = index

    def handle_message(self, msg: Any) -> Any:
        if msg == HALT:
            self.context.stop()
            return None
        self.handled.append((self.index, msg))
        return msg


@pytest.mark.parametrize("how", ["stop", "shutdown"])
def test_actors_stopped_while_threads_tell_and_ask(impl, threads, tally, how):
    run_rounds(tally, lambda: _actors_round(impl, threads, how))


def _actors_round(impl, threads, how: str) -> tuple[int, int]:
    """One round: a fresh system, its actors stopped at random moments.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed - 1)
    system = ActorSystem(2, backend=impl)
    handled: list[tuple[int, tuple[int, int]]] = []
    overflow = rnd.choice(("block", "drop"))
    refs = [system.spawn(Sink, handled, k, mailbox_size=rnd.choice((1, 4, 100)),
                         overflow=overflow) for k in range(ACTORS)]
    told: list[tuple[int, tuple[int, int]]] = []
    answered: list[tuple[int, tuple[int, int]]] = []
    refused: list[tuple[int, tuple[int, int]]] = []  # ask -> ActorStopped
    stop_sending = threading.Event()
    start = threading.Barrier(SENDERS + 1)

    def sender(s: int) -> None:
        r = random.Random(seed + s)
        start.wait(T)
        for i in range(PER_SENDER):
            if stop_sending.is_set():
                return
            k = r.randrange(ACTORS)
            ref = refs[k]
            msg = (s, i)
            mode = r.random()
            if mode < 0.7:
                ref.tell(msg)  # never raises: handled or a dead letter
                told.append((k, msg))
            elif mode < 0.85:
                try:
                    reply = ref.ask(msg, timeout=T)
                except ActorStopped:
                    refused.append((k, msg))
                else:
                    assert reply == msg
                    answered.append((k, msg))
            else:
                future = ref.ask_async(msg)
                exc = future.exception(T)
                if isinstance(exc, ActorStopped):
                    refused.append((k, msg))
                else:
                    assert exc is None, exc
                    assert future.result(0) == msg
                    answered.append((k, msg))
            jitter(r)

    for s in range(SENDERS):
        threads.start(sender, s)
    start.wait(T)
    if how == "stop":
        for ref in rnd.sample(refs, len(refs)):
            random_pause(rnd)
            if rnd.random() < 0.5:
                ref.stop()
            else:
                ref.tell(HALT)
        random_pause(rnd)  # let tells to stopped actors happen too
        stop_sending.set()
        threads.join()
        assert system.shutdown(T)
    else:
        random_pause(rnd)
        assert system.shutdown(T)
        stop_sending.set()
        threads.join()
    assert not any(ref.is_alive for ref in refs)

    dead = [(ref, msg) for ref, msg in system.dead_letters if msg != HALT]
    assert len(dead) < DEAD_LETTERS_KEPT, "test bug: dead letters overflowed the record"
    index = {id(ref): k for k, ref in enumerate(refs)}
    dead_keys = Counter((index[id(ref)], msg) for ref, msg in dead)
    twice = [m for m, c in dead_keys.items() if c > 1]
    assert not twice, f"dead-lettered twice: {twice[:5]}"
    got = Counter(handled)
    twice = [m for m, c in got.items() if c > 1]
    assert not twice, f"handled twice: {twice[:5]}"
    both = got.keys() & dead_keys.keys()
    assert not both, f"handled and dead-lettered: {sorted(both)[:5]}"
    lost = set(told) - got.keys() - dead_keys.keys()
    assert not lost, (f"{len(lost)} tells neither handled nor dead letters "
                      f"(overflow={overflow}), e.g. {sorted(lost)[:5]}")
    assert got.keys() <= set(told) | set(answered), "handled a message nobody sent"
    assert set(answered) <= got.keys(), "an ask was answered without being handled"
    assert not set(refused) & got.keys(), "an ask raised ActorStopped yet was handled"
    assert not (set(answered) | set(refused)) & dead_keys.keys(), "an ask became a dead letter"
    # One sender's messages to one actor are handled in the order sent.
    last: dict[tuple[int, int], int] = {}
    for k, (s, i) in handled:
        assert i > last.get((k, s), -1), f"actor {k} handled sender {s} out of order"
        last[(k, s)] = i
    checked += len(told) + len(answered) + len(refused)
    total_calls += len(told) + len(answered) + len(refused) + ACTORS
    return total_calls, checked


@pytest.mark.parametrize("overflow", ["drop", "raise"])
def test_tell_refused_by_a_full_mailbox_as_the_actor_stops_is_a_dead_letter(impl, tally,
                                                                             overflow):
    """The race the test above can only hit now and then, made to happen:
    tell() finds the mailbox full, and the actor stops right then (before
    tell looks at it again).  The message must still reach the dead letters
    (it used to vanish: neither handled nor dead-lettered, nor Full raised)."""
    entered, gate, stopped = threading.Event(), threading.Event(), threading.Event()

    class Mailbox:
        """The backend's Channel; the first time it refuses an item for
        being full, it lets the actor stop before it answers."""

        def __init__(self, capacity: int) -> None:
            self._ch = impl.Channel(capacity)
            self.stop_on_full = False

        def try_send(self, item: Any) -> bool:
            ok = self._ch.try_send(item)
            if not ok and self.stop_on_full:
                self.stop_on_full = False
                gate.set()
                assert stopped.wait(T)
            return ok

        def __getattr__(self, name: str) -> Any:
            return getattr(self._ch, name)

        def __len__(self) -> int:
            return len(self._ch)

    class Blocked(Actor):
        def handle_message(self, msg: Any) -> Any:
            if msg == "block":
                entered.set()
                assert gate.wait(T)
            return msg

        def on_stop(self) -> None:
            stopped.set()

    backend = type(impl)(**vars(impl))
    backend.Channel = Mailbox
    system = ActorSystem(1, backend=backend)
    ref = system.spawn(Blocked, mailbox_size=2, overflow=overflow)
    terminated = watch_stopped(system, ref)
    try:
        ref.tell("block")
        assert entered.wait(T)  # its handler now waits on gate
        ref.stop()  # queued: [stop]
        assert ref.try_tell("filler")  # [stop, filler]: full
        ref._cell.mailbox.stop_on_full = True
        ref.tell("refused")  # refused as full, and the actor stops meanwhile
        assert not ref.is_alive
        # on_stop (which let tell go on) runs before the stopping actor moves
        # what is left in its mailbox to the dead letters; Terminated after.
        assert terminated.wait(T)
        dead = [m for _, m in system.dead_letters]
        assert "filler" in dead
        assert "refused" in dead, "a tell refused as the actor stopped vanished"
    finally:
        gate.set()
        assert system.shutdown(T)
    tally.add(operations=4, items_checked=2)


def test_context_stop_from_a_handler_with_a_full_mailbox(impl, tally):
    """context.stop() in a handler while senders keep the mailbox full (what
    the test above does with HALT): it used to queue a stop message with a
    blocking send into the actor's own full mailbox, which only that very
    handler's thread would ever drain, and hung."""
    entered, gate, done = threading.Event(), threading.Event(), threading.Event()

    class Halting(Actor):
        def handle_message(self, msg: Any) -> Any:
            if msg == HALT:
                entered.set()
                assert gate.wait(T)  # the mailbox is full by now
                self.context.stop()
                done.set()
            return msg

    system = ActorSystem(1, backend=impl)
    ref = system.spawn(Halting, mailbox_size=1)
    ref.tell(HALT)
    assert entered.wait(T)
    assert ref.try_tell("filler")  # the mailbox is full
    gate.set()
    stopped = done.wait(T)
    if not stopped:  # make room, so the handler and the system can finish
        ref._cell.mailbox.try_recv()
    assert system.shutdown(T)
    assert stopped, "context.stop() blocked on the actor's own full mailbox"
    assert not ref.is_alive
    assert [m for _, m in system.dead_letters] == ["filler"]
    tally.add(operations=3, items_checked=1)
