"""Spare threads: how a pool compensates for a worker that must block on a
future (its helping exhausted), as Java's ForkJoinPool does: the core keeps
max_workers threads unblocked by starting a spare, up to a bound."""

from __future__ import annotations

import itertools
import threading

from fastconc._support.core import PoolCore
from fastconc._support.report import unraisable

# Most spare threads one pool runs at once to compensate for workers blocked
# on a future (see futures._block): Java's ForkJoinPool allows parallelism + 256
# threads in all by default; this is the same 256 on top of max_workers.
# Past it, a worker that must wait blocks without compensation.
MAX_SPARES = 256

_spare_counter = itertools.count().__next__


def start_spare(core: PoolCore) -> None:
    """Start the spare thread core.begin_block() reserved a slot for.  If it
    cannot be started (out of threads or memory), the slot is given back and
    the caller blocks uncompensated, as past the bound."""
    threads = core.spare_threads
    try:
        for t in list(threads):  # forget the ones that have retired
            if not t.is_alive() and t.ident is not None:
                threads.discard(t)
        t = threading.Thread(target=_spare, args=(core,), daemon=False,
                             name=f"{core.thread_prefix}_spare{_spare_counter()}")
        threads.add(t)
        try:
            t.start()
        except BaseException:
            threads.discard(t)
            raise
    except Exception as exc:  # noqa: BLE001 - e.g. "can't start new thread"
        core.release_spare()
        unraisable(exc, "starting a spare WorkStealingPool thread (the waiter blocks instead)")


def _spare(core: PoolCore) -> None:
    core.run_spare()
