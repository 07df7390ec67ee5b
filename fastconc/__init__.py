"""fastconc: fast, correct concurrency building blocks.

The primitives come from a compiled Cython core when it was built, otherwise
from a pure-Python twin with the same API; :data:`IMPLEMENTATION` says which
(``"cython"`` or ``"python"``) and :func:`implementations` gives both.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastconc._impl import IMPLEMENTATION, implementations, selected
from fastconc.errors import (
    ActorStopped,
    ChannelClosed,
    CircuitOpenError,
    ConcurrencyError,
    Deadlock,
    Empty,
    FallbackWarning,
    Full,
    PoolClosed,
    ResourceUnavailable,
    Timeout,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fastconc._channel_c import Channel
    from fastconc._channel_queue_c import Queue
    from fastconc._channel_select_c import select
    from fastconc._deque_c import WorkStealingDeque
    from fastconc._pool_c import WorkStealingPool
    from fastconc._ring_c import SpscRingBuffer, TypedRingBuffer
    from fastconc._ring_mpmc_c import RingBuffer
else:
    Channel = selected.Channel
    Queue = selected.Queue
    RingBuffer = selected.RingBuffer
    SpscRingBuffer = selected.SpscRingBuffer
    TypedRingBuffer = selected.TypedRingBuffer
    WorkStealingDeque = selected.WorkStealingDeque
    WorkStealingPool = selected.WorkStealingPool
    select = selected.select

from fastconc._support.executor import PoolStats, WorkerStats

# The high layer, written once on the primitives above (imports them from here).
from fastconc.actors import Actor, ActorRef, ActorSystem, Terminated  # noqa: E402
from fastconc.breaker import CircuitBreaker, CircuitMetrics, CircuitState  # noqa: E402
from fastconc.objpool import ObjectPool, ObjectPoolStats  # noqa: E402
from fastconc.pipeline import Pipeline, Stage, StageStats  # noqa: E402

__all__ = [
    "IMPLEMENTATION",
    "Actor",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "Channel",
    "ChannelClosed",
    "CircuitBreaker",
    "CircuitMetrics",
    "CircuitOpenError",
    "CircuitState",
    "ConcurrencyError",
    "Deadlock",
    "Empty",
    "FallbackWarning",
    "Full",
    "ObjectPool",
    "ObjectPoolStats",
    "Pipeline",
    "PoolClosed",
    "PoolStats",
    "Queue",
    "ResourceUnavailable",
    "RingBuffer",
    "SpscRingBuffer",
    "Stage",
    "StageStats",
    "Terminated",
    "Timeout",
    "TypedRingBuffer",
    "WorkStealingDeque",
    "WorkStealingPool",
    "WorkerStats",
    "__version__",
    "get_include",
    "implementations",
    "select",
]


def get_include() -> str:
    """Directory of fastconc's C headers, for extensions that cimport fastconc."""
    return os.path.join(os.path.dirname(__file__), "_support")


del selected
