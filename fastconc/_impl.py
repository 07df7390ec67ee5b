"""The only place that decides which backend fastconc uses.

* ``FASTCONC_NO_EXTENSIONS`` (any non-empty value) forces the pure-Python
  backend; so does any interpreter other than CPython.
* Otherwise the compiled backend is used when it was built.  If it is missing
  the fallback is used, unless ``FASTCONC_REQUIRE_EXTENSIONS`` is set, in
  which case importing fastconc fails loudly.

The fallback is never silent: :data:`FALLBACK` says in words why it was
chosen, and when the reason is that fastconc was imported from a source
checkout with no compiled modules (``python -m fastconc`` from the checkout's
root puts that folder first on ``sys.path``), or from a build whose compiled
modules fail to import, a :class:`~fastconc.errors.FallbackWarning` names the
folder and how to avoid it.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
import warnings
from typing import NamedTuple

from fastconc.errors import FallbackWarning

__all__ = ["FALLBACK", "IMPLEMENTATION", "NO_EXTENSIONS", "Fallback", "implementations",
           "selected"]

NO_EXTENSIONS = bool(os.environ.get("FASTCONC_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
REQUIRE_EXTENSIONS = bool(os.environ.get("FASTCONC_REQUIRE_EXTENSIONS"))

# The public names each backend module provides.
_PUBLIC_NAMES = (
    "Channel",
    "Queue",
    "RingBuffer",
    "SpscRingBuffer",
    "TypedRingBuffer",
    "WorkStealingDeque",
    "WorkStealingPool",
    "select",
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
    from fastconc import (
        _channel_py,
        _channel_queue_py,
        _channel_select_py,
        _deque_py,
        _pool_py,
        _ring_mpmc_py,
        _ring_py,
    )

    return _namespace("python", _channel_py, _channel_queue_py, _channel_select_py,
                      _ring_mpmc_py, _ring_py, _deque_py, _pool_py)


def load_cython() -> types.SimpleNamespace:
    """The compiled backend, imported directly: raises ImportError if it was
    not built, so a broken build can never pass for the fallback."""
    from fastconc import (
        _channel_c,
        _channel_queue_c,
        _channel_select_c,
        _deque_c,
        _pool_c,
        _ring_c,
        _ring_mpmc_c,
    )

    return _namespace("cython", _channel_c, _channel_queue_c, _channel_select_c,
                      _ring_mpmc_c, _ring_c, _deque_c, _pool_c)


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


class Fallback(NamedTuple):
    """Why the pure-Python backend is in use."""

    reason: str  # in words, for a user
    # True when the user asked for the fallback or no compiled build exists
    # anywhere; False when a build exists but is shadowed or broken, so the
    # fallback's figures must not pass for the library's.
    expected: bool
    # True when a FallbackWarning is due: the fallback was not expected, or
    # a source checkout was imported (it may shadow a build made later).
    # An install without a compiler already said so when it was built.
    warn: bool


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PROBE = "_channel_c"  # one compiled module stands for the core


def _compiled_files(folder: str) -> list[str]:
    return [os.path.join(folder, _PROBE + suffix)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if os.path.exists(os.path.join(folder, _PROBE + suffix))]


def _is_source_checkout(folder: str) -> bool:
    return (os.path.exists(os.path.join(folder, _PROBE + ".pyx"))
            and os.path.exists(os.path.join(os.path.dirname(folder), "setup.py")))


def _compiled_build_elsewhere() -> str | None:
    """The folder of another fastconc on sys.path that has compiled modules
    for this interpreter (the one a source checkout shadows), if any."""
    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or os.curdir), "fastconc")
        if folder != _PACKAGE_DIR and _compiled_files(folder):
            return folder
    return None


def _diagnose(error: ImportError | None) -> Fallback:
    if os.environ.get("FASTCONC_NO_EXTENSIONS"):
        return Fallback("FASTCONC_NO_EXTENSIONS is set, which asks for the pure-Python "
                        "fallback", True, False)
    if sys.implementation.name != "cpython":
        return Fallback(f"the compiled core is for CPython and this is "
                        f"{sys.implementation.name}", True, False)
    if _compiled_files(_PACKAGE_DIR):
        return Fallback(f"the compiled modules in {_PACKAGE_DIR} fail to import ({error}); "
                        f"reinstall fastconc", False, True)
    if _is_source_checkout(_PACKAGE_DIR):
        elsewhere = _compiled_build_elsewhere()
        if elsewhere is not None:
            return Fallback(
                f"fastconc was imported from the source folder {_PACKAGE_DIR}, which has no "
                f"compiled modules and shadows the compiled build in {elsewhere} (it comes "
                f"first on sys.path: python -m and python -c put the current directory "
                f"there); run the `fastconc` command, or run from another directory",
                False, True)
        return Fallback(
            f"fastconc was imported from the source folder {_PACKAGE_DIR}, which has no "
            f"compiled modules, and no compiled build is installed; install it "
            f"(pip install .) and run the `fastconc` command or from another directory, or "
            f"build in place (python setup.py build_ext --inplace)", True, True)
    return Fallback("fastconc was installed without its compiled core (no C compiler or "
                    "Cython at install time, or FASTCONC_NO_EXTENSIONS set then)", True, False)


def _select() -> tuple[str, types.SimpleNamespace, Fallback | None]:
    error: ImportError | None = None
    if not NO_EXTENSIONS:
        try:
            return "cython", load_cython(), None
        except ImportError as exc:
            if REQUIRE_EXTENSIONS:
                raise
            error = exc
    fallback = _diagnose(error)
    if fallback.warn:
        warnings.warn(f"fastconc uses its pure-Python fallback: {fallback.reason}",
                      FallbackWarning, stacklevel=2)
    return "python", load_python(), fallback


IMPLEMENTATION, selected, FALLBACK = _select()
"""IMPLEMENTATION: "cython" or "python"; FALLBACK: why "python", or None."""
