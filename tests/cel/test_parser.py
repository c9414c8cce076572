from __future__ import annotations

import pytest

from tierpolicy.engine._exceptions import ExpressionSyntaxError
from tierpolicy.engine.cel import MAX_EXPRESSION_LENGTH, MAX_NESTING
from tierpolicy.engine.cel import _ast as ast
from tierpolicy.engine.cel._parser import parse


def show(node: ast.Node) -> str:
    """Render a tree as a compact s-expression."""
    if isinstance(node, ast.Literal):
        return repr(node.value)
    if isinstance(node, ast.Ident):
        return node.name
    if isinstance(node, ast.Select):
        return f"{show(node.operand)}.{node.field}"
    if isinstance(node, ast.Has):
        return f"has({show(node.operand)}.{node.field})"
    if isinstance(node, ast.Index):
        return f"{show(node.operand)}[{show(node.index)}]"
    if isinstance(node, ast.Call):
        args = ", ".join(show(a) for a in node.args)
        target = "" if node.target is None else show(node.target) + "."
        return f"{target}{node.name}({args})"
    if isinstance(node, ast.Unary):
        return f"({node.op}{show(node.operand)})"
    if isinstance(node, ast.Binary):
        return f"({show(node.left)} {node.op} {show(node.right)})"
    if isinstance(node, ast.And | ast.Or):
        op = " && " if isinstance(node, ast.And) else " || "
        return "(" + op.join(show(c) for c in node.children) + ")"
    if isinstance(node, ast.Conditional):
        return f"({show(node.cond)} ? {show(node.then)} : {show(node.otherwise)})"
    if isinstance(node, ast.ListLit):
        return "[" + ", ".join(show(e) for e in node.elements) + "]"
    if isinstance(node, ast.MapLit):
        return "{" + ", ".join(f"{show(k)}: {show(v)}" for k, v in node.entries) + "}"
    assert isinstance(node, ast.Comprehension)
    parts = [node.var]
    parts += [show(p) for p in (node.predicate, node.transform) if p is not None]
    return f"{show(node.range)}.{node.macro}({', '.join(parts)})"


def syntax_error(source: str) -> ExpressionSyntaxError:
    """The syntax error parsing ``source`` raises."""
    with pytest.raises(ExpressionSyntaxError) as info:
        parse(source)
    return info.value


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("1 + 2 * 3", "(1 + (2 * 3))"),
        ("1 - 2 - 3", "((1 - 2) - 3)"),
        ("a * b % c / d", "(((a * b) % c) / d)"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("a < b == c", "((a < b) == c)"),
        ("a in b && c", "((a in b) && c)"),
        ("a || b && c", "(a || (b && c))"),
        ("a && b || c && d", "((a && b) || (c && d))"),
        ("a ? b : c ? d : e", "(a ? b : (c ? d : e))"),
        ("a || b ? c : d", "((a || b) ? c : d)"),
        ("!a && b", "((!a) && b)"),
        ("!!a", "(!(!a))"),
        ("-a.b", "(-a.b)"),
        ("--a", "(-(-a))"),
        ("-x[0].y", "(-x[0].y)"),
        ("(1 + 2) * 3", "((1 + 2) * 3)"),
        ("a.b.c", "a.b.c"),
        ("a[b][c]", "a[b][c]"),
        ("a.b[0].c", "a.b[0].c"),
        ("f.size()", "f.size()"),
        ("size(f)", "size(f)"),
        ("s.startsWith('a')", "s.startsWith('a')"),
        ("[]", "[]"),
        ("[1, 2,]", "[1, 2]"),
        ("{}", "{}"),
        ("{'a': 1, 'b': 2,}", "{'a': 1, 'b': 2}"),
        ("m.`content-type`", "m.content-type"),
    ],
)
def test_precedence_and_associativity(source, tree):
    """Operators bind as in CEL: unary, then * / %, + -, relations, &&, ||, then ?:."""
    assert show(parse(source)) == tree


def test_logical_chains_are_flattened_across_parentheses():
    """A && (b && c) && d is one n-ary && node, since CEL's && is commutative."""
    node = parse("a && (b && c) && d")
    assert isinstance(node, ast.And)
    assert [show(c) for c in node.children] == ["a", "b", "c", "d"]
    node = parse("(a || b) || c")
    assert isinstance(node, ast.Or)
    assert len(node.children) == 3


def test_node_spans_cover_their_source():
    """Each node's span is its text; parentheses are part of a parenthesised node."""
    source = "(a || b) && c.d > 4"
    node = parse(source)
    assert isinstance(node, ast.And)
    assert [source[c.start : c.end] for c in node.children] == ["(a || b)", "c.d > 4"]
    comparison = node.children[1]
    assert isinstance(comparison, ast.Binary)
    assert comparison.op_start == 16
    select = comparison.left
    assert isinstance(select, ast.Select)
    assert select.field_start == 14


@pytest.mark.parametrize(
    ("source", "literal", "negations"),
    [
        ("-9223372036854775808", -(2**63), 0),
        ("-1.5", -1.5, 0),
        ("- 7", -7, 0),
        ("--7", 7, 2),
        ("- -7", 7, 2),
        ("---7", 7, 3),
        ("--1.5", 1.5, 2),
        ("-(-7)", -7, 1),
        ("-(-9223372036854775808)", -(2**63), 1),
    ],
)
def test_minus_on_a_number_is_part_of_the_literal(source, literal, negations):
    """A lone minus sign on a number makes a negative literal; two or more are all operators."""
    node = parse(source)
    count = 0
    while isinstance(node, ast.Unary):
        node = node.operand
        count += 1
    assert isinstance(node, ast.Literal)
    assert (node.value, count) == (literal, negations)


def test_minus_before_a_member_expression_stays_an_operator():
    """-1.foo is negation of a method call result, not a negative literal."""
    node = parse("-1.5.size()")
    assert isinstance(node, ast.Unary)


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("9223372036854775808", "int literal out of range", 0),
        ("-(9223372036854775808)", "int literal out of range", 2),
        ("-9223372036854775809", "int literal out of range", 1),
        ("--9223372036854775809", "int literal out of range", 2),
        ("1e400", "double literal out of range", 0),
    ],
)
def test_literals_out_of_range(source, message, offset):
    """Integer literals outside int64 and doubles that overflow are syntax errors."""
    error = syntax_error(source)
    assert (error.message, error.offset, error.reason) == (message, offset, "syntax")


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        ("--9223372036854775808", 2),
        ("- -9223372036854775808", 3),
        ("---9223372036854775808", 3),
        ("true ? 1 : --9223372036854775808", 13),
    ],
)
def test_int64_min_magnitude_after_several_minus_signs_is_out_of_range(source, offset):
    """Only a lone minus sign makes -9223372036854775808 a literal; after two, it is out of range."""
    error = syntax_error(source)
    assert (error.message, error.offset, error.length, error.reason) == (
        "int literal out of range",
        offset,
        19,
        "syntax",
    )
    assert error.hint == "only a single minus sign makes a negative literal, as in -9223372036854775808"


def test_int64_min_in_hex_after_several_minus_signs_is_out_of_range():
    """The hint for a hex int64 minimum after two minus signs keeps the hex spelling."""
    error = syntax_error("--0x8000000000000000")
    assert (error.message, error.offset) == ("int literal out of range", 2)
    assert error.hint == "only a single minus sign makes a negative literal, as in -0x8000000000000000"


def test_macros_become_their_own_nodes():
    """has(), all, exists, exists_one, filter and both forms of map are expanded."""
    assert show(parse("has(a.b.c)")) == "has(a.b.c)"
    assert show(parse("xs.all(x, x > 0)")) == "xs.all(x, (x > 0))"
    assert show(parse("xs.exists(x, x)")) == "xs.exists(x, x)"
    assert show(parse("xs.exists_one(x, x)")) == "xs.exists_one(x, x)"
    assert show(parse("xs.filter(x, x)")) == "xs.filter(x, x)"
    assert show(parse("xs.map(x, x * 2)")) == "xs.map(x, (x * 2))"
    assert show(parse("xs.map(x, x > 1, x * 2)")) == "xs.map(x, (x > 1), (x * 2))"
    node = parse("xs.map(x, x)")
    assert isinstance(node, ast.Comprehension)
    assert node.predicate is None
    assert (node.var_start, node.name_start) == (7, 3)


@pytest.mark.parametrize(
    ("source", "message", "offset", "length"),
    [
        ("has(a)", "has() takes one field selection, as in has(seller.verified)", 0, 6),
        ("has(a.b, c)", "has() takes one field selection, as in has(seller.verified)", 0, 11),
        ("xs.all(x)", "all() takes 2 arguments: an iteration variable and an expression", 3, 6),
        ("xs.map(x)", "map() takes 2 or 3 arguments: an iteration variable and an expression", 3, 6),
        ("xs.exists(x.y, true)", "the first argument of exists() must be a simple variable name", 10, 3),
    ],
)
def test_malformed_macros(source, message, offset, length):
    """Macros with the wrong shape of arguments are syntax errors spanning the call."""
    error = syntax_error(source)
    assert (error.message, error.offset, error.length) == (message, offset, length)


@pytest.mark.parametrize(
    ("source", "message", "offset", "hint"),
    [
        ("Foo{a: 1}", "message construction is not supported", 3, None),
        ("google.protobuf.Value{}", "message construction is not supported", 21, None),
        (".a.b", "names with a leading '.' (fully qualified names) are not supported", 0, None),
        ("a?.b", "optional field selection '?.' is not supported", 1, None),
        ("a[?0]", "optional indexing '[?' is not supported", 1, None),
        ("[?a]", "optional list elements '[?' are not supported", 0, None),
        ("{?'a': 1}", "optional map entries '{?' are not supported", 1, None),
        ("sise(a)", "function 'sise' is not supported", 0, "did you mean 'size'?"),
        ("a.startWith('x')", "method 'startWith' is not supported", 2, "did you mean 'startsWith'?"),
        ("a.int()", "method 'int' is not supported", 2, "call it as a function: int(x)"),
        (
            "startsWith(a, 'b')",
            "function 'startsWith' is not supported",
            0,
            "call it as a method: x.startsWith(...)",
        ),
        ("a.frobnicate()", "method 'frobnicate' is not supported", 2, None),
    ],
)
def test_constructs_outside_the_subset_are_unsupported(source, message, offset, hint):
    """Valid CEL outside the subset is rejected with reason "unsupported", naming the construct."""
    error = syntax_error(source)
    assert (error.message, error.offset, error.hint, error.reason) == (message, offset, hint, "unsupported")


@pytest.mark.parametrize(
    ("source", "message", "offset", "hint"),
    [
        ("a +", "expected an expression, found end of expression", 3, None),
        ("(a", "expected ')', found end of expression", 2, None),
        ("[1 2]", "expected ',' or ']', found '2'", 3, None),
        ("{'a' 1}", "expected ':' after the map key, found '1'", 5, None),
        ("{'a': 1 'b': 2}", "expected ',' or '}', found \"'b'\"", 8, None),
        ("a ? b", "expected ':' of the conditional, found end of expression", 5, None),
        ("a b", "unexpected 'b' after the expression", 2, "did you mean '=='?"),
        ("a )", "unexpected ')' after the expression", 2, None),
        ("a.1", "unexpected '.1' after the expression", 1, None),
        ("a.+", "expected a field name after '.', found '+'", 2, None),
        ("if", "'if' is a reserved word", 0, None),
        ("a.while", "'while' is a reserved word", 2, None),
        ("`a`", "back-quoted names are only allowed after '.'", 0, None),
        ("f(a b)", "expected ')', found 'b'", 4, None),
    ],
)
def test_syntax_errors_are_located(source, message, offset, hint):
    """Malformed expressions raise ExpressionSyntaxError at the offending token."""
    error = syntax_error(source)
    assert (error.message, error.offset, error.hint) == (message, offset, hint)


@pytest.mark.parametrize(
    ("source", "offset", "length", "hint"),
    [
        ('seller.id != "" and seller.tier == "silver"', 16, 3, "CEL writes 'and' as '&&'"),
        ("a AND b", 2, 3, "CEL writes 'AND' as '&&'"),
        ("a or b", 2, 2, "CEL writes 'or' as '||'"),
        ("a Or b", 2, 2, "CEL writes 'Or' as '||'"),
        ("(a and b) && c", 3, 3, "CEL writes 'and' as '&&'"),
        ("[a or b]", 3, 2, "CEL writes 'or' as '||'"),
        ("f(a and b)", 4, 3, "CEL writes 'and' as '&&'"),
        ("a ? b or c : d", 6, 2, "CEL writes 'or' as '||'"),
        ("not a", 0, 3, "CEL writes 'not' as '!'"),
        ("NOT a", 0, 3, "CEL writes 'NOT' as '!'"),
        ("a && not b", 5, 3, "CEL writes 'not' as '!'"),
        ("not (a || b)", 0, 3, "CEL writes 'not' as '!'"),
        ("not(a)", 0, 3, "CEL writes 'not' as '!'"),
        ("not !a", 0, 3, "CEL writes 'not' as '!'"),
        ("not 'x'", 0, 3, "CEL writes 'not' as '!'"),
        ("a not b", 2, 3, "CEL writes 'not' as '!'"),
        ("seller.tier not in ['gold']", 12, 6, "CEL writes 'a not in b' as '!(a in b)'"),
        ("x is null", 2, 7, "CEL writes 'is null' as '== null'"),
        ("x is not null", 2, 11, "CEL writes 'is not null' as '!= null'"),
        ("x IS NOT NULL", 2, 11, "CEL writes 'IS NOT NULL' as '!= null'"),
        ("x is None", 2, 7, "CEL writes 'is None' as '== null'"),
        ("x is not nil", 2, 10, "CEL writes 'is not nil' as '!= null'"),
        ("x is 5", 2, 2, "CEL writes 'is' as '=='"),
        ("x is not 5", 2, 6, "CEL writes 'is not' as '!='"),
        ("x is", 2, 2, "CEL writes 'is' as '=='"),
        ("(x is null)", 3, 7, "CEL writes 'is null' as '== null'"),
    ],
)
def test_other_languages_operator_words_name_the_cel_operator(source, offset, length, hint):
    """and, or, not, not in and is (null) are errors on the words, hinting at &&, ||, !, == and !=."""
    error = syntax_error(source)
    words = source[offset : offset + length]
    assert (error.message, error.offset, error.length, error.hint, error.reason) == (
        f"{words!r} is not a CEL operator",
        offset,
        length,
        hint,
        "syntax",
    )


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("not", "not"),
        ("not.x", "not.x"),
        ("not[0]", "not[0]"),
        ("not - 1", "(not - 1)"),
        ("is == and", "(is == and)"),
        ("a.not && a.or && a.is", "(a.not && a.or && a.is)"),
    ],
)
def test_operator_words_remain_valid_names(source, tree):
    """Where CEL allows a name, `not`, `and`, `or` and `is` are ordinary identifiers and fields."""
    assert show(parse(source)) == tree


def test_unknown_words_after_an_expression_keep_the_generic_hint():
    """A word after an expression that is no other language's operator keeps the '==' guess."""
    error = syntax_error("seller.tier gold")
    assert (error.message, error.offset, error.hint) == (
        "unexpected 'gold' after the expression",
        12,
        "did you mean '=='?",
    )
    assert syntax_error("f(a b)").hint is None


def test_call_arguments_are_parsed_before_the_function_is_checked():
    """A syntax error inside the arguments of an unknown function is reported first."""
    error = syntax_error("f(a b)")
    assert error.reason == "syntax"


def test_too_long_expressions_are_rejected():
    """Expressions longer than MAX_EXPRESSION_LENGTH are rejected before lexing."""
    source = "a" * (MAX_EXPRESSION_LENGTH + 10)
    error = syntax_error(source)
    assert error.message == f"expression is too long ({len(source)} characters; the limit is 4096)"
    assert (error.offset, error.length) == (MAX_EXPRESSION_LENGTH, 10)


def test_deep_parentheses_are_rejected_without_recursion_error():
    """Nesting beyond MAX_NESTING is a clear syntax error, not a RecursionError."""
    error = syntax_error("(" * 500 + "a" + ")" * 500)
    assert error.message == f"expression nests too deeply (more than {MAX_NESTING} levels)"
    assert error.offset == MAX_NESTING


@pytest.mark.parametrize(
    "source",
    [
        "a" + ".b" * 100,
        " + ".join(["1"] * 100),
        "!" * 100 + "a",
        "[" * 70 + "]" * 70,
        "a" + "[0]" * 100,
    ],
)
def test_long_chains_are_bounded(source):
    """Long selection, operator and unary chains that would make deep trees are rejected."""
    assert "nests too deeply" in syntax_error(source).message


def test_nesting_up_to_the_limit_is_accepted():
    """Thirty-two levels of nesting, the minimum CEL requires, parse fine."""
    source = "(" * 32 + "a" + ")" * 32 + " && " + " && ".join(["b"] * 200)
    assert isinstance(parse(source), ast.And)
