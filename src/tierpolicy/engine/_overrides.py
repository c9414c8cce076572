"""Per-seller overrides: exceptions to tier rules, with a reason and an expiry.

Merge rule (documented in ``docs/policy-format.md``): an override applies while
``starts_at <= now < expires_at``. Overrides from the policy files come first, in file
order, then overrides passed with the request (from the service's database), in the
order given; for each target, the last active one wins. A tier override changes the
tier every feature and limit is evaluated at; feature and limit overrides then win over
tier rules, conditions and rollouts. Only ``enabled: false`` (a kill switch) beats a
feature override.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import datetime as dt

OverrideKind = Literal["feature", "limit", "tier"]


@dataclasses.dataclass(frozen=True, slots=True)
class Override:
    """One override for one seller.

    Attributes:
        seller_id: The seller it applies to.
        kind: ``feature``, ``limit`` or ``tier``.
        target: The feature, limit or tier name.
        value: For a feature, whether it is allowed; for a limit, the value or ``None``
            for unlimited; ``None`` for a tier.
        reason: Why it was granted (shown in decisions).
        expires_at: When it stops applying (exclusive).
        starts_at: When it starts applying, if not at once.
        author: Who granted it.
        rule: Its rule id in decisions, e.g. ``override:3``.
        source: Where it came from: a policy-file position or ``request``.
    """

    seller_id: str
    kind: OverrideKind
    target: str
    value: bool | int | None
    reason: str
    expires_at: dt.datetime
    starts_at: dt.datetime | None = None
    author: str = ""
    rule: str = "override"
    source: str = "request"

    def __post_init__(self) -> None:
        for stamp in (self.expires_at, self.starts_at):
            if stamp is not None and stamp.tzinfo is None:
                msg = "override timestamps must carry a timezone"
                raise ValueError(msg)
        if self.kind == "feature" and not isinstance(self.value, bool):
            msg = "a feature override's value is true or false"
            raise ValueError(msg)
        if (
            self.kind == "limit"
            and self.value is not None
            and (type(self.value) is not int or self.value < 0)
        ):
            msg = 'a limit override\'s value is a whole number >= 0, or unlimited ("unlimited" in JSON, None in Python)'
            raise ValueError(msg)
        if self.starts_at is not None and self.starts_at >= self.expires_at:
            msg = "an override's start must be before its expiry, or it never applies"
            raise ValueError(msg)
        if self.kind == "tier" and self.value is not None:
            msg = "a tier override names the tier in 'target' and has no value"
            raise ValueError(msg)

    def active_at(self, now: dt.datetime) -> bool:
        """Whether the override applies at ``now``."""
        return (self.starts_at is None or self.starts_at <= now) and now < self.expires_at

    def describe_value(self) -> str:
        """The value as a human reads it."""
        if self.kind == "feature":
            return "allowed" if self.value else "denied"
        if self.kind == "limit":
            return "unlimited" if self.value is None else str(self.value)
        return self.target
