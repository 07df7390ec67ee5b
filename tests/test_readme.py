"""The README's "Which part do I need?" examples run as they are, and no
markdown document of the repository links outside it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


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


# --- links ------------------------------------------------------------------

def markdown_files() -> list[Path]:
    """README.md, DEVELOPING.md, every other markdown file at the root and
    every one under docs/."""
    found = set(ROOT.glob("*.md")) | set((ROOT / "docs").rglob("*.md"))
    return sorted(found)


# Fenced code blocks (``` or ~~~, possibly indented under a list item) and
# inline code spans hold text, not links.
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)

# [text](target "title") and ![alt](target): the target, up to a space or ')'.
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(].*?)?\s*\)",
                     re.S)
# [label]: target
_REFERENCE = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
# <scheme:...> autolinks, and HTML href/src attributes.
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
_HTML_ATTR = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
# Any URL with a scheme GitHub or PyPI would turn into a link by itself.
_BARE_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.I)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(text: str) -> str:
    text = _HTML_COMMENT.sub("", text)
    text = _FENCE.sub("", text)
    return _CODE_SPAN.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    heading = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    heading = heading.strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text, flags=re.M):
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def link_targets(text: str) -> list[str]:
    prose = _prose(text)
    targets: list[str] = []
    for pattern in (_INLINE, _REFERENCE, _AUTOLINK, _HTML_ATTR):
        targets += [m.group(1) for m in pattern.finditer(prose)]
        prose = pattern.sub(" ", prose)  # a URL is reported once
    targets += [m.group(0).rstrip(".,;:)]}>'\"") for m in _BARE_URL.finditer(prose)]
    return targets


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Every link or image of one markdown file that leaves the repository
    (``root``), does not resolve, or names an anchor its target lacks."""
    problems = []
    root = root.resolve()
    where = path.resolve().relative_to(root)
    for target in link_targets(path.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//") or target.lower().startswith("www."):
            problems.append(f"{where}: {target!r} leaves the repository")
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        if file_part.startswith("/"):
            problems.append(f"{where}: {target!r} is an absolute path (use a relative one)")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if resolved != root and root not in resolved.parents:
            problems.append(f"{where}: {target!r} resolves outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}: {target!r} does not exist")
            continue
        if anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            problems.append(f"{where}: {target!r}: no heading with anchor #{anchor}")
    return problems


MARKDOWN = markdown_files()


@pytest.mark.skipif(not README.exists(), reason="the documents are not beside the tests")
@pytest.mark.parametrize("path", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_links_stay_inside_the_repository(path):
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(not README.exists(), reason="the documents are not beside the tests")
def test_the_documents_are_checked():
    names = {str(p.relative_to(ROOT)) for p in MARKDOWN}
    assert {"README.md", "DEVELOPING.md"} <= names
    assert any(name.startswith("docs/") for name in names)


def test_link_checker_catches_what_it_must(tmp_path):
    # The checker itself: each of these must be reported, none of the
    # allowed forms may be.
    (tmp_path / "docs").mkdir()
    (tmp_path / "LICENSE").write_text("x")
    (tmp_path / "docs" / "a.png").write_bytes(b"")
    doc = tmp_path / "docs" / "X.md"
    doc.write_text(
        "# Title here\n\n"
        "[ok](../LICENSE) ![ok](a.png) [ok](#title-here) [ok](X.md#title-here)\n"
        "`[not a link](https://example.org)`\n\n"
        "```\n[not a link](../../outside.md)\n```\n\n"
        "[web](https://example.org/x) [up](../../outside.md) [gone](missing.md)\n"
        "<https://example.org> see http://example.org too\n"
        "[abs](/etc/passwd) [mail](mailto:someone@example.org) [bad](#nowhere)\n"
        "[ref]: http://example.org/ref\n",
        encoding="utf-8",
    )
    problems = link_problems(doc, root=tmp_path)
    joined = "\n".join(problems)
    for bad in ("https://example.org/x", "../../outside.md", "missing.md",
                "'https://example.org'", "'http://example.org'", "/etc/passwd",
                "mailto:someone@example.org", "#nowhere", "http://example.org/ref"):
        assert bad in joined, (bad, problems)
    assert "LICENSE" not in joined and "a.png" not in joined and "title-here" not in joined
    assert len(problems) == 9, problems
