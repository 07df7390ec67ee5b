"""A thread-safe pool of reusable objects (connections, sessions, parsers...).

Written once on the public primitives, like ``fastconc.actors``, so it runs on
either backend.  Every slot of the pool (``max_size`` of them) is either
*free* (an idle object, or not created yet) or *taken* (an object checked out,
or one being created, validated or destroyed).  A Channel of capacity
``max_size`` holds one permit per free slot: ``get`` receives a permit (that is
the only place a caller ever waits, so the wait releases the GIL on the
compiled backend, never busy-polls and is interrupted by Ctrl-C), then takes
the most recently returned idle object, or creates one.  Giving a slot back
(``put``, ``invalidate``, a failed creation) sends the permit back.

Idle objects sit in a stack under a plain lock (LIFO: the object used last is
handed out first, so it is the one most likely still warm, and the ones at the
bottom are the ones that grow old and get evicted).  User code (``factory``,
``validate``, ``reset``, ``destroy``) never runs under that lock.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from fastconc import Channel
from fastconc._support.args import int_arg, seconds_arg
from fastconc._support.report import report_uncaught as _report
from fastconc.errors import ChannelClosed, Empty, PoolClosed, ResourceUnavailable, Timeout

__all__ = ["ObjectPool", "ObjectPoolStats"]

T = TypeVar("T")

_PERMIT: Final = True


class _Unset(enum.Enum):
    """Type of the "use the pool's default timeout" marker."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "<pool default>"


_DEFAULT: Final = _Unset.DEFAULT


@dataclass(frozen=True)
class ObjectPoolStats:
    """A snapshot of an :class:`ObjectPool`, taken under its lock.

    ``size`` objects exist (created and not yet destroyed); ``idle`` of them
    wait in the pool and ``in_use`` are checked out (plus, transiently, the
    ones being validated, reset or retired, so ``idle + in_use <= size``).
    ``created`` and ``destroyed`` count since construction.  ``waits``: calls
    to ``get`` that found no free slot and blocked for one; ``timeouts``: calls
    that raised ResourceUnavailable (with ``timeout=0`` a call can time out
    without having waited).
    """

    max_size: int
    size: int
    idle: int
    in_use: int
    created: int
    destroyed: int
    waits: int
    timeouts: int


class _Entry:
    """One pooled object and what the pool knows about it."""

    __slots__ = ("born", "invalidated", "obj", "since", "uses")

    def __init__(self, obj: Any, now: float) -> None:
        self.obj = obj
        self.born = now  # for max_lifetime
        self.since = now  # last returned (or created): for max_idle
        self.uses = 0  # checkouts so far; also tells one lease from the next
        self.invalidated = 0  # the `uses` value at invalidate(), 0 if never


# Largest max_size: one permit per slot is made up front.
MAX_SIZE = 1 << 20


def _opt_seconds(value: object, name: str, *, zero_ok: bool) -> float | None:
    return None if value is None else seconds_arg(value, name, zero_ok=zero_ok)


def _callable_arg(value: object, name: str, optional: bool = True) -> None:
    if not callable(value) and not (optional and value is None):
        raise TypeError(f"{name} must be callable{' or None' if optional else ''}, "
                        f"not {type(value).__name__}")


class ObjectPool(Generic[T]):
    """A bounded, thread-safe pool of reusable objects.

    ``factory()`` makes an object; at most ``max_size`` exist at once.  They
    are made lazily, except ``min_size`` made up front (a factory error there
    propagates, after the ones already made are destroyed).  Idle objects are
    reused LIFO.

    ``get(timeout)`` / ``put(obj)``, or ``with pool.acquire(timeout) as obj:``.
    When every object is checked out, ``get`` blocks until one comes back;
    after ``timeout`` seconds (the call's, else the pool's ``timeout``; None
    waits forever, 0 does not wait) it raises
    :class:`~fastconc.errors.ResourceUnavailable`.  The timeout bounds the
    wait for a free slot only, not the factory or ``validate`` calls after it.

    Hooks, all called without the pool's lock held:

    * ``validate(obj) -> bool`` on checkout of an idle object: False or an
      exception (any ``Exception``; it is not reported) destroys that object
      and the next idle one is tried, else a new one is made.  A new object
      is handed out without validation: the factory just made it, and a
      factory whose objects never validate would otherwise loop forever.
    * ``reset(obj)`` on return: if it raises, the object is destroyed, its
      slot freed, and the exception propagates to the ``put`` caller.
    * ``destroy(obj)`` on every object the pool discards (default: call its
      ``close()`` if it has one).  Its exceptions are reported through
      :func:`threading.excepthook`; the slot is freed all the same.

    Retiring: ``max_uses`` checkouts, then the object is destroyed when it
    comes back; ``max_lifetime`` seconds after creation it is destroyed when
    it comes back or is next seen idle on checkout; idle longer than
    ``max_idle`` seconds it is destroyed on a later checkout (or ``prune()``),
    but never so that fewer than ``min_size`` objects remain.  No background
    thread: ages are looked at lazily, with ``clock()`` (injectable for tests).

    ``put`` of an object not checked out from this pool (foreign, or already
    returned) raises ValueError; so does ``invalidate`` of one.  (A late second
    ``put`` of an object another thread has checked out again meanwhile looks
    like that thread's return and cannot be caught; an ``acquire()`` block
    tracks its own checkout and can.)  A broken
    object is discarded with ``invalidate(obj)`` instead of ``put(obj)``;
    leaving an ``acquire()`` block by an exception still puts the object back.

    ``close()`` (or leaving ``with ObjectPool(...) as pool:``) destroys the
    idle objects, wakes blocked ``get`` calls and makes every later one raise
    :class:`~fastconc.errors.PoolClosed`; objects still out are destroyed as
    they are put back.  ``stats()`` returns an :class:`ObjectPoolStats`.

    ``backend``: the primitives to build on, one of the namespaces of
    ``fastconc.implementations()`` (default: the backend fastconc selected).
    """

    def __init__(self, factory: Callable[[], T], max_size: int, *, min_size: int = 0,
                 timeout: float | None = None, validate: Callable[[T], object] | None = None,
                 reset: Callable[[T], object] | None = None, max_uses: int | None = None,
                 max_idle: float | None = None, max_lifetime: float | None = None,
                 destroy: Callable[[T], object] | None = None,
                 clock: Callable[[], float] = time.monotonic, backend: Any = None) -> None:
        _callable_arg(factory, "factory", optional=False)
        # Every free slot is a permit made now (a Channel of tokens): an
        # absurd size is refused instead of filling memory with them.
        self._max_size = int_arg(max_size, "max_size", 1, MAX_SIZE)
        self._min_size = int_arg(min_size, "min_size", 0)
        if self._min_size > self._max_size:
            raise ValueError(f"min_size must be <= max_size ({max_size}), got {min_size!r}")
        self._timeout = _opt_seconds(timeout, "timeout", zero_ok=True)
        for hook, name in ((validate, "validate"), (reset, "reset"), (destroy, "destroy")):
            _callable_arg(hook, name)
        _callable_arg(clock, "clock", optional=False)
        self._max_uses = None if max_uses is None else int_arg(max_uses, "max_uses", 1)
        self._max_idle = _opt_seconds(max_idle, "max_idle", zero_ok=False)
        self._max_lifetime = _opt_seconds(max_lifetime, "max_lifetime", zero_ok=False)
        channel_type: Callable[[int], Any] = Channel if backend is None else backend.Channel

        self._factory = factory
        self._validate = validate
        self._reset = reset
        self._destroy_hook = destroy
        self._clock = clock
        self._aging = max_idle is not None or max_lifetime is not None
        # Which checkouts and returns can skip every hook and age check.
        self._plain_checkout = validate is None and not self._aging
        self._plain_return = reset is None and max_uses is None and not self._aging
        self._lock = threading.Lock()
        self._idle: deque[_Entry] = deque()  # oldest return on the left, next checkout right
        self._out: dict[int, _Entry] = {}  # id(obj) -> entry; the entry keeps the id taken
        self._closed = False
        self._created = 0
        self._destroyed = 0
        self._waits = 0
        self._timeouts = 0

        made: list[T] = []
        try:
            for _ in range(self._min_size):
                made.append(factory())
        except BaseException:
            for obj in made:
                self._destroy(obj)
            raise
        now = clock()
        self._idle.extend(_Entry(obj, now) for obj in made)
        self._created = len(made)
        self._permits: Any = channel_type(self._max_size)
        self._permits.send_many((_PERMIT,) * self._max_size, timeout=0)

    # ------------------------------------------------------------ checkout

    def get(self, timeout: float | None | _Unset = _DEFAULT) -> T:
        """Check an object out: an idle one (most recently returned first),
        else a new one.  Blocks while all ``max_size`` are out; raises
        ResourceUnavailable after ``timeout`` seconds (default: the pool's
        timeout; None: wait forever; 0: do not wait), PoolClosed once the pool
        is closed, or whatever the factory raised."""
        obj: T = self._get(timeout).obj
        return obj

    def acquire(self, timeout: float | None | _Unset = _DEFAULT) -> _Lease[T]:
        """A context manager that checks an object out on entry (as
        ``get(timeout)``) and puts it back on exit, even when the block
        raised.  Call ``pool.invalidate(obj)`` inside the block for an object
        found broken: the exit then does not put it back."""
        return _Lease(self, timeout)

    def _get(self, timeout: float | None | _Unset) -> _Entry:
        if timeout is _DEFAULT:
            wait = self._timeout
        elif timeout is None:
            wait = None
        else:
            wait = _opt_seconds(timeout, "timeout", zero_ok=True)
        if self._closed:
            raise PoolClosed("the object pool is closed")
        try:
            self._permits.try_recv()
        except Empty:
            self._wait_for_slot(wait)
        except ChannelClosed:
            raise PoolClosed("the object pool is closed") from None
        # This thread now holds one slot.
        if self._plain_checkout:
            # No hook or age to look at: hand out the top idle object at once.
            with self._lock:
                if self._idle and not self._closed:
                    entry = self._idle.pop()
                    entry.uses += 1
                    self._out[id(entry.obj)] = entry
                    return entry
        return self._checkout()

    def _wait_for_slot(self, wait: float | None) -> None:
        if wait == 0:
            self._timed_out(wait)
        with self._lock:
            self._waits += 1
        try:
            self._permits.recv(wait)
        except Timeout:
            self._timed_out(wait)
        except ChannelClosed:
            raise PoolClosed("the object pool is closed") from None

    def _checkout(self) -> _Entry:
        """With a slot held: an idle object that passes, else a new one.
        Until the slot goes out with the object, every way out gives it back."""
        handed_out = False
        try:
            entry = self._take_idle()
            if entry is None:
                entry = self._create()
            handed_out = True
            return entry
        finally:
            if not handed_out:
                self._free_slot()

    def _timed_out(self, wait: float | None) -> None:
        with self._lock:
            self._timeouts += 1
        raise ResourceUnavailable(
            f"no object free in the pool within {wait} s: all max_size={self._max_size} "
            "are checked out") from None

    def _take_idle(self) -> _Entry | None:
        """With a slot held: an idle object that is young enough and passes
        validate, checked out; None when there is none left to try.  A stale
        object found on the way is destroyed under the slot this call holds,
        one at a time, so a destroy in progress still counts against
        max_size (a waiter cannot make its replacement meanwhile)."""
        validate = self._validate
        while True:
            victim: _Entry | None = None
            entry: _Entry | None = None
            with self._lock:
                if self._closed:
                    raise PoolClosed("the object pool is closed")
                idle = self._idle
                if idle and self._aging:
                    victim = self._stale_locked(self._clock(), anywhere=False)
                if victim is None and idle:
                    entry = idle.pop()
                    entry.uses += 1
                    self._out[id(entry.obj)] = entry
            if victim is not None:
                self._destroy_counted(victim)
                continue
            if entry is None or validate is None:
                return entry
            try:
                ok = validate(entry.obj)
            except Exception:
                ok = False
            except BaseException:
                # Interrupted half-way (Ctrl-C): its state is unknown.
                self._retire_checked_out(entry)
                raise
            if ok:
                return entry
            self._retire_checked_out(entry)

    def _retire_checked_out(self, entry: _Entry) -> None:
        """Destroy an object this get() had checked out, keeping the slot."""
        with self._lock:
            del self._out[id(entry.obj)]
        self._destroy_counted(entry)

    def _destroy_counted(self, entry: _Entry) -> None:
        """Destroy an object off every table; counted once it is gone, so
        stats().size includes objects still being destroyed."""
        try:
            self._destroy(entry.obj)
        finally:
            with self._lock:
                self._destroyed += 1

    def _stale_locked(self, now: float, anywhere: bool) -> _Entry | None:
        """(Lock held.)  Take one idle object to retire, if any: the oldest
        return when idle longer than max_idle (keeping min_size objects),
        else one past max_lifetime (the next to be handed out, or with
        ``anywhere`` any of them)."""
        idle = self._idle
        max_idle = self._max_idle
        if (max_idle is not None and now - idle[0].since > max_idle
                and self._created - self._destroyed > self._min_size):
            return idle.popleft()
        lifetime = self._max_lifetime
        if lifetime is None:
            return None
        if now - idle[-1].born > lifetime:
            return idle.pop()
        if anywhere:
            for i, entry in enumerate(idle):
                if now - entry.born > lifetime:
                    del idle[i]
                    return entry
        return None

    def _create(self) -> _Entry:
        """With a slot held and no idle object: make a new one."""
        obj = self._factory()
        now = self._clock()
        entry = _Entry(obj, now)
        entry.uses = 1
        with self._lock:
            if id(obj) in self._out or any(e.obj is obj for e in self._idle):
                # Tracking it twice would lose a slot for good.
                raise ValueError(f"factory returned {_describe(obj)}, which is already in "
                                 "this pool: it must make a new object each call")
            self._created += 1
            closed = self._closed
            if not closed:
                self._out[id(obj)] = entry
        if closed:
            self._destroy_counted(entry)
            raise PoolClosed("the object pool is closed")
        return entry

    # ------------------------------------------------------------ return

    def put(self, obj: T) -> None:
        """Return a checked-out object: ``reset`` runs, then it is idle again
        (or destroyed, when it reached max_uses or max_lifetime, or the pool
        is closed: then without ``reset``).  ValueError if obj is not checked
        out from this pool."""
        with self._lock:
            entry = self._out.pop(id(obj), None)
            if entry is None:
                raise ValueError(f"{_describe(obj)} is not checked out from this pool "
                                 "(never was, or was already returned)")
            if self._plain_return and not self._closed:
                self._idle.append(entry)
                entry = None
        if entry is None:
            self._free_slot()
        else:
            self._return(entry)

    def _return(self, entry: _Entry) -> None:
        """The slot of a checked-out entry (already off the out table)."""
        obj = entry.obj
        reset = self._reset
        if reset is not None and not self._closed:
            try:
                reset(obj)
            except BaseException:
                self._discard(entry)
                raise
        retire = self._max_uses is not None and entry.uses >= self._max_uses
        lifetime = self._max_lifetime
        now = self._clock() if self._aging else 0.0
        if lifetime is not None and now - entry.born > lifetime:
            retire = True
        if not retire:
            with self._lock:
                kept = not self._closed
                if kept:
                    entry.since = now
                    self._idle.append(entry)
            if kept:
                self._free_slot()
                return
        self._discard(entry)

    def invalidate(self, obj: T) -> None:
        """Destroy a checked-out object instead of putting it back (it is
        broken); its slot is freed.  ValueError if obj is not checked out from
        this pool."""
        with self._lock:
            entry = self._out.pop(id(obj), None)
            if entry is None:
                raise ValueError(f"{_describe(obj)} is not checked out from this pool "
                                 "(never was, or was already returned)")
            entry.invalidated = entry.uses
        self._discard(entry)

    def _put_lease(self, entry: _Entry, uses: int) -> None:
        with self._lock:
            if self._out.get(id(entry.obj)) is entry and entry.uses == uses:
                del self._out[id(entry.obj)]
                if self._plain_return and not self._closed:
                    self._idle.append(entry)
                    plain = True
                else:
                    plain = False
            elif entry.invalidated == uses:
                return  # invalidated inside the block: nothing to put back
            else:
                raise ValueError(f"{_describe(entry.obj)} was already returned to the pool "
                                 "inside the `with pool.acquire()` block")
        if plain:
            self._free_slot()
        else:
            self._return(entry)

    def _discard(self, entry: _Entry) -> None:
        """Destroy an object that is off every table, then free its slot."""
        try:
            # Destroyed before the slot is freed, so that a waiter making a
            # replacement never brings more than max_size live objects about.
            self._destroy_counted(entry)
        finally:
            self._free_slot()

    def _free_slot(self) -> None:
        try:
            self._permits.try_send(_PERMIT)
        except ChannelClosed:
            pass  # closed: nobody will take a slot again

    def _destroy(self, obj: Any) -> None:
        hook = self._destroy_hook
        try:
            if hook is not None:
                hook(obj)
            else:
                close = getattr(obj, "close", None)
                if callable(close):
                    close()
        except Exception as exc:
            _report(exc)

    # ------------------------------------------------------------ maintenance

    def prune(self) -> int:
        """Destroy now the idle objects past max_idle or max_lifetime (never
        going below min_size for max_idle); return how many.  Checkouts do
        this lazily anyway: call it from a timer of your own to release idle
        resources of a pool that is not being used."""
        if self._max_idle is None and self._max_lifetime is None:
            return 0
        count = 0
        while True:
            # Each object is destroyed under a free slot's permit, as in
            # _take_idle; no free slot: every object is out or being taken.
            try:
                self._permits.try_recv()
            except (Empty, ChannelClosed):
                return count
            try:
                with self._lock:
                    victim = (self._stale_locked(self._clock(), anywhere=True)
                              if self._idle else None)
                if victim is None:
                    return count
                self._destroy_counted(victim)
                count += 1
            finally:
                self._free_slot()

    def close(self) -> None:
        """Destroy the idle objects and refuse new checkouts (PoolClosed),
        waking the ``get`` calls that are waiting.  Objects still checked out
        are destroyed when put back.  Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            doomed = list(self._idle)
            self._idle.clear()
        self._permits.close()
        interrupted: BaseException | None = None
        for entry in doomed:
            try:
                self._destroy_counted(entry)
            except BaseException as exc:  # Ctrl-C: destroy the rest all the same
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    @property
    def max_size(self) -> int:
        """The most objects that exist at once."""
        return self._max_size

    def stats(self) -> ObjectPoolStats:
        """A consistent snapshot of the pool's counters."""
        with self._lock:
            return ObjectPoolStats(
                max_size=self._max_size, size=self._created - self._destroyed,
                idle=len(self._idle), in_use=len(self._out), created=self._created,
                destroyed=self._destroyed, waits=self._waits, timeouts=self._timeouts)

    def __enter__(self) -> ObjectPool[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        state = " closed" if self._closed else ""
        return (f"<fastconc.ObjectPool size={s.size} idle={s.idle} in_use={s.in_use} "
                f"max_size={s.max_size}{state}>")


class _Lease(Generic[T]):
    """What ``pool.acquire()`` returns: checks out on ``__enter__``, puts
    back on ``__exit__``.  Tells its own checkout from a later one of the same
    object, so a put() inside the block followed by the exit is caught as a
    double return instead of returning someone else's checkout."""

    __slots__ = ("_entry", "_pool", "_timeout", "_uses")

    def __init__(self, pool: ObjectPool[T], timeout: float | None | _Unset) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: _Entry | None = None
        self._uses = 0

    def __enter__(self) -> T:
        if self._entry is not None:
            raise RuntimeError("this acquire() context is already in use")
        entry = self._pool._get(self._timeout)
        self._entry = entry
        self._uses = entry.uses
        obj: T = entry.obj
        return obj

    def __exit__(self, *exc_info: object) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._pool._put_lease(entry, self._uses)


def _describe(obj: object) -> str:
    return f"{type(obj).__name__} object at {id(obj):#x}"
