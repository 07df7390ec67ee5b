"""What the user says and reads of one stage: Stage (the function and its
options, checked) and StageStats (a snapshot of its figures)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastconc._support.args import MAX_THREADS, int_arg

# What an exception from a stage's function can do (or a callable).
ON_ERROR = ("raise", "skip")


class Stage:
    """One step of a :class:`Pipeline`: ``fn(item) -> result``.

    ``workers``: loops running ``fn`` at once (default: the pipeline's).
    ``ordered``: keep input order when ``workers > 1`` (default: the
    pipeline's).  ``on_error``: what an exception from ``fn`` does:
    ``"raise"`` stops the pipeline and re-raises it at the consumer,
    ``"skip"`` drops the item, a callable ``on_error(item, exc)`` returns a
    replacement result.
    """

    __slots__ = ("fn", "name", "on_error", "ordered", "workers")

    def __init__(self, fn: Callable[[Any], Any], workers: int | None = None, *,
                 ordered: bool | None = None,
                 on_error: str | Callable[[Any, Exception], Any] = "raise",
                 name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if workers is not None:
            int_arg(workers, "workers", 1, MAX_THREADS)
        if ordered is not None and not isinstance(ordered, bool):
            raise TypeError("ordered must be a bool or None")
        if not callable(on_error) and on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR} or a callable, not {on_error!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str or None")
        self.fn = fn
        self.workers = workers
        self.ordered = ordered
        self.on_error = on_error
        self.name = name if name is not None else getattr(fn, "__name__", None) or repr(fn)

    def __repr__(self) -> str:
        return (f"Stage({self.name!r}, workers={self.workers}, ordered={self.ordered}, "
                f"on_error={self.on_error!r})")


@dataclass(frozen=True)
class StageStats:
    """A snapshot of one stage of the newest run.

    ``items``: inputs the stage has finished with (results, skips and
    failures).  ``errors``: exceptions raised by the stage's function.
    ``busy``: seconds spent inside the function, summed over its loops (with
    an executor: measured around each call where it ran).  ``queue_depth``:
    items waiting in the stage's input channel.
    """

    name: str
    workers: int
    items: int
    errors: int
    busy: float
    queue_depth: int
