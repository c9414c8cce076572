r"""The CEL lexer: source text to positioned tokens.

Follows the lexical grammar of the CEL language definition: decimal and hex integers
with an optional ``u`` suffix, doubles with fraction and/or exponent, strings and bytes
in single, double and triple quotes with an optional raw (``r``) prefix and the full
escape set (``\\a \\b \\f \\n \\r \\t \\v``, quotes, ``\\xHH``, ``\\uHHHH``,
``\\UHHHHHHHH`` and three-digit octal), identifiers, ``//`` comments and operators.
Back-quoted field names (```content-type```) are lexed for field selection.
Operators of other languages that are never valid CEL (``===``, ``!==``, ``<>``, ``=>``,
``=<``) are errors whose hint gives the CEL spelling.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from tierpolicy.engine._exceptions import ExpressionSyntaxError

from ._hints import FOREIGN_OPERATORS, cel_writes
from ._values import UINT64_MAX, UInt

RESERVED: Final = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
"""Words CEL reserves; they cannot name variables or fields."""


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """One token.

    Attributes:
        kind: ``int``, ``uint``, ``double``, ``string``, ``bytes``, ``bool``, ``null``,
            ``ident``, ``quoted`` (a back-quoted name), ``eof``, or the operator text.
        text: The exact source text of the token.
        value: The literal value for literal tokens (an unbounded ``int`` for ``int``
            tokens; the parser checks the range once it knows the sign), the name for
            identifiers, else ``None``.
        start: Offset of the first character.
        end: Offset one past the last character.
    """

    kind: str
    text: str
    value: object
    start: int
    end: int


_WHITESPACE: Final = re.compile(r"(?:[\t\n\f\r ]+|//[^\n\r]*)+")
_NUMBER: Final = re.compile(
    r"(?P<hex>0[xX][0-9a-fA-F]+)(?P<hexu>[uU])?"
    r"|(?P<double>[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)"
    r"|(?P<int>[0-9]+)(?P<intu>[uU])?"
)
_IDENT: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_QUOTED_IDENT: Final = re.compile(r"`([_a-zA-Z0-9.\-/ ]+)`")
_STRING_PREFIX: Final = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?=['\"])")
_OPERATORS: Final = (
    "?.",
    "<=",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "<",
    ">",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    ":",
    "?",
)
_LONE_OPERATOR_HINTS: Final = {
    "=": "did you mean '=='?",
    "&": "did you mean '&&'?",
    "|": "did you mean '||'?",
}
_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "?": "?",
    '"': '"',
    "'": "'",
    "`": "`",
}
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``eof`` token.

    Raises:
        ExpressionSyntaxError: On a character or literal that is not valid CEL.
    """
    return _Lexer(source).run()


class _Lexer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.tokens: list[Token] = []

    def error(
        self, message: str, offset: int, length: int = 1, hint: str | None = None
    ) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(message, source=self.source, offset=offset, length=length, hint=hint)

    def run(self) -> list[Token]:
        source = self.source
        while True:
            space = _WHITESPACE.match(source, self.pos)
            if space is not None:
                self.pos = space.end()
            if self.pos >= len(source):
                self.tokens.append(Token("eof", "", None, len(source), len(source)))
                return self.tokens
            self.tokens.append(self.next_token())

    def next_token(self) -> Token:
        source = self.source
        start = self.pos
        char = source[start]
        if char.isdigit() or (char == "." and source[start + 1 : start + 2].isdigit()):
            return self.number()
        prefix = _STRING_PREFIX.match(source, start)
        if prefix is not None:
            return self.string(prefix.end() - start)
        ident = _IDENT.match(source, start)
        if ident is not None:
            return self.identifier(ident.group())
        if char == "`":
            quoted = _QUOTED_IDENT.match(source, start)
            if quoted is None:
                raise self.error("unterminated or invalid back-quoted name", start)
            self.pos = quoted.end()
            return Token("quoted", quoted.group(), quoted.group(1), start, self.pos)
        if char in "=!<":
            self.foreign_operator(start)
        for operator in _OPERATORS:
            if source.startswith(operator, start):
                if operator == "?." and not _starts_name(source, start + 2):
                    continue  # a conditional followed by a selection-less operand
                self.pos = start + len(operator)
                return Token(operator, operator, None, start, self.pos)
        hint = _LONE_OPERATOR_HINTS.get(char)
        raise self.error(f"unexpected character {char!r}", start, hint=hint)

    def foreign_operator(self, start: int) -> None:
        """Reject another language's operator (``===``, ``<>``, ...) naming the CEL one."""
        for foreign, cel in FOREIGN_OPERATORS.items():
            if self.source.startswith(foreign, start):
                hint = cel_writes(foreign, cel)
                if foreign == "=>" and [t.kind for t in self.tokens[-2:]] == ["(", "ident"]:
                    hint = "a macro takes its variable as the first argument, as in list.all(x, x > 0)"
                raise self.error(f"{foreign!r} is not a CEL operator", start, len(foreign), hint=hint)

    def identifier(self, name: str) -> Token:
        start = self.pos
        self.pos += len(name)
        if name in ("true", "false"):
            return Token("bool", name, name == "true", start, self.pos)
        if name == "null":
            return Token("null", name, None, start, self.pos)
        if name == "in":
            return Token("in", name, None, start, self.pos)
        return Token("ident", name, name, start, self.pos)

    def number(self) -> Token:
        start = self.pos
        match = _NUMBER.match(self.source, start)
        if match is None:  # pragma: no cover  next_token only calls this on a digit
            raise self.error("invalid number", start)
        self.pos = match.end()
        text = match.group()
        if match.group("double") is not None:
            value = float(text)
            return Token("double", text, value, start, self.pos)
        digits = match.group("hex") or match.group("int")
        number = int(digits, 16) if match.group("hex") else int(digits)
        if match.group("hexu") or match.group("intu"):
            if number > UINT64_MAX:
                raise self.error("uint literal out of range", start, len(text))
            return Token("uint", text, UInt(number), start, self.pos)
        return Token("int", text, number, start, self.pos)

    def string(self, prefix_length: int) -> Token:
        source = self.source
        start = self.pos
        prefix = source[start : start + prefix_length].lower()
        raw = "r" in prefix
        is_bytes = "b" in prefix
        body_start = start + prefix_length
        quote = source[body_start]
        if source.startswith(quote * 3, body_start):
            quote *= 3
        body_start += len(quote)
        end = self.find_end(body_start, quote, raw=raw)
        body = source[body_start:end]
        self.pos = end + len(quote)
        text = source[start : self.pos]
        if raw:
            value: str | bytes = body.encode("utf-8") if is_bytes else body
        else:
            value = self.unescape(body, body_start, is_bytes=is_bytes)
        return Token("bytes" if is_bytes else "string", text, value, start, self.pos)

    def find_end(self, position: int, quote: str, *, raw: bool) -> int:
        source = self.source
        while position < len(source):
            if source.startswith(quote, position):
                return position
            char = source[position]
            if char in "\r\n" and len(quote) == 1:
                break
            position += 2 if char == "\\" and not raw else 1
        raise self.error("unterminated string literal", position - 1 if position else 0)

    def unescape(self, body: str, offset: int, *, is_bytes: bool) -> str | bytes:
        out = bytearray() if is_bytes else None
        parts: list[str] = []
        i = 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                if out is not None:
                    out += char.encode("utf-8")
                else:
                    parts.append(char)
                i += 1
                continue
            code, width, is_byte = self.escape(body, i, offset, is_bytes=is_bytes)
            if out is not None:
                out += bytes([code]) if is_byte else chr(code).encode("utf-8")
            else:
                parts.append(chr(code))
            i += width
        return bytes(out) if out is not None else "".join(parts)

    def escape(self, body: str, i: int, offset: int, *, is_bytes: bool) -> tuple[int, int, bool]:
        """Decode the escape at ``body[i]``: (code, characters consumed, is a raw byte)."""
        kind = body[i + 1 : i + 2]
        where = offset + i
        if kind in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[kind]), 2, False
        if kind in ("x", "X"):
            return self.hex_escape(body, i, 2, where), 4, True
        if kind in ("u", "U"):
            if is_bytes:
                raise self.error("\\u and \\U escapes are not allowed in bytes literals", where, 2)
            width = 4 if kind == "u" else 8
            code = self.hex_escape(body, i, width, where)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise self.error("escape is not a valid Unicode code point", where, width + 2)
            return code, width + 2, False
        digits = body[i + 1 : i + 4]
        if len(digits) == 3 and digits[0] in "0123" and all(d in "01234567" for d in digits):
            return int(digits, 8), 4, True
        raise self.error("invalid escape sequence", where, 2)

    def hex_escape(self, body: str, i: int, width: int, where: int) -> int:
        digits = body[i + 2 : i + 2 + width]
        if len(digits) != width or not all(d in _HEX for d in digits):
            raise self.error(f"escape needs {width} hex digits", where, 2 + len(digits))
        return int(digits, 16)


def _starts_name(source: str, position: int) -> bool:
    char = source[position : position + 1]
    return char in {"`", "_"} or (char.isascii() and char.isalpha())
