"""WorkStealingPool shut down while several threads (and its own tasks)
keep submitting, round after round until the time budget is spent.

Each submit()/execute() either raised PoolClosed (a RuntimeError) or
accepted its task.  Every task runs at most once; an accepted task whose
future was not cancelled runs exactly once and its future holds its result;
a cancelled one never runs (cancel_futures only).  Without cancel_futures,
every accepted task runs, execute()'s included.  Nothing is accepted once
shutdown() has returned, and shutdown(wait=True) returns with no task left.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import threading
from collections import Counter

import pytest
from conftest import JOIN_TIMEOUT
from stress_helpers import jitter, random_pause, run_rounds

from fastconc import PoolClosed

pytestmark = [pytest.mark.stress,
              pytest.mark.thread_unsafe(reason="a stress test: times its own load")]

T = JOIN_TIMEOUT


@pytest.mark.parametrize("wait,cancel_futures", [(True, False), (False, False), (True, True),
                                                 (False, True)],
                         ids=["wait", "nowait", "wait-cancel", "nowait-cancel"])
def test_shutdown_while_threads_submit(impl, threads, tally, wait, cancel_futures):
    assert issubclass(PoolClosed, RuntimeError)
    submitters = 3
    run_rounds(tally, lambda: _shutdown_round(impl, threads, submitters, wait, cancel_futures))


def _shutdown_round(impl, threads, submitters: int, wait: bool,
                    cancel_futures: bool) -> tuple[int, int]:
    """One round: a fresh pool, shut down at a random moment.
    Returns (operations, items checked)."""
    total_calls = checked = 0
    seed = random.randrange(1 << 30)
    pool = impl.WorkStealingPool(2)
    ran: list[tuple[int, ...]] = []
    # (key, future or None for execute()) of every accepted task
    accepted: list[tuple[tuple[int, ...], cf.Future | None]] = []
    refused: list[str] = []  # list.append: a Counter's += is no atomic update
    late: list[tuple[int, ...]] = []
    returned = threading.Event()  # shutdown() has returned
    start = threading.Barrier(submitters + 1)

    def task(key: tuple[int, ...], spawn: bool) -> tuple[int, ...]:
        ran.append(key)
        if spawn:
            # From a worker: goes to its own deque, racing the shutdown.
            child = (*key, 1)
            try:
                accepted.append((child, pool.submit(task, child, False)))
            except PoolClosed:
                refused.append("child")
        return key

    def submitter(s: int) -> None:
        rnd = random.Random(seed + s)
        start.wait(T)
        i = 0
        while True:
            key = (s, i)
            i += 1
            after = returned.is_set()
            try:
                if rnd.random() < 0.7:
                    f: cf.Future | None = pool.submit(task, key, rnd.random() < 0.2)
                else:
                    pool.execute(task, key, False)
                    f = None
            except PoolClosed:
                refused.append("submit")
                return
            if after:
                late.append(key)
            accepted.append((key, f))
            jitter(rnd)

    def shut() -> None:
        pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        returned.set()
        if wait:
            # Every worker has exited: whatever was accepted so far has run or
            # was cancelled.  (Not stats().pending: a submit being refused
            # right now counts there for a moment.)
            have_run = set(ran)
            for key, f in list(accepted):
                if f is not None:
                    assert f.done(), f"{key}: pending after shutdown(wait=True)"
                elif not cancel_futures:
                    assert key in have_run, f"{key}: not run by shutdown(wait=True)"

    for s in range(submitters):
        threads.start(submitter, s)
    start.wait(T)
    random_pause(random.Random(seed - 1))
    if wait:
        threads.start(shut)  # joins the workers: bounded by threads.join()
    else:
        shut()
    threads.join()
    assert refused.count("submit") == submitters, "a submitter never saw PoolClosed"
    assert not late, f"accepted after shutdown() returned: {late[:5]}"
    with pytest.raises(PoolClosed):
        pool.submit(abs, 1)
    with pytest.raises(PoolClosed):
        pool.execute(abs, 1)
    assert pool.join(T), "tasks still pending after shutdown"
    if not wait:
        pool.shutdown(wait=True)  # workers exit once idle: join() saw that
    futures = [f for _, f in accepted if f is not None]
    done, not_done = cf.wait(futures, timeout=0 if wait else T)
    assert not not_done, f"{len(not_done)} futures never finished"
    runs = Counter(ran)
    twice = [k for k, c in runs.items() if c > 1]
    assert not twice, f"tasks ran twice: {twice[:5]}"
    keys = {k for k, _ in accepted}
    assert len(keys) == len(accepted)
    assert runs.keys() <= keys, "a task ran that no call accepted"
    for key, f in accepted:
        if f is not None and f.cancelled():
            assert cancel_futures, f"{key}: cancelled without cancel_futures"
            assert key not in runs, f"{key}: cancelled, yet it ran"
        elif f is not None:
            assert f.result(0) == key
            assert key in runs, f"{key}: finished without running"
        elif not cancel_futures:
            assert key in runs, f"{key}: accepted by execute() and never run"
    assert pool.stats().pending == 0
    checked += len(accepted)
    total_calls += len(accepted) + len(refused)
    return total_calls, checked
