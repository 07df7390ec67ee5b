"""``python -m fastconc bench`` in a tiny mode: it runs every group and
reports, with both backends and with the fallback alone.  Never how fast."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastconc._bench import runner as _bench

TINY = ["--rounds", "1", "--scale", "0.001"]
KINDS = {"compiled", "fallback", "baseline", "fastconc", "other"}

pytestmark = pytest.mark.thread_unsafe(reason="runs a subprocess that starts many threads")


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastconc", "bench", *args],
                          capture_output=True, text=True, cwd="/", timeout=100,
                          env={**os.environ, **(env or {})})


def check_document(doc: dict, keys: list[str], backends: list[str]) -> None:  # type: ignore[type-arg]
    """The structure the fastconc._bench docstring documents."""
    assert isinstance(doc["fastconc"], str) and isinstance(doc["python"], str)
    assert isinstance(doc["gil_enabled"], bool)
    assert doc["backends"] == backends
    assert doc["backend_in_use"] in backends
    assert doc["rounds"] == 1 and doc["scale"] == 0.001
    assert [g["key"] for g in doc["groups"]] == keys
    for g in doc["groups"]:
        assert set(g) == {"key", "title", "unit", "n", "baseline", "notes", "results"}
        assert isinstance(g["n"], int) and g["n"] > 0
        names = [r["name"] for r in g["results"]]
        assert g["baseline"] is None or g["baseline"] in names
        for r in g["results"]:
            assert set(r) == {"name", "kind", "median_s", "per_op_s", "ops_per_s", "ratio"}
            assert r["kind"] in KINDS
            for key in ("median_s", "per_op_s", "ops_per_s", "ratio"):
                assert isinstance(r[key], float) and r[key] > 0 and math.isfinite(r[key])
        kinds = {r["kind"] for r in g["results"]}
        if g["key"] != "breaker":
            assert {"compiled" if b == "cython" else "fallback" for b in backends} <= kinds


@pytest.mark.parametrize("no_extensions", [
    pytest.param(False, id="both-backends", marks=pytest.mark.compiled),
    pytest.param(True, id="fallback-only"),
])
def test_bench_runs_every_group_and_writes_json(tmp_path, no_extensions):
    path = tmp_path / "bench.json"
    env = {"FASTCONC_NO_EXTENSIONS": "1"} if no_extensions else {}
    out = bench(*TINY, "--json", str(path), env=env)
    assert out.returncode == 0, out.stderr
    for group in _bench.GROUPS:
        assert group.title in out.stdout
    assert "(baseline)" in out.stdout
    assert "\033[K" not in out.stderr  # no progress line when stderr is not a terminal
    backends = ["python"] if no_extensions else ["cython", "python"]
    check_document(json.loads(path.read_text()), _bench.KEYS, backends)


def test_only_selects_groups(tmp_path):
    path = tmp_path / "bench.json"
    out = bench(*TINY, "--only", "pool,channel", "--json", str(path))
    assert out.returncode == 0, out.stderr
    doc = json.loads(path.read_text())
    assert [g["key"] for g in doc["groups"]] == ["channel", "pool"]  # suite order


def test_bad_arguments_are_refused():
    out = bench("--only", "channel,nonsense")
    assert out.returncode == 2 and "nonsense" in out.stderr
    out = bench("--rounds", "0")
    assert out.returncode == 2 and "--rounds" in out.stderr


def test_plot_needs_matplotlib(tmp_path: Path):
    path = tmp_path / "ratios.png"
    out = bench(*TINY, "--only", "ring", "--plot", str(path))
    if importlib.util.find_spec("matplotlib") is None:
        assert out.returncode == 2
        assert "pip install 'fastconc[plot]'" in out.stderr
        assert not path.exists()
    else:
        assert out.returncode == 0, out.stderr
        assert path.read_bytes().startswith(b"\x89PNG")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal():
    out, err = io.StringIO(), Terminal()
    doc = _bench.run(["breaker", "objpool"], 0.001, 1, out, err)
    assert "[1/2] breaker: CircuitBreaker" in err.getvalue()
    assert "[2/2] objpool: " in err.getvalue()
    assert err.getvalue().endswith("\r\033[K")  # cleared at the end
    assert [g["key"] for g in doc["groups"]] == ["breaker", "objpool"]
    assert "CircuitBreaker: a no-op call" in out.getvalue()
