"""The compiled, immutable policy set."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import yaml

from ._yaml import resolve_plain

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pydantic import BaseModel

    from ._diagnostics import Diagnostic, Position
    from ._tiers import TierModel
    from .cel import CelType


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyDocument:
    """One validated document of the set.

    Attributes:
        kind: The document kind, e.g. ``Tiers``.
        name: ``metadata.name``.
        file: The file it came from, relative to the policy directory.
        position: Where the document starts.
        metadata: The validated ``metadata``.
        spec: The validated ``spec`` model of its kind.
    """

    kind: str
    name: str
    file: str
    position: Position
    metadata: BaseModel
    spec: BaseModel

    def to_data(self) -> dict[str, object]:
        """Return the document as plain data in canonical form (for dumping)."""
        from ._documents import API_VERSION  # noqa: PLC0415  avoid an import cycle at load

        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": self.metadata.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySet:
    """An immutable, compiled policy set.

    Attributes:
        version: The short content hash every decision reports (16 hex digits).
        digest: The full SHA-256 content hash of the files.
        root: The directory (or file) it was loaded from, as given.
        files: The policy files, relative to ``root``, in load order.
        documents: The validated documents, in file order.
        environment: The context schema conditions were checked against.
        tiers: The compiled tiers model, if the set has a ``Tiers`` document.
        models: The compiled models of the other kinds, by kind (see :meth:`model`).
        warnings: Diagnostics that did not prevent loading.
    """

    version: str
    digest: str
    root: str
    files: tuple[str, ...]
    documents: tuple[PolicyDocument, ...]
    environment: Mapping[str, CelType]
    tiers: TierModel | None
    models: Mapping[str, object]
    warnings: tuple[Diagnostic, ...]

    def model(self, kind: str) -> object | None:
        """The compiled model of ``kind`` (e.g. ``Errors``), or ``None`` if the set has none."""
        return self.models.get(kind)

    def dump(self) -> dict[str, str]:
        """Render the set as canonical YAML, one file per document kind.

        Loading the result gives a policy set that decides exactly as this one does
        (comments and formatting are not kept).
        """
        by_kind: dict[str, list[dict[str, object]]] = {}
        for document in self.documents:
            by_kind.setdefault(document.kind, []).append(document.to_data())
        return {f"{kind.lower()}.yaml": dump_yaml(docs) for kind, docs in by_kind.items()}


def dump_yaml(documents: Sequence[object], *, flow: bool = False) -> str:
    """Render plain data as YAML that our YAML 1.2 reader reads back to equal data."""
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=flow
    )


class _Dumper(yaml.SafeDumper):
    """Quotes every string that a YAML 1.2 core-schema reader would not read back as text.

    PyYAML emits YAML 1.1, which leaves ``1e3`` or ``0o17`` plain; our reader follows
    YAML 1.2, where those are numbers.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if resolve_plain(value) != value or not isinstance(resolve_plain(value), str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)
