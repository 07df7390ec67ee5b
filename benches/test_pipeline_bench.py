"""A 3-stage Pipeline (both backends) against the hand-written chain of
queue.Queue + one thread per stage, side by side.
Run: ``tox -e bench -- -k pipeline``."""

from __future__ import annotations

import pytest
from conftest import scaled

from fastconc._bench import workloads as w

ITEMS = scaled(1_000_000)


@pytest.mark.benchmark(group="pipeline: 3 trivial stages, capacity 64")
@pytest.mark.parametrize(("name", "run"), w.pipeline_contenders(),
                         ids=[name for name, _ in w.pipeline_contenders()])
def test_pipeline_three_stages(benchmark, name, run):
    benchmark.extra_info["items"] = ITEMS
    result = benchmark.pedantic(run, (ITEMS, 64), rounds=3, warmup_rounds=0)
    assert result == w.pipeline_checksum(ITEMS)
