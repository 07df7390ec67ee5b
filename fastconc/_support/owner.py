"""Which thread owns one side of a single-producer or single-consumer
structure (the first thread to use that side, for the structure's life)."""

from __future__ import annotations

import threading


class Owner:
    """Which thread owns one side of a single-producer/consumer ring."""

    __slots__ = ("_ident", "_lock")

    def __init__(self) -> None:
        self._ident: int | None = None
        self._lock = threading.Lock()

    def claim(self, cls: str, role: str) -> None:
        me = threading.get_ident()
        if self._ident == me:
            return
        with self._lock:
            if self._ident is None:
                self._ident = me
                return
        raise RuntimeError(
            f"{cls} is single-{role}: another thread already {role}s to it "
            f"(the first thread to {role} owns that side for the ring's lifetime)")
