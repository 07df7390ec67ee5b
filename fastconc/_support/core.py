"""The narrow interface between the Executor shell (executor.py, futures.py,
spares.py) and a backend's pool core (``_pool_c._PoolCore`` or
``_pool_py._PoolCore``): what a core provides (PoolCore), and what a core
may use of a future it waits on (CoreFuture, which futures.PoolFuture
implements).  Written as Protocols, so both sides are type-checked against
one text; it imports nothing of fastconc, so every module of the shell can
depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

__all__ = ["CoreFuture", "PoolCore"]


class CoreFuture(Protocol):
    """What a core may use of a future a worker waits on (help_until), and
    nothing else: never Future's own fields such as ``_state``.  The tasks
    that settle a future also call its ``_claim()``, ``set_result()`` and
    ``set_exception()``."""

    # The core's queued task that settles this future: set by the core as
    # it queues the task, cleared by whoever takes the task.
    _task: object

    def done(self) -> bool:
        """Lock-free: the cores' help loops poll it between tasks."""
        ...

    def _wake_when_done(self, callback: Callable[[Future[Any]], object]) -> None:
        """Call callback(future) once it settles; registered once."""
        ...


class PoolCore(Protocol):
    """What a backend's _PoolCore provides to the shell."""

    max_workers: int
    # Spare threads started for blocked workers (futures._block, spares.start_spare)
    # and the name prefix they get (set by PoolExecutor).
    spare_threads: set[threading.Thread]
    thread_prefix: str

    def __init__(self, nworkers: int, error_handler: Callable[[BaseException], object] | None,
                 max_spares: int = ...) -> None: ...
    def execute(self, fn: Callable[..., object], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None: ...
    def submit(self, future: Future[Any], fn: Callable[..., object], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> None: ...
    def submit_batch(self, future: Future[Any], fn: Callable[..., object], items: list[Any],
                     star: bool) -> None: ...
    def run(self, index: int) -> None: ...
    def owns_current_thread(self) -> bool: ...
    def help_until(self, future: CoreFuture, timeout: float | None) -> bool: ...
    def begin_block(self) -> bool: ...
    def end_block(self) -> None: ...
    def release_spare(self) -> None: ...
    def run_spare(self) -> None: ...
    def join(self, timeout: float | None) -> bool: ...
    def close(self, error: BaseException, cancel_futures: bool,
              fail_with: BaseException | None = None) -> None: ...
    def stats(self) -> tuple[list[tuple[int, int, int]], int, tuple[int, int, int], int, int]: ...
