"""Actors on the work-stealing pool: tell/ask, lifecycle, supervision,
deadlock detection.  Written once on the public primitives (Channel,
WorkStealingPool), so it runs on either backend.

M:N scheduling: each actor owns a bounded Channel as its mailbox and a
"scheduled" flag.  A tell that finds the actor idle schedules one turn on the
pool; a turn handles up to ``THROUGHPUT`` messages, then yields the worker.
An actor never runs two handlers at once, and messages from one sender
arrive in the order sent.

Timers (``receive_timeout``, restart back-off) run on one timer thread per
system that sleeps on a condition variable until the next deadline.

The modules, from the user's side down:

* ``system``: ActorSystem (spawn, lookup, dead letters, shutdown);
* ``actor``: Actor, Context, Terminated;
* ``ref``: ActorRef (tell, ask, stop);
* ``cell``: _Cell, one actor's runtime (sending, turns, stopping);
* ``supervision``: what a failure does (restart, resume, stop, escalate),
  restart limits and back-off;
* ``mailbox``: envelopes, control items and the reply slot;
* ``deadlock``: the running-actor stack and the waits-for graph;
* ``timers``: the timer thread and deadline arithmetic.
"""

from fastconc.actors.actor import Actor, Context, Terminated
from fastconc.actors.cell import THROUGHPUT as THROUGHPUT
from fastconc.actors.mailbox import OVERFLOW as OVERFLOW
from fastconc.actors.ref import ActorRef
from fastconc.actors.supervision import STRATEGIES as STRATEGIES
from fastconc.actors.system import DEAD_LETTERS_KEPT as DEAD_LETTERS_KEPT
from fastconc.actors.system import ActorSystem

__all__ = ["Actor", "ActorRef", "ActorSystem", "Context", "Terminated"]
