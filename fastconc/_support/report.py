"""Reporting an exception nobody can catch (a hook, a listener, a task run
for nobody): as threading.excepthook reports an uncaught thread exception,
and the caller goes on."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import cast


def report_uncaught(exc: BaseException) -> None:
    """Never raises: an excepthook that fails is itself reported through
    sys.unraisablehook (a hook's failure must not stop the caller)."""
    try:
        threading.excepthook(threading.ExceptHookArgs(
            [type(exc), exc, exc.__traceback__, threading.current_thread()]))
    except BaseException as hook_exc:
        try:
            sys.unraisablehook(SimpleNamespace(
                exc_type=type(hook_exc), exc_value=hook_exc,
                exc_traceback=hook_exc.__traceback__,
                err_msg="Exception ignored in threading.excepthook", object=None))
        except BaseException:
            pass  # nothing is left to report with


def unraisable(exc: BaseException, where: str) -> None:
    """Report an error nobody can catch, as CPython does (sys.unraisablehook)."""
    args = SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
                           err_msg=where, object=None)
    sys.unraisablehook(cast("sys.UnraisableHookArgs", args))
