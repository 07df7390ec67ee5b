"""Type stubs for the compiled select() (same API as _channel_select_py)."""

from collections.abc import Iterable
from typing import Any

from fastconc._channel_c import Channel

__all__ = ["select"]

def select(
    recv: Iterable[Channel[Any]] = (),
    send: Iterable[tuple[Channel[Any], Any]] = (),
    *,
    timeout: float | None = None,
) -> tuple[Channel[Any], Any]: ...
