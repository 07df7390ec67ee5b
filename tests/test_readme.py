"""The README's "Which part do I need?" examples run as they are."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def guide_examples() -> list[str]:
    if not README.exists():
        return []
    text = README.read_text(encoding="utf-8")
    section = text.split("## Which part do I need?", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    # The blocks are indented under list items.
    return ["\n".join(line[2:] for line in block.splitlines()) for block in blocks]


EXAMPLES = guide_examples()


@pytest.mark.skipif(not EXAMPLES, reason="README.md not beside the tests")
@pytest.mark.thread_unsafe(reason="captures stdout")
@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_guide_example_runs(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().strip(), "every example prints what it shows"


@pytest.mark.skipif(not README.exists(), reason="README.md not beside the tests")
def test_guide_has_an_example_per_part():
    # Channel, Queue, the object rings, TypedRingBuffer, WorkStealingPool,
    # actors, Pipeline, CircuitBreaker, ObjectPool.
    assert len(EXAMPLES) == 9
