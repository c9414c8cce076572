"""SARIF 2.1.0 output of diagnostics (``tierpolicy check --format sarif``).

Code-scanning UIs (GitHub code scanning, the SARIF viewers of editors) read SARIF and
show each finding on its YAML line. GitHub reads an ``artifactLocation.uri`` relative to
the repository root and ignores ``originalUriBaseIds``, so locations are relative to a
*base* directory (the working directory, where CI runs from the repository root) under
the base id ``%SRCROOT%``, and the run maps ``%SRCROOT%`` to that directory's absolute URI
for every other consumer.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tierpolicy.engine._diagnostics import Code

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tierpolicy.engine._diagnostics import Diagnostic

__all__ = ["SARIF_SCHEMA", "SARIF_VERSION", "to_sarif"]

SARIF_VERSION: Final = "2.1.0"
"""The SARIF version written."""

SARIF_SCHEMA: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
"""The JSON Schema the output conforms to (the OASIS 2.1.0 errata 01 schema)."""

BASE_ID: Final = "%SRCROOT%"
"""The uriBaseId of every location: the base directory (the repository root in CI)."""

DOCS_URL: Final = "https://github.com/tierpolicy/tierpolicy/blob/main/docs/diagnostics.md"
"""Where each code is explained; a rule's helpUri is the code's section here."""

_LEVELS: Final = {"error": "error", "warning": "warning", "info": "note"}

# The "in short" column of the summary table in docs/diagnostics.md (the wheel does not
# ship the docs); tests/authoring/test_sarif.py checks that the two agree.
SHORT_DESCRIPTIONS: Final[dict[str, str]] = {
    "TP100": "no `.yaml`/`.yml` file in the directory",
    "TP101": "a file cannot be read, or links outside the directory",
    "TP102": "a file, a value or a number is too large",
    "TP103": "the file is not UTF-8 text",
    "TP104": "the YAML is malformed",
    "TP105": "a tab is used for indentation",
    "TP106": "a key appears twice in one mapping",
    "TP107": "a YAML tag that is not allowed",
    "TP108": "nested more than 64 levels",
    "TP109": "more than 100,000 values, aliases expanded",
    "TP111": "a list or mapping used as a key",
    "TP112": "more than 1,000 files or 16 MiB",
    "TP200": "a document is not a mapping",
    "TP201": "no `apiVersion`",
    "TP202": "an `apiVersion` this release does not read",
    "TP203": "no `kind`",
    "TP204": "a `kind` that does not exist",
    "TP205": "a key that is not allowed in that place",
    "TP206": "a required key is missing",
    "TP207": "a value of the wrong type",
    "TP208": "a value of the right type that is not allowed",
    "TP209": "two documents of one kind, or two rules of an Errors document, with the same name",
    "TP210": "an empty document",
    "TP300": "a condition does not parse",
    "TP301": "a condition mixes types, or is not true/false",
    "TP302": "a condition reads an undeclared attribute",
    "TP303": "a regular expression in a condition, or an Errors rule's message pattern, is invalid",
    "TP304": "a Context declares an unknown type",
    "TP305": 'a constant in a condition can never be converted (`duration("90d")`)',
    "TP306": "a condition is always true or always false",
    "TP400": "a tier name that is not in `tiers`",
    "TP401": "a tier listed twice",
    "TP402": "a `RateLimits` rate is given per tier, or a window `enforces` a tier limit, but the set has no `Tiers` document",
    "TP403": "two `Tiers` documents, or two `Errors` documents",
    "TP404": "an override names a feature that does not exist",
    "TP405": "an override, or a rate-limit window's `enforces`, names a limit that does not exist",
    "TP406": "a higher tier gets a lower limit",
    "TP408": "an override has already expired",
    "TP409": "a higher tier's progression rule does not require all the lower tier's rule requires",
    "TP410": "an attribute declared with two types or as both a value and an object, or a built-in redeclared",
    "TP411": "a limit has no value for the lowest tier",
    "TP412": "a progression rule for the lowest tier",
    "TP413": "no metrics reach a tier: its rule can never hold, or implies a higher tier's",
    "TP414": "the Errors rules have no catch-all, or it is not the last rule",
    "TP415": "a rule gives a code that `codes` does not declare",
    "TP416": "a rule can never match: an earlier rule matches every error it would",
    "TP417": "no rule gives this error code",
    "TP420": "in the worst case the retry attempts take longer than the deadline",
    "TP421": "some retry attempts can never run within the deadline",
    "TP422": "two operation patterns are equally specific and can match the same name, or one is defined twice",
    "TP430": "a feature's `rollout` is 100 (everybody, as without it) or 0 (nobody)",
    "TP431": "an override gives what every tier already gives, or is beaten by `enabled: false`",
    "TP440": "a rate-limit window's sustained rate differs from the tier limit it `enforces`",
}


def _plain(markdown: str) -> str:
    return markdown.replace("`", "")


def _rule(code: Code) -> dict[str, object]:
    short = SHORT_DESCRIPTIONS.get(code.value) or code.name.replace("_", " ").lower()
    anchor = f"{code.value.lower()}-{code.name.lower()}"
    help_uri = f"{DOCS_URL}#{anchor}"
    return {
        "id": code.value,
        "name": "".join(part.capitalize() for part in code.name.split("_")),
        "shortDescription": {"text": _plain(short), "markdown": short},
        "fullDescription": {"text": f"{code.value} {code.name}: {_plain(short)}"},
        "helpUri": help_uri,
        "help": {
            "text": f"{_plain(short)}. Examples and fixes: {help_uri}",
            "markdown": f"{short}. Examples and fixes: [{code.value} in docs/diagnostics.md]({help_uri})",
        },
    }


def _uri(file: str, base: Path) -> str:
    path = Path(file)
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        relative = absolute.resolve().relative_to(base.resolve())
    except ValueError:  # outside the base: an absolute file URI, which needs no base id
        return absolute.resolve().as_uri()
    return relative.as_posix() if relative.parts else "."


def _quote(uri: str) -> str:
    # A URI, not a path: escape what RFC 3986 does not allow in a path.
    return re.sub(
        r"[^A-Za-z0-9._~!$&'()*+,;=:@/%-]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), uri
    )


def to_sarif(diagnostics: Iterable[Diagnostic], *, base: Path | None = None) -> dict[str, object]:
    """Return a SARIF 2.1.0 log with one run holding ``diagnostics`` as results.

    Args:
        diagnostics: What ``tierpolicy check`` found, with file names as it shows them.
        base: The directory locations are relative to (default: the working directory).

    Returns:
        The SARIF log as JSON-ready data: the tool with one rule per diagnostic code, and
        one result per diagnostic with its level, message and file, line and column.
    """
    base = (base or Path.cwd()).resolve()
    try:
        tool_version = dist_version("tierpolicy")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
        tool_version = "0+unknown"
    codes = list(Code)
    index = {code: position for position, code in enumerate(codes)}
    results = []
    for diagnostic in diagnostics:
        message = diagnostic.message + (f" ({diagnostic.hint})" if diagnostic.hint else "")
        uri = _uri(diagnostic.position.file, base)
        location: dict[str, object] = {"uri": _quote(uri)}
        if not uri.startswith("file:"):
            location["uriBaseId"] = BASE_ID
        results.append(
            {
                "ruleId": diagnostic.code.value,
                "ruleIndex": index[diagnostic.code],
                "level": _LEVELS[diagnostic.severity],
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": location,
                            "region": {
                                "startLine": diagnostic.position.line,
                                "startColumn": diagnostic.position.column,
                            },
                        }
                    }
                ],
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tierpolicy",
                        "version": tool_version,
                        "semanticVersion": tool_version,
                        "informationUri": "https://github.com/tierpolicy/tierpolicy",
                        "rules": [_rule(code) for code in codes],
                    }
                },
                "originalUriBaseIds": {BASE_ID: {"uri": base.as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
