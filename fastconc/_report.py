"""Reporting an exception nobody can catch (a hook, a listener, a task run
for nobody): as threading.excepthook reports an uncaught thread exception,
and the caller goes on."""

from __future__ import annotations

import threading


def report_uncaught(exc: BaseException) -> None:
    threading.excepthook(threading.ExceptHookArgs(
        [type(exc), exc, exc.__traceback__, threading.current_thread()]))
