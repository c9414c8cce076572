"""Positioned diagnostics: the one shape every problem with a policy set takes."""

from __future__ import annotations

import dataclasses
import difflib
import enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

Severity = Literal["error", "warning", "info"]


class Code(enum.StrEnum):
    """Stable diagnostic codes.

    The numbering groups causes: ``TP1xx`` reading files and YAML, ``TP2xx`` document
    structure, ``TP3xx`` conditions, ``TP4xx`` meaning across documents, ``TP5xx`` test suites. Codes are never
    reused for a different problem; ``docs/diagnostics.md`` lists them all.
    """

    # Reading files and YAML
    NO_POLICY_FILES = "TP100"
    FILE_UNREADABLE = "TP101"
    FILE_TOO_LARGE = "TP102"
    NOT_UTF8 = "TP103"
    YAML_SYNTAX = "TP104"
    YAML_TAB = "TP105"
    YAML_DUPLICATE_KEY = "TP106"
    YAML_TAG = "TP107"
    YAML_TOO_DEEP = "TP108"
    YAML_TOO_MANY_NODES = "TP109"
    # TP110 is reserved (it was never issued: an unknown alias is a TP104 syntax error).
    YAML_COMPLEX_KEY = "TP111"
    SET_TOO_LARGE = "TP112"
    # Document structure
    NOT_A_MAPPING = "TP200"
    MISSING_API_VERSION = "TP201"
    UNSUPPORTED_API_VERSION = "TP202"
    MISSING_KIND = "TP203"
    UNKNOWN_KIND = "TP204"
    UNKNOWN_KEY = "TP205"
    MISSING_KEY = "TP206"
    WRONG_TYPE = "TP207"
    INVALID_VALUE = "TP208"
    DUPLICATE_NAME = "TP209"
    EMPTY_DOCUMENT = "TP210"
    # Conditions
    EXPRESSION_SYNTAX = "TP300"
    EXPRESSION_TYPE = "TP301"
    UNKNOWN_ATTRIBUTE = "TP302"
    INVALID_REGEX = "TP303"
    INVALID_TYPE_NAME = "TP304"
    INVALID_LITERAL = "TP305"
    CONSTANT_CONDITION = "TP306"
    # Meaning across documents
    UNKNOWN_TIER = "TP400"
    DUPLICATE_TIER = "TP401"
    MISSING_DOCUMENT = "TP402"
    DUPLICATE_DOCUMENT = "TP403"
    UNKNOWN_FEATURE = "TP404"
    UNKNOWN_LIMIT = "TP405"
    LIMIT_NOT_MONOTONE = "TP406"
    FEATURE_NOT_MONOTONE = "TP407"
    EXPIRED_OVERRIDE = "TP408"
    PROGRESSION_NOT_MONOTONE = "TP409"
    CONTEXT_CONFLICT = "TP410"
    MISSING_LIMIT_VALUE = "TP411"
    FLOOR_RULE = "TP412"
    UNREACHABLE_TIER = "TP413"
    MISSING_CATCH_ALL = "TP414"
    UNKNOWN_ERROR_CODE = "TP415"
    RULE_SHADOWED = "TP416"
    UNUSED_ERROR_CODE = "TP417"
    # Resilience: retry deadlines and operation patterns
    RETRY_EXCEEDS_DEADLINE = "TP420"
    RETRY_ATTEMPTS_UNREACHABLE = "TP421"
    AMBIGUOUS_OPERATION_PATTERN = "TP422"
    # Tiers entries that change nothing: no-op rollouts and overrides
    ROLLOUT_NO_OP = "TP430"
    OVERRIDE_NO_OP = "TP431"
    # Rate limits against the tier limits they declare they enforce
    RATE_CONTRADICTS_LIMIT = "TP440"
    # Test suites (tierpolicy test): a suite that cannot run as written
    UNKNOWN_FIXTURE = "TP500"
    INVALID_TEST = "TP501"
    NO_TEST_SUITES = "TP502"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in a policy file; line and column are 1-based as editors show them."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a policy set.

    Attributes:
        position: Where the problem is.
        severity: ``error`` makes the set fail to load; ``warning`` and ``info`` do not.
        code: The stable code of this kind of problem.
        message: What is wrong, in words a product manager can act on.
        hint: An optional suggestion (a "did you mean", the accepted values).
    """

    position: Position
    severity: Severity
    code: Code
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        """Whether this diagnostic prevents the policy set from loading."""
        return self.severity == "error"

    def format(self) -> str:
        """Render as ``FILE:LINE:COL: severity[CODE]: message (hint)``."""
        text = f"{self.position}: {self.severity}[{self.code.value}]: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy check --format json``."""
        return {
            "file": self.position.file,
            "line": self.position.line,
            "column": self.position.column,
            "severity": self.severity,
            "code": self.code.value,
            "message": self.message,
            "hint": self.hint,
        }


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return a ``did you mean 'x'?`` hint for the closest choice, if any is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def closest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` choices close to ``word``, best first."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)


def sort_key(diagnostic: Diagnostic) -> tuple[Position, str]:
    """Order diagnostics by file, line, column, then code."""
    return (diagnostic.position, diagnostic.code.value)
