"""The fallback is never silent.

fastconc imported from a source checkout without compiled modules warns,
naming the folder (and the installed build it shadows, if any); the bench
refuses to present fallback figures as the library's unless the user asked
for the fallback or no compiled build exists, and then says why on its first
line; the ``fastconc`` console script imports the installed build even when
run from a checkout's root.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import fastconc

SOURCE_TREE = pathlib.Path(__file__).resolve().parent.parent
INSTALLED = pathlib.Path(fastconc.__file__).resolve().parent
COMPILED_INSTALLED = "cython" in fastconc.implementations()
TINY_BENCH = ["bench", "--rounds", "1", "--scale", "0.001", "--only", "breaker"]

pytestmark = pytest.mark.thread_unsafe(reason="runs subprocesses")


def run(args: list[str], cwd: pathlib.Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    # The caller's FASTCONC_* (the c envs set REQUIRE_EXTENSIONS) would change
    # what is being checked: the user's plain environment is the point.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FASTCONC_", "PYTHON"))}
    return subprocess.run(args, cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def checkout(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the source checkout as a clone has it: sources, no build."""
    if not (SOURCE_TREE / "fastconc" / "_channel_c.pyx").exists():
        pytest.skip("the source tree is not beside the tests")
    root = tmp_path / "checkout"
    shutil.copytree(SOURCE_TREE / "fastconc", root / "fastconc",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "*.html",
                                                  "__pycache__"))
    shutil.copy(SOURCE_TREE / "setup.py", root / "setup.py")
    return root


def test_import_from_a_checkout_warns(checkout):
    out = run([sys.executable, "-c", "import fastconc; print(fastconc.IMPLEMENTATION)"],
              cwd=checkout)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "python"
    assert "FallbackWarning" in out.stderr
    assert str(checkout / "fastconc") in out.stderr
    if COMPILED_INSTALLED:
        assert f"shadows the compiled build in {INSTALLED}" in out.stderr
    else:
        assert "no compiled build is installed" in out.stderr


def test_bench_from_a_checkout(checkout):
    out = run([sys.executable, "-m", "fastconc", *TINY_BENCH], cwd=checkout)
    if COMPILED_INSTALLED:
        # A build exists: the fallback's figures must not pass for it.
        assert out.returncode == 2, out.stdout
        assert "not measuring the pure-Python fallback" in out.stderr
        assert f"shadows the compiled build in {INSTALLED}" in out.stderr
        assert "ratio" not in out.stdout and "calls/s" not in out.stdout
    else:
        # No build anywhere: it runs, and says why on the first line.
        assert out.returncode == 0, out.stderr
        first = out.stdout.splitlines()[0]
        assert first.startswith("PURE-PYTHON FALLBACK ONLY")
        assert "no compiled build is installed" in first
        assert "backend in use: python" in out.stdout


def test_main_without_arguments_from_a_checkout_prints_the_diagnosis(checkout):
    out = run([sys.executable, "-m", "fastconc"], cwd=checkout)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("PURE-PYTHON FALLBACK ONLY")
    assert str(checkout / "fastconc") in first


def test_asked_for_fallback_runs_and_says_why(checkout):
    for cwd in ("/", checkout):
        out = run([sys.executable, "-m", "fastconc", *TINY_BENCH], cwd=cwd,
                  FASTCONC_NO_EXTENSIONS="1")
        assert out.returncode == 0, out.stderr
        assert "FallbackWarning" not in out.stderr  # the user chose it
        first = out.stdout.splitlines()[0]
        assert first.startswith("PURE-PYTHON FALLBACK ONLY")
        assert "FASTCONC_NO_EXTENSIONS is set" in first
        assert "CircuitBreaker" in out.stdout


def test_installed_package_imports_without_a_warning():
    out = run([sys.executable, "-W", "error", "-c", "import fastconc"], cwd="/")
    assert out.returncode == 0, out.stderr
    out = run([sys.executable, "-m", "fastconc"], cwd="/")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    if COMPILED_INSTALLED:
        assert first.startswith("fastconc ") and "backend in use: cython" in out.stdout
    else:
        # A pure install: its first line says why, without a warning.
        assert first.startswith("PURE-PYTHON FALLBACK ONLY")
        assert "installed without its compiled core" in first


def test_console_script_uses_the_installed_build_from_a_checkout(checkout):
    script = shutil.which("fastconc", path=os.path.dirname(sys.executable))
    assert script is not None, "the fastconc console script is not installed"
    out = run([script], cwd=checkout)
    assert out.returncode == 0, out.stderr
    assert "FallbackWarning" not in out.stderr
    assert f"backend in use: {fastconc.IMPLEMENTATION}" in out.stdout
    assert "usage: fastconc " in out.stdout and "  fastconc bench " in out.stdout


@pytest.mark.compiled
def test_broken_compiled_module_warns_and_bench_refuses(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(INSTALLED, site / "fastconc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for module in (site / "fastconc").glob("_channel_c*.so"):
        module.write_bytes(b"not an ELF file")
    out = run([sys.executable, "-c", "import fastconc; print(fastconc.IMPLEMENTATION)"],
              cwd="/", PYTHONPATH=str(site))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "python"
    assert "FallbackWarning" in out.stderr and "fail to import" in out.stderr
    out = run([sys.executable, "-m", "fastconc", *TINY_BENCH], cwd="/", PYTHONPATH=str(site))
    assert out.returncode == 2 and "fail to import" in out.stderr
