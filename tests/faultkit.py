"""Fault injection: exceptions and misbehaviour from user code everywhere
fastconc runs it, on both backends (tests/test_faults_*.py, one file per
part; this module holds what they share).

User code covered: actor handlers and hooks (handle_message, on_start,
on_stop, on_failure, handle_timeout, the factory at spawn and at restart,
done callbacks of ask futures), pipeline stage functions under each
``on_error`` policy (and an ``on_error`` callable that raises), source
iterables; WorkStealingPool tasks (submit/execute/map), initializers, error
handlers, done callbacks; ObjectPool factory/validate/reset/destroy;
CircuitBreaker listeners, exclude predicates and the wrapped call; items
whose ``__del__`` raises or blocks when a structure releases them; and
``threading.excepthook`` itself raising.

Each test injects the fault, checks the structure still works afterwards,
and counts every item, message or task accepted before and after: each is
delivered or accounted for exactly once.  What the library reports through
``threading.excepthook`` / ``sys.unraisablehook`` is captured and checked
(the ``reported`` fixture), never left to pytest.
"""

from __future__ import annotations

import sys
import sysconfig
import threading

import pytest
from conftest import JOIN_TIMEOUT

T = JOIN_TIMEOUT
# How long a blocking __del__ waits to be let go: short, because a test that
# fails here must not wait the full JOIN_TIMEOUT for each stuck object.
BLOCK_TIMEOUT = 10.0

class Boom(Exception):
    """The injected failure (an Exception)."""


class DelError(Exception):
    """Raised by a misbehaving __del__."""


def _untraced(exc: BaseException | None) -> BaseException | None:
    """Kept without its traceback: its frames (a __del__'s self...) would
    keep alive what the test expects to be freed."""
    if exc is not None:
        exc.__traceback__ = None
        exc.__context__ = None
    return exc


class Reported:
    """What reached threading.excepthook and sys.unraisablehook."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.thread: list[BaseException | None] = []
        self.unraisable: list[BaseException | None] = []

    def on_thread(self, args) -> None:  # noqa: ANN001 - threading.ExceptHookArgs
        with self._cond:
            self.thread.append(_untraced(args.exc_value))
            self._cond.notify_all()

    def on_unraisable(self, args) -> None:  # noqa: ANN001 - sys.UnraisableHookArgs
        with self._cond:
            self.unraisable.append(_untraced(args.exc_value))
            self._cond.notify_all()

    def wait_thread(self, n: int) -> list[BaseException | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.thread) >= n, T), (
                f"expected {n} reports through threading.excepthook, got {self.thread}")
            return list(self.thread)

    def wait_unraisable(self, n: int) -> list[BaseException | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.unraisable) >= n, T), (
                f"expected {n} reports through sys.unraisablehook, got {self.unraisable}")
            return list(self.unraisable)


def capture_reports(monkeypatch: pytest.MonkeyPatch) -> Reported:
    """What the ``reported`` fixture (tests/conftest.py) returns."""
    r = Reported()
    monkeypatch.setattr(threading, "excepthook", r.on_thread)
    monkeypatch.setattr(sys, "unraisablehook", r.on_unraisable)
    return r


# Free-threaded builds use biased reference counting: when a thread other
# than an object's creator drops its last reference, the object is queued to
# the creating thread, which frees it (and runs __del__) later.  The tests
# that check which call a blocking __del__ holds up cannot pin that there.
DEL_THREAD_IS_CREATOR = pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="free-threaded: __del__ runs on the creating thread, later (biased refcounting)")


class Tracked:
    """An item whose __del__ misbehaves.  ``log`` records each __del__ (so
    each release is counted exactly once); mode "raise" raises DelError,
    mode "block" sets ``entered`` and waits for ``gate`` (bounded), noting in
    ``waits`` whether the gate opened in time."""

    def __init__(self, log: list[int], key: int, mode: str = "raise",
                 gate: threading.Event | None = None, entered: threading.Event | None = None,
                 waits: list[bool] | None = None, left: threading.Event | None = None) -> None:
        self.log = log
        self.key = key
        self.mode = mode
        self.gate = gate
        self.entered = entered
        self.waits = waits
        self.left = left  # set once a blocking __del__ has returned
        self.ref: object = None  # set to make a reference cycle

    def __del__(self) -> None:
        self.log.append(self.key)
        if self.mode == "raise":
            raise DelError(self.key)
        if self.mode == "block":
            assert self.gate is not None and self.entered is not None and self.waits is not None
            self.entered.set()
            self.waits.append(self.gate.wait(BLOCK_TIMEOUT))
            if self.left is not None:
                self.left.set()


def only_kind(errors: list[BaseException | None], kind: type[BaseException]) -> list:
    wrong = [e for e in errors if not isinstance(e, kind)]
    assert not wrong, f"unexpected reports: {wrong}"
    return list(errors)

