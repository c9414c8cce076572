"""The error-code registry of a policy set, as support teams read it (``tierpolicy errors``)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tierpolicy.authoring._diff import inline_code, match_text
from tierpolicy.engine._classification import ErrorModel, ErrorsSpec

if TYPE_CHECKING:
    from tierpolicy.engine._policyset import PolicySet

__all__ = ["RegistryEntry", "error_registry", "registry_json", "registry_markdown"]


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One error code as support sees it.

    Attributes:
        code: The stable code (``RATE_LIMITED``).
        status: The HTTP status of its problem responses.
        category: Its category (``throttled``, ``not_found`` ...).
        retryable: Whether retrying may help.
        title: The short title of its problems.
        detail: The message users see, placeholders (``{retry_after}``) as written.
        type: The problem ``type`` URI.
        severity: ``info``, ``warning`` or ``error``.
        escalation: ``none``, ``alert`` or ``page``.
        description: The longer explanation, if the policy gives one.
        rules: The classification rules that give this code, as ``name: match``, in rule order.
    """

    code: str
    status: int
    category: str
    retryable: bool
    title: str
    detail: str
    type: str
    severity: str
    escalation: str
    description: str
    rules: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy errors --format json``."""
        return dataclasses.asdict(self) | {"rules": list(self.rules)}


def error_registry(policy_set: PolicySet) -> tuple[RegistryEntry, ...] | None:
    """Every error code of the set, sorted by code; ``None`` if the set has no Errors document."""
    model = policy_set.model("Errors")
    spec = next((d.spec for d in policy_set.documents if isinstance(d.spec, ErrorsSpec)), None)
    if not isinstance(model, ErrorModel) or spec is None:
        return None
    rules: dict[str, list[str]] = {}
    for rule in model.rules:
        rules.setdefault(rule.entry.code, []).append(f"{rule.name}: {match_text(rule)}")
    return tuple(
        RegistryEntry(
            code=code,
            status=entry.status,
            category=entry.category,
            retryable=entry.retryable,
            title=entry.title,
            detail=spec.codes[code].message,
            type=entry.type,
            severity=entry.severity,
            escalation=entry.escalation,
            description=spec.codes[code].description,
            rules=tuple(rules.get(code, ())),
        )
        for code, entry in sorted(model.codes.items())
    )


def registry_json(entries: tuple[RegistryEntry, ...], *, version: str) -> dict[str, object]:
    """The registry as JSON: the policy version and the codes, sorted by code."""
    return {"version": version, "codes": [entry.to_json() for entry in entries]}


def _escape(text: str) -> str:
    # One line per table cell; a pipe would end the cell.
    return " ".join(text.split()).replace("|", "\\|")


def registry_markdown(entries: tuple[RegistryEntry, ...], *, version: str) -> str:
    """The registry as Markdown: an overview table, then one section per code."""
    lines = [
        "# Error codes",
        "",
        f"Policy version `{version}`; {len(entries)} code{'s' * (len(entries) != 1)}, sorted by code.",
        "",
        "| code | HTTP status | category | retryable | title |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines.extend(
        f"| [`{e.code}`](#{e.code.lower()}) | {e.status} | {e.category} | {'yes' if e.retryable else 'no'}"
        f" | {_escape(e.title)} |"
        for e in entries
    )
    for e in entries:
        lines.extend(["", f"## {e.code}", "", f"**{_escape(e.title)}**: HTTP {e.status}, {e.category}, "])
        lines[-1] += (
            f"{'retryable' if e.retryable else 'not retryable'}, severity {e.severity}"
            + (f", escalation {e.escalation}" if e.escalation != "none" else "")
            + "."
        )
        lines.extend(["", f"- Detail shown to users: {_escape(e.detail)}", f"- Type: <{e.type}>"])
        if e.description:
            lines.append(f"- About: {_escape(e.description)}")
        if e.rules:
            lines.append("- Produced by the classification rules:")
            lines.extend(f"  - {inline_code(rule)}" for rule in e.rules)
        else:
            lines.append("- Produced by no classification rule.")
    return "\n".join(lines) + "\n"
