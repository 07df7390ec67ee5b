"""Every module of the installed package imports on its own in a fresh
interpreter (aio-libs' test_circular_imports idea): an import cycle, or a
module that works only when another was imported first, fails here loudly
instead of depending on the order the suite happened to import things."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import pytest
from conftest import COMPILED, JOIN_TIMEOUT

import fastconc

pytestmark = pytest.mark.thread_unsafe(reason="runs subprocesses")


def _modules() -> list[str]:
    names = ["fastconc"]
    for info in pkgutil.walk_packages(fastconc.__path__, "fastconc."):
        compiled = info.name.rsplit(".", 1)[-1].endswith("_c")
        if compiled and not COMPILED:
            continue  # a pure env has no compiled modules to import
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_the_package_lists_its_modules():
    """The walk finds the package's modules (a typo'd path would make every
    case below vanish instead of fail)."""
    assert {"fastconc.actors", "fastconc._impl", "fastconc.errors"} <= set(MODULES)
    if COMPILED:
        assert "fastconc._channel_c" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    proc = subprocess.run(
        [sys.executable, "-W", "error::ImportWarning", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=JOIN_TIMEOUT, env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"import {module} failed alone:\n{proc.stderr}"
