"""Typecodes and buffer checks shared by both TypedRingBuffer backends.

A TypedRingBuffer holds C numbers of one ``array``-module typecode.  A batch
buffer matches it when it is C-contiguous, in native byte order, and holds
numbers of the same kind (signed, unsigned, float) and size: so a ring of
'q' accepts numpy int64 arrays, whose format is 'l' on LP64 platforms.
"""

from __future__ import annotations

import array
import sys
from typing import Any

__all__ = ["TYPECODES", "check_buffer", "check_typecode"]

# typecode -> kind; 'u' (wchar) is not a number and is left out.
_KINDS = {
    "b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "n": "i",
    "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u", "N": "u",
    "f": "f", "d": "f",
}
TYPECODES = "bBhHiIlLqQfd"

_NATIVE = "<" if sys.byteorder == "little" else ">"


def check_typecode(typecode: Any) -> tuple[str, int]:
    """Validate a typecode; return (kind, itemsize)."""
    if not isinstance(typecode, str):
        raise TypeError(f"typecode must be a str, not {type(typecode).__name__}")
    if len(typecode) != 1 or typecode not in TYPECODES:
        raise ValueError(f"typecode must be one of {', '.join(TYPECODES)}; got {typecode!r}")
    return _KINDS[typecode], array.array(typecode).itemsize


def _format_kind(fmt: str) -> str | None:
    if fmt[:1] in ("@", "="):
        fmt = fmt[1:]
    elif fmt[:1] in ("<", ">", "!"):
        if (">" if fmt[0] == "!" else fmt[0]) != _NATIVE:
            return None
        fmt = fmt[1:]
    return _KINDS.get(fmt) if len(fmt) == 1 else None


def check_buffer(obj: Any, typecode: str, name: str, writable: bool) -> memoryview:
    """A flat byte view of ``obj`` after checking it matches ``typecode``.

    Raises TypeError for objects without the buffer protocol (or read-only
    ones when ``writable``) and ValueError for a format, item size or layout
    that does not match; nothing is copied before these checks pass.
    """
    kind, itemsize = check_typecode(typecode)
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(
            f"{name} must support the buffer protocol, not {type(obj).__name__}"
        ) from None
    if writable and view.readonly:
        raise TypeError(f"{name} is read-only")
    # An empty buffer is contiguous whatever its strides, as C's
    # PyBuffer_IsContiguous (the compiled ring's check) says; memoryview's
    # c_contiguous says no for an empty strided slice.
    if not view.c_contiguous and view.nbytes:
        raise ValueError(f"{name} must be C-contiguous")
    if view.itemsize != itemsize or _format_kind(view.format) != kind:
        raise ValueError(
            f"{name} holds format {view.format!r} (itemsize {view.itemsize}); "
            f"this ring holds {typecode!r} (itemsize {itemsize})"
        )
    return view.cast("B") if view.c_contiguous else memoryview(bytearray())
