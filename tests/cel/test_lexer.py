from __future__ import annotations

import pytest

from tierpolicy.engine._exceptions import ExpressionSyntaxError
from tierpolicy.engine.cel import UInt
from tierpolicy.engine.cel._lexer import tokenize


def kinds(source):
    """The token kinds of ``source``."""
    return [token.kind for token in tokenize(source)]


def test_tokens_carry_kind_text_and_span():
    """Each token records its kind, exact text and [start, end) span."""
    tokens = tokenize("seller.rating >= 4.5")
    assert [(t.kind, t.text, t.start, t.end) for t in tokens] == [
        ("ident", "seller", 0, 6),
        (".", ".", 6, 7),
        ("ident", "rating", 7, 13),
        (">=", ">=", 14, 16),
        ("double", "4.5", 17, 20),
        ("eof", "", 20, 20),
    ]


def test_operators_prefer_the_longest_match():
    """Two-character operators are lexed as one token."""
    assert kinds("a<=b>=c==d!=e&&f||g<h>i!j") == [
        "ident", "<=", "ident", ">=", "ident", "==", "ident", "!=", "ident", "&&", "ident",
        "||", "ident", "<", "ident", ">", "ident", "!", "ident", "eof",
    ]  # fmt: skip


def test_keywords_become_literals_and_operators():
    """true/false/null are literal tokens, in is an operator, other words are identifiers."""
    tokens = tokenize("true false null in inx")
    assert [(t.kind, t.value) for t in tokens[:-1]] == [
        ("bool", True),
        ("bool", False),
        ("null", None),
        ("in", None),
        ("ident", "inx"),
    ]


@pytest.mark.parametrize(
    ("source", "kind", "value"),
    [
        ("0", "int", 0),
        ("42", "int", 42),
        ("0x1F", "int", 31),
        ("0XfF", "int", 255),
        ("42u", "uint", UInt(42)),
        ("0x10U", "uint", UInt(16)),
        ("18446744073709551615u", "uint", UInt(2**64 - 1)),
        ("9223372036854775808", "int", 2**63),
        ("1.5", "double", 1.5),
        (".5", "double", 0.5),
        ("1e3", "double", 1000.0),
        ("2.5E-2", "double", 0.025),
        ("1e+2", "double", 100.0),
    ],
)
def test_number_literals(source, kind, value):
    """Decimal, hex, uint and double literals lex to their values."""
    token = tokenize(source)[0]
    assert (token.kind, token.value, token.end) == (kind, value, len(source))
    assert type(token.value) is type(value)


def test_a_trailing_dot_is_not_part_of_a_number():
    """CEL doubles need digits after the point: 1. is an int and a dot."""
    assert kinds("1.") == ["int", ".", "eof"]


def test_uint_literal_out_of_range():
    """A uint literal beyond 2**64-1 is a syntax error at the literal."""
    with pytest.raises(ExpressionSyntaxError) as info:
        tokenize("x + 18446744073709551616u")
    assert (info.value.message, info.value.offset, info.value.length) == (
        "uint literal out of range",
        4,
        21,
    )


@pytest.mark.parametrize(
    ("source", "kind", "value"),
    [
        ('"abc"', "string", "abc"),
        ("'abc'", "string", "abc"),
        ("'''a'b''c'''", "string", "a'b''c"),
        ('"""line\nbreak"""', "string", "line\nbreak"),
        (r"r'\n'", "string", "\\n"),
        (r'R"\d+"', "string", "\\d+"),
        ("b'abc'", "bytes", b"abc"),
        ("B'\u00ff'", "bytes", b"\xc3\xbf"),
        (r"b'\377\x00'", "bytes", b"\xff\x00"),
        (r"br'\x00'", "bytes", b"\\x00"),
        (r"Rb'\x00'", "bytes", b"\\x00"),
        (r"'\377'", "string", "\u00ff"),
        (r"'\xff'", "string", "\u00ff"),
        (r"'\X41'", "string", "A"),
        (r"'\u270c'", "string", "\u270c"),
        (r"'\U0001F431'", "string", "\U0001f431"),
        (r"'\a\b\f\n\r\t\v\\\?\"\'\`'", "string", "\a\b\f\n\r\t\v\\?\"'`"),
        ("'\u00e9t\u00e9'", "string", "\u00e9t\u00e9"),
    ],
)
def test_string_and_bytes_literals(source, kind, value):
    """Quotes, triple quotes, raw and bytes prefixes and every escape decode as CEL specifies."""
    token = tokenize(source)[0]
    assert (token.kind, token.value) == (kind, value)


@pytest.mark.parametrize(
    ("source", "message", "offset", "length"),
    [
        (r"'a\qb'", "invalid escape sequence", 2, 2),
        (r"'\x4'", "escape needs 2 hex digits", 1, 3),
        (r"'\u12'", "escape needs 4 hex digits", 1, 4),
        (r"b'\u0041'", "\\u and \\U escapes are not allowed in bytes literals", 2, 2),
        (r"'\ud800'", "escape is not a valid Unicode code point", 1, 6),
        (r"'\U00110000'", "escape is not a valid Unicode code point", 1, 10),
        (r"'\400'", "invalid escape sequence", 1, 2),
        ("'abc", "unterminated string literal", 3, 1),
        ("'ab\ncd'", "unterminated string literal", 2, 1),
        ('"""abc""', "unterminated string literal", 7, 1),
        ("x == 'a", "unterminated string literal", 6, 1),
    ],
)
def test_bad_literals_are_located(source, message, offset, length):
    """Malformed escapes and unterminated strings are syntax errors pointing at the problem."""
    with pytest.raises(ExpressionSyntaxError) as info:
        tokenize(source)
    error = info.value
    assert (error.message, error.offset, error.length, error.reason) == (
        message,
        offset,
        length,
        "syntax",
    )


def test_whitespace_and_comments_are_skipped():
    """Spaces, tabs, newlines and // comments separate tokens and are dropped."""
    tokens = tokenize("a // first\n\t&& // second\r\n b")
    assert [(t.kind, t.start) for t in tokens] == [("ident", 0), ("&&", 12), ("ident", 27), ("eof", 28)]


@pytest.mark.parametrize(
    ("source", "offset", "hint"),
    [
        ("a = b", 2, "did you mean '=='?"),
        ("a & b", 2, "did you mean '&&'?"),
        ("a | b", 2, "did you mean '||'?"),
        ("a # b", 2, None),
        ("caf\u00e9", 3, None),
    ],
)
def test_unexpected_characters(source, offset, hint):
    """A character that starts no token is an error; common slips get a hint."""
    with pytest.raises(ExpressionSyntaxError) as info:
        tokenize(source)
    assert info.value.offset == offset
    assert info.value.hint == hint
    assert info.value.message.startswith("unexpected character")


@pytest.mark.parametrize(
    ("source", "offset", "length", "hint"),
    [
        ("a <> b", 2, 2, "CEL writes '<>' as '!='"),
        ("a === b", 2, 3, "CEL writes '===' as '=='"),
        ("a !== b", 2, 3, "CEL writes '!==' as '!='"),
        ("a => b", 2, 2, "CEL writes '=>' as '>='"),
        ("a =< b", 2, 2, "CEL writes '=<' as '<='"),
        ("a<>b", 1, 2, "CEL writes '<>' as '!='"),
    ],
)
def test_other_languages_operators_name_the_cel_operator(source, offset, length, hint):
    """An operator of another language is one error spanning it, whose hint gives CEL's spelling."""
    with pytest.raises(ExpressionSyntaxError) as info:
        tokenize(source)
    operator = source[offset : offset + length]
    assert (info.value.message, info.value.offset, info.value.length, info.value.hint, info.value.reason) == (
        f"{operator!r} is not a CEL operator",
        offset,
        length,
        hint,
        "syntax",
    )


def test_an_arrow_in_a_macro_is_explained_as_a_macro_argument():
    """`xs.all(x => ...)` is a lambda, not >=: the hint shows CEL's macro form instead."""
    with pytest.raises(ExpressionSyntaxError) as info:
        tokenize("xs.all(x => x > 0)")
    assert (info.value.offset, info.value.length) == (9, 2)
    assert info.value.hint == "a macro takes its variable as the first argument, as in list.all(x, x > 0)"


def test_cel_operators_starting_like_foreign_ones_still_lex():
    """==, !=, <=, < and ! followed by other characters are not mistaken for foreign operators."""
    assert kinds("a==b!=c<=d<e!f") == [
        "ident",
        "==",
        "ident",
        "!=",
        "ident",
        "<=",
        "ident",
        "<",
        "ident",
        "!",
        "ident",
        "eof",
    ]
    assert kinds("a < -b") == ["ident", "<", "-", "ident", "eof"]


def test_back_quoted_names():
    """`...` lexes as a quoted name whose value is the text between the backquotes."""
    token = tokenize("`content-type`")[0]
    assert (token.kind, token.value, token.end) == ("quoted", "content-type", 14)


def test_unterminated_back_quote():
    """A lone backquote is a syntax error."""
    with pytest.raises(ExpressionSyntaxError, match="back-quoted"):
        tokenize("a.`b")


def test_optional_selection_is_one_token_only_before_a_name():
    """?. is lexed for optional syntax, but a conditional followed by .5 stays two tokens."""
    assert kinds("a?.b") == ["ident", "?.", "ident", "eof"]
    assert kinds("a?.5:1") == ["ident", "?", "double", ":", "int", "eof"]
