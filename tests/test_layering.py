"""Imports go downward only, as docs/ARCHITECTURE.md draws them.

Every ``.py``, ``.pyx`` and ``.pxd`` of the package is parsed (imports and
cimports; an import under ``if TYPE_CHECKING:`` only serves a type checker
and is not an arrow) and each arrow is checked against the never-arrows of
the design:

* the high layer imports a backend module (it is written once on the public
  primitives, whichever backend is chosen);
* a compiled module imports a fallback module or the other way round;
* a backend, the support tier or the chooser imports the high layer or the
  bench command;
* anything but the chooser (``_impl``) imports a backend module, apart from
  one compiled module cimporting another's public C-level declarations;
* a private name (``_x``) is imported from another primitive's module (what
  two primitives share lives in the support tier).  A primitive may span
  several modules named after it (``_channel_c`` and ``_channel_queue_c``,
  ``_pool_c`` and ``_pool_task_c``): they share private names.

The source tree is read from beside the tests (the installed wheel holds no
``.pyx``); the check is skipped only when the tests run without it.
"""

from __future__ import annotations

import ast
import pathlib
import re
from collections.abc import Iterator

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "fastconc"

pytestmark = pytest.mark.skipif(not (SOURCE / "__init__.py").exists(),
                                reason="the source tree is not beside the tests")

Arrow = tuple[str, str, str, int]  # importer, imported module, name ("" for a module), line

HIGH = ("fastconc.actors", "fastconc.breaker", "fastconc.objpool", "fastconc.pipeline")
BENCH = ("fastconc.__main__", "fastconc._bench")
CHOOSER = "fastconc._impl"
SUPPORT = ("fastconc._support",)
SURFACE = ("fastconc", "fastconc.errors")


def _under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def flavour(module: str) -> str | None:
    """"c" or "py" for a backend module (``_channel_c``, ``_ring_py``...)."""
    m = re.fullmatch(r"fastconc\._(\w+)_(c|py)", module)
    return m.group(2) if m else None


def primitive(module: str) -> str | None:
    """The primitive a backend module belongs to: the first word of its name
    (``_pool_task_c`` -> "pool")."""
    m = re.fullmatch(r"fastconc\._([a-z]+)(?:_\w+)?_(?:c|py)", module)
    return m.group(1) if m else None


def tier(module: str) -> str:
    if flavour(module):
        return "backend"
    if module == CHOOSER:
        return "chooser"
    for name, roots in (("high", HIGH), ("bench", BENCH), ("support", SUPPORT)):
        if _under(module, roots):
            return name
    if module in SURFACE:
        return "surface"
    raise AssertionError(f"{module} belongs to no tier: add it to test_layering's map "
                         "and to docs/ARCHITECTURE.md")


def module_name(path: pathlib.Path, root: pathlib.Path = SOURCE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base[:len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([module] if module else []))


_CIMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+cimport\s+\(?([^#\n]*)|cimport\s+([\w.]+))",
                      re.MULTILINE)


def _cython_arrows(text: str) -> Iterator[tuple[str, str, int]]:
    """cimports of a .pyx/.pxd (Python-level imports there are found by
    turning the file's ``cimport`` lines into comments and parsing the rest
    would be fragile; the regexes below read both kinds of lines)."""
    for m in _CIMPORT.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(3):
            yield m.group(3), "", line
            continue
        names = m.group(2)
        if names.strip() == "":  # a parenthesised list on the lines below
            end = text.index(")", m.end())
            names = text[m.end():end]
        elif "(" in m.group(0) and ")" not in names:
            end = text.index(")", m.end())
            names = names + text[m.end():end]
        for name in re.findall(r"[A-Za-z_]\w*", names.replace(" as ", " ")):
            yield m.group(1), name, line
    for m in re.finditer(r"^(?:from\s+([\w.]+)\s+import\s+\(?([^#\n]*)|import\s+([\w.]+))",
                         text, re.MULTILINE):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(3):
            yield m.group(3), "", line
        else:
            names = m.group(2)
            if "(" in m.group(0) and ")" not in names:
                names += text[m.end():text.index(")", m.end())]
            for name in re.findall(r"[A-Za-z_]\w*", names):
                yield m.group(1), name, line


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def arrows_of(path: pathlib.Path, root: pathlib.Path = SOURCE) -> Iterator[Arrow]:
    importer = module_name(path, root)
    text = path.read_text()
    if path.suffix in (".pyx", ".pxd"):
        for module, name, line in _cython_arrows(text):
            if module.startswith("fastconc"):
                yield importer, module, name, line
        return
    tree = ast.parse(text)
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fastconc"):
                    yield importer, alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, is_package, node.module, node.level)
            if not module.startswith("fastconc"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if (root.parent / sub.replace(".", "/")).with_suffix(".py").exists() or any(
                        (root.parent / sub.replace(".", "/")).with_suffix(s).exists()
                        for s in (".pyx", ".pxd")) or (
                        root.parent / sub.replace(".", "/") / "__init__.py").exists():
                    yield importer, sub, "", node.lineno  # `from fastconc import _x_py`
                else:
                    yield importer, module, alias.name, node.lineno


def violations(root: pathlib.Path = SOURCE) -> list[str]:
    found: list[str] = []
    files = sorted(p for ext in ("*.py", "*.pyx", "*.pxd") for p in root.rglob(ext))
    for path in files:
        for importer, module, name, line in arrows_of(path, root):
            if module == importer:
                continue
            src, dst = tier(importer), tier(module)
            where = f"{path.relative_to(root.parent)}:{line}: {importer} -> {module}"
            if name:
                where += f" ({name})"
            if src == "high" and dst == "backend":
                found.append(f"{where}: the high layer imports a backend module")
            if src == dst == "backend" and flavour(importer) != flavour(module):
                found.append(f"{where}: a compiled and a fallback module import each other")
            if src in ("backend", "support", "chooser") and dst in ("high", "bench"):
                found.append(f"{where}: imports upward, into the {dst} layer")
            if dst == "backend" and src not in ("chooser", "backend"):
                found.append(f"{where}: only {CHOOSER} chooses and imports a backend")
            if (src == dst == "backend" and primitive(importer) != primitive(module)
                    and name.startswith("_")):
                found.append(f"{where}: a private name of another primitive's module")
    return found


def test_imports_go_downward_only():
    found = violations()
    assert not found, "never-arrows of the layering:\n" + "\n".join(found)


def test_every_module_has_a_tier():
    for path in SOURCE.rglob("*.py"):
        tier(module_name(path))


def test_each_never_arrow_is_caught(tmp_path):
    """One planted import per rule, in a minimal copy of the layout: each is
    reported (so the check above cannot pass by finding nothing)."""
    root = tmp_path / "fastconc"
    for rel in ("__init__.py", "errors.py", "_impl.py", "_channel_c.pyx", "_channel_py.py",
                "_pool_c.pyx", "_pool_py.py", "_pool_task_c.pyx", "_ring_py.py",
                "_ring_mpmc_py.py", "objpool.py",
                "actors/__init__.py", "pipeline/__init__.py", "_support/__init__.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / "_pool_py.py").write_text("from fastconc._channel_py import _deadline\n")
    (root / "_ring_py.py").write_text("from fastconc._channel_c import Channel\n")
    (root / "objpool.py").write_text("import fastconc._pool_c\n")
    (root / "actors" / "planted.py").write_text("from fastconc import _channel_py\n")
    (root / "_support" / "planted.py").write_text("from fastconc.pipeline import Pipeline\n")
    (root / "_channel_c.pyx").write_text("from fastconc._pool_c cimport _private\n"
                                         "from fastconc._ring_py import RingBuffer\n")
    (root / "errors.py").write_text("from fastconc import _ring_py\n")
    # Allowed: a module of the same primitive; reported: one of another.
    (root / "_ring_mpmc_py.py").write_text("from fastconc._ring_py import _DequeRing\n"
                                           "from fastconc._pool_py import _Core\n")
    (root / "_pool_task_c.pyx").write_text("from fastconc._pool_c cimport _PoolCore\n")
    (root / "__init__.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n"
                                      "    from fastconc._channel_c import Channel\n")
    found = "\n".join(violations(root))
    for expected in (
        "fastconc/_channel_c.pyx:1: fastconc._channel_c -> fastconc._pool_c (_private): "
        "a private name of another primitive's module",
        "fastconc/_pool_py.py:1: fastconc._pool_py -> fastconc._channel_py (_deadline): "
        "a private name of another primitive's module",
        "fastconc/_ring_py.py:1: fastconc._ring_py -> fastconc._channel_c (Channel): "
        "a compiled and a fallback module import each other",
        "fastconc/objpool.py:1: fastconc.objpool -> fastconc._pool_c: the high layer "
        "imports a backend module",
        "fastconc/actors/planted.py:1: fastconc.actors.planted -> fastconc._channel_py: "
        "the high layer imports a backend module",
        "fastconc/_support/planted.py:1: fastconc._support.planted -> fastconc.pipeline "
        "(Pipeline): imports upward, into the high layer",
        "fastconc/_channel_c.pyx:2: fastconc._channel_c -> fastconc._ring_py (RingBuffer): "
        "a compiled and a fallback module import each other",
        "fastconc/errors.py:1: fastconc.errors -> fastconc._ring_py: only fastconc._impl "
        "chooses and imports a backend",
        "fastconc/_ring_mpmc_py.py:2: fastconc._ring_mpmc_py -> fastconc._pool_py (_Core): "
        "a private name of another primitive's module",
    ):
        assert expected in found, f"not reported: {expected}\nreported:\n{found}"
    assert "_DequeRing" not in found and "_PoolCore" not in found  # same primitive
    assert "fastconc/__init__.py" not in found  # a TYPE_CHECKING import is no arrow
