"""Every module of the installed package imports on its own in a fresh
interpreter (aio-libs' test_circular_imports idea): an import cycle, or a
module that works only when another was imported first, fails here loudly
instead of depending on the order the suite happened to import things."""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
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


def _setup_modules() -> list[str] | None:
    """setup.MODULES, read from the source tree beside the tests (None when
    the tests run without it)."""
    setup_py = pathlib.Path(__file__).resolve().parent.parent / "setup.py"
    if not setup_py.exists():
        return None
    for node in ast.parse(setup_py.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no MODULES list")


@pytest.mark.compiled
def test_the_installed_package_holds_no_test_only_code():
    """The compiled modules installed are exactly those setup.py builds for
    the package, and none carries a test hook (test-only C code lives in
    tests/cext and is built by the tests that need it)."""
    built = _setup_modules()
    if built is None:
        pytest.skip("setup.py is not beside the tests")
    installed = sorted(name.rsplit(".", 1)[-1] for name in MODULES if name.endswith("_c"))
    assert installed == sorted(built)
    for name in installed:
        module = importlib.import_module(f"fastconc.{name}")
        hooks = [attr for attr in dir(module) if "race" in attr.lower() or "test" in attr.lower()]
        assert hooks == [], f"fastconc.{name} carries test hooks: {hooks}"
