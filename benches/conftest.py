"""Benchmark settings.  FASTCONC_BENCH_SCALE shrinks every workload (e.g.
0.01 for a smoke run); the figures quoted in the README use the default 1."""

from __future__ import annotations

import os

import pytest

from fastconc._bench import workloads as _workloads


def scaled(n: int) -> int:
    return max(100, int(n * float(os.environ.get("FASTCONC_BENCH_SCALE", "1"))))


def contender_params(kind: str) -> list:
    return [pytest.param(c, id=c.name) for c in _workloads.contenders(kind)]
