"""The twins agree: for every public primitive, the compiled and the fallback
class expose the same public methods and properties, each method with the
same parameters (names, kinds, defaults), and both match the compiled
module's ``.pyi`` stub, which is what a type checker and a reader see.

Signatures are compared as normalised tuples: ``self`` dropped, annotations
ignored, a default kept when it is a literal (None, a bool, a number, a
string) and reduced to "a sentinel" otherwise (each backend has its own
``_MISSING`` object, and a compiled module's text signature cannot spell it).
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import types
from typing import Any

import pytest
from conftest import BACKENDS, load_backend

import fastconc

PRIMITIVES = ("Channel", "Queue", "RingBuffer", "SpscRingBuffer", "TypedRingBuffer",
              "WorkStealingDeque", "WorkStealingPool")
SENTINEL = "<sentinel>"
NO_DEFAULT = "<required>"

Param = tuple[str, str, str]  # name, kind, default


def _default(value: object) -> str:
    if value is inspect.Parameter.empty:
        return NO_DEFAULT
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return SENTINEL


def _default_source(node: ast.expr | None) -> str:
    if node is None:
        return NO_DEFAULT
    try:
        return _default(ast.literal_eval(node))
    except ValueError:
        return SENTINEL


def _from_ast(args: ast.arguments) -> tuple[Param, ...]:
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    params = [(a.arg, "POSITIONAL_ONLY" if a in args.posonlyargs else "POSITIONAL_OR_KEYWORD",
               _default_source(d)) for a, d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, "VAR_POSITIONAL", NO_DEFAULT))
    params += [(a.arg, "KEYWORD_ONLY", _default_source(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        params.append((args.kwarg.arg, "VAR_KEYWORD", NO_DEFAULT))
    return _drop_self(params)


def _drop_self(params: list[Param]) -> tuple[Param, ...]:
    # ``self`` is positional-only in a compiled text signature ($self, /) and
    # not in a def: it is not part of what a caller passes.
    if params and params[0][0] in ("self", "$self", "cls"):
        params = params[1:]
    return tuple(params)


def signature(fn: Any) -> tuple[Param, ...]:
    """The normalised parameters of a method of either backend."""
    text = getattr(fn, "__text_signature__", None)
    if text:  # a compiled method: parse Argument Clinic's text signature
        tree = ast.parse(f"def f{text.replace('$', '')}: pass")
        return _from_ast(tree.body[0].args)  # type: ignore[attr-defined]
    sig = inspect.signature(fn)
    return _drop_self([(p.name, p.kind.name, _default(p.default))
                       for p in sig.parameters.values()])


def members(cls: type) -> dict[str, Any]:
    """Public name -> "property" or the method's normalised parameters."""
    out: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property) or inspect.isgetsetdescriptor(attr):
            out[name] = "property"
        elif isinstance(attr, (staticmethod, classmethod)):
            out[name] = signature(getattr(cls, name))
        elif callable(attr):
            out[name] = signature(attr)
        else:
            out[name] = "attribute"
    return out


def stub_members(stub: pathlib.Path, cls_name: str) -> dict[str, Any] | None:
    """The public members the stub declares for a class (None: not stubbed
    there).  A class stubbed as ``class X(Base): ...`` declares nothing
    itself: its API is its base's, checked through the runtime classes."""
    tree = ast.parse(stub.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            break
    else:
        return None
    out: dict[str, Any] = {}
    overloads: dict[str, list[tuple[Param, ...]]] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if not item.target.id.startswith("_"):
                out[item.target.id] = "attribute"
        if not isinstance(item, ast.FunctionDef) or item.name.startswith("_"):
            continue
        decorators = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")
                      for d in item.decorator_list}
        if "property" in decorators:
            out[item.name] = "property"
        elif "setter" in decorators:
            continue
        elif "overload" in decorators:
            overloads.setdefault(item.name, []).append(_from_ast(item.args))
        else:
            out[item.name] = _from_ast(item.args)
    for name, variants in overloads.items():
        out[name] = _merge_overloads(variants)
    return out


def _merge_overloads(variants: list[tuple[Param, ...]]) -> tuple[Param, ...]:
    """``pop() / pop(default)`` is one method whose ``default`` is optional:
    a parameter some overloads leave out has a default (a sentinel)."""
    longest = max(variants, key=len)
    shortest = min(len(v) for v in variants)
    return tuple(p if i < shortest else (p[0], p[1], SENTINEL) for i, p in enumerate(longest))


def _comparable(found: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    # A stub writes a read-only attribute as ``name: int`` or as a property.
    return {k: ("property" if v == "attribute" else v) for k, v in found.items()
            if k in declared or v != "attribute"}


@pytest.mark.compiled
@pytest.mark.parametrize("name", PRIMITIVES)
def test_compiled_and_fallback_expose_the_same_api(name):
    compiled = getattr(load_backend("cython"), name)
    fallback = getattr(load_backend("python"), name)
    assert members(compiled) == members(fallback)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", PRIMITIVES)
def test_each_backend_matches_the_stub(backend, name):
    cls = getattr(load_backend(backend), name)
    stub = _stub_of(name)
    declared = stub_members(stub, name)
    assert declared is not None, f"{name} is not in {stub.name}"
    if not declared:
        # `class X(Base): ...`: the members are Base's, which both backends
        # inherit (the test above compares them).
        bases = _stub_bases(stub, name)
        assert bases and all(any(k.__name__ == b for k in cls.__mro__) for b in bases)
        return
    found = members(cls)
    assert _comparable(found, declared) == {k: ("property" if v == "attribute" else v)
                                            for k, v in declared.items()}


def _stub_bases(stub: pathlib.Path, cls_name: str) -> list[str]:
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            return [b.id for b in node.bases if isinstance(b, ast.Name)]
    return []


def _stub_of(name: str) -> pathlib.Path:
    """The .pyi beside the compiled module that defines ``name`` (read from
    the installed package: a pure env has the stubs, not the modules)."""
    package = pathlib.Path(fastconc.__file__).parent
    for stub in sorted(package.rglob("*.pyi")):
        if stub_members(stub, name) is not None:
            return stub
    raise AssertionError(f"no .pyi stub in {package} declares {name}")


def test_the_checks_see_a_difference():
    """The comparison is not vacuous: a renamed parameter, a dropped default,
    a keyword-only flag and a missing method all count."""
    class A:
        def send(self, item, timeout=None): ...  # noqa: ANN001, ANN202

        @property
        def closed(self): ...  # noqa: ANN202

    class B:
        def send(self, obj, timeout=None): ...  # noqa: ANN001, ANN202

    class C:
        def send(self, item, timeout): ...  # noqa: ANN001, ANN202

    class D:
        def send(self, item, *, timeout=None): ...  # noqa: ANN001, ANN202

    a = members(A)
    assert a == {"send": (("item", "POSITIONAL_OR_KEYWORD", NO_DEFAULT),
                          ("timeout", "POSITIONAL_OR_KEYWORD", "None")),
                 "closed": "property"}
    for other in (B, C, D):
        assert members(other)["send"] != a["send"]
    assert "closed" not in members(B)


def test_clinic_signatures_parse():
    """A compiled method's text signature normalises like its def."""
    fake = types.SimpleNamespace(
        __text_signature__="($self, /, item, timeout=None, default=_MISSING)")
    assert signature(fake) == (("item", "POSITIONAL_OR_KEYWORD", NO_DEFAULT),
                               ("timeout", "POSITIONAL_OR_KEYWORD", "None"),
                               ("default", "POSITIONAL_OR_KEYWORD", SENTINEL))

