"""The only place that decides which backend fastconc uses.

* ``FASTCONC_NO_EXTENSIONS`` (any non-empty value) forces the pure-Python
  backend; so does any interpreter other than CPython.
* Otherwise the compiled backend is used when it was built.  If it is missing
  the fallback is used, unless ``FASTCONC_REQUIRE_EXTENSIONS`` is set, in
  which case importing fastconc fails loudly.
"""

from __future__ import annotations

import os
import sys
import types

__all__ = ["IMPLEMENTATION", "NO_EXTENSIONS", "implementations", "selected"]

NO_EXTENSIONS = bool(os.environ.get("FASTCONC_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
REQUIRE_EXTENSIONS = bool(os.environ.get("FASTCONC_REQUIRE_EXTENSIONS"))

# Public name -> attribute, per backend module.  Later primitives add rows.
_PUBLIC_NAMES = (
    "Channel",
    "Queue",
    "RingBuffer",
    "SpscRingBuffer",
    "TypedRingBuffer",
    "WorkStealingDeque",
    "WorkStealingPool",
)


def _namespace(name: str, *modules: types.ModuleType) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(name=name)
    for module in modules:
        for public in _PUBLIC_NAMES:
            if hasattr(module, public):
                setattr(ns, public, getattr(module, public))
    return ns


def load_python() -> types.SimpleNamespace:
    """The pure-Python backend."""
    from fastconc import _channel_py, _pool_py, _ring_py

    return _namespace("python", _channel_py, _ring_py, _pool_py)


def load_cython() -> types.SimpleNamespace:
    """The compiled backend, imported directly: raises ImportError if it was
    not built, so a broken build can never pass for the fallback."""
    from fastconc import _channel_c, _pool_c, _ring_c

    return _namespace("cython", _channel_c, _ring_c, _pool_c)


def implementations() -> dict[str, types.SimpleNamespace]:
    """``{"cython": ns, "python": ns}`` for the backends available here.

    Each ``ns`` holds that backend's primitives under their public names
    (``ns.Channel``, ``ns.Queue``, ...).  With ``FASTCONC_NO_EXTENSIONS`` set
    only "python" is listed.
    """
    found: dict[str, types.SimpleNamespace] = {}
    if not NO_EXTENSIONS:
        try:
            found["cython"] = load_cython()
        except ImportError:
            if REQUIRE_EXTENSIONS:
                raise
    found["python"] = load_python()
    return found


def _select() -> tuple[str, types.SimpleNamespace]:
    available = implementations()
    name = "cython" if "cython" in available else "python"
    return name, available[name]


IMPLEMENTATION, selected = _select()
