from __future__ import annotations

from tierpolicy.engine.cel import _ast as ast
from tierpolicy.engine.cel._parser import parse


def names(node: ast.Node) -> list[str]:
    """The class names of the direct children of ``node``."""
    return [type(child).__name__ for child in ast.children(node)]


def test_children_in_source_order():
    """children() yields every direct child of each node kind, in source order."""
    assert names(parse("a.b")) == ["Ident"]
    assert names(parse("has(a.b)")) == ["Ident"]
    assert names(parse("a[1]")) == ["Ident", "Literal"]
    assert names(parse("a.contains(1)")) == ["Ident", "Literal"]
    assert names(parse("size(a)")) == ["Ident"]
    assert names(parse("-a")) == ["Ident"]
    assert names(parse("a + 1")) == ["Ident", "Literal"]
    assert names(parse("a && b && c")) == ["Ident", "Ident", "Ident"]
    assert names(parse("a ? b : 1")) == ["Ident", "Ident", "Literal"]
    assert names(parse("[a, 1]")) == ["Ident", "Literal"]
    assert names(parse("{a: 1}")) == ["Ident", "Literal"]
    assert names(parse("a.map(x, x > 1, x)")) == ["Ident", "Binary", "Ident"]
    assert names(parse("a.map(x, x)")) == ["Ident", "Ident"]
    assert names(parse("1")) == []


def test_attribute_path():
    """attribute_path() returns the parts of a selection chain on a variable, else None."""
    assert ast.attribute_path(parse("a")) == ("a",)
    assert ast.attribute_path(parse("a.b.c")) == ("a", "b", "c")
    assert ast.attribute_path(parse("a[0].b")) is None
    assert ast.attribute_path(parse("dyn(a).b")) is None
