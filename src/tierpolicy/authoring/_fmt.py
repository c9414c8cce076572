"""Canonical formatting of policy files that keeps every comment (``tierpolicy fmt``).

The canonical form is defined in docs/formatting.md. In short: two-space indentation,
list items indented two spaces under their key, keys of known kinds in the canonical
order (``apiVersion``, ``kind``, ``metadata``, ``spec`` first, then each model's fields),
flow (``[a, b]``, ``{a: 1}``) or block style kept as written, quotes only where YAML needs
them, ``---`` only between documents, no trailing spaces, one final newline.

The formatter is built on ruamel.yaml's round-trip mode, which keeps comments, blank
lines, block scalars and the flow/block choice. Entries of block mappings are reordered as
whole line blocks, so a comment moves together with the entry below it. Every result is
read back with the engine's own YAML reader and compared with the original: a file whose
values would change is refused, never rewritten.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, Union

from pydantic import BaseModel

from tierpolicy.engine._classification import ErrorCodeSpec, ErrorMatchSpec
from tierpolicy.engine._diagnostics import Code, Diagnostic, Position
from tierpolicy.engine._documents import Metadata, OverrideSpec, ProgressionRuleSpec
from tierpolicy.engine._kinds import SPEC_MODELS
from tierpolicy.engine._loader import POLICY_SUFFIXES, SKIPPED_DIRECTORIES
from tierpolicy.engine._yaml import read_documents

from ._suites import TestSuiteSpec, suite_files

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "FormatError",
    "FormatResult",
    "canonical_key_order",
    "format_paths",
    "format_text",
    "policy_files",
    "run_fmt",
]

DOCUMENT_KEYS: Final = ("apiVersion", "kind", "metadata", "spec")
_SPECS: Final = {**SPEC_MODELS, "TestSuite": TestSuiteSpec}
"""The spec model of each kind whose keys have a canonical order: the policy kinds and suites."""
"""The canonical order of a document's top-level keys."""

# The models' field order, except where the shipped policies group fields by meaning
# (how an error code behaves before how it reads; a match's operation scope first; who
# and when at the end of an override) and the schema order would read worse.
_ORDER_OVERRIDES: Final[dict[type[BaseModel], tuple[str, ...]]] = {
    ErrorCodeSpec: (
        "category",
        "status",
        "retryable",
        "never_executed",
        "severity",
        "escalation",
        "expose_detail",
        "title",
        "message",
        "type",
        "description",
    ),
    ErrorMatchSpec: ("operation", "exception", "status", "reason", "domain", "message", "when"),
    ProgressionRuleSpec: ("description", "when"),
    OverrideSpec: (
        "id",
        "seller",
        "feature",
        "limit",
        "tier",
        "value",
        "reason",
        "author",
        "starts",
        "expires",
    ),
}


class FormatError(Exception):
    """A file cannot be formatted; ``diagnostics`` say where and why (the file is untouched)."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("; ".join(d.format() for d in self.diagnostics))


@dataclasses.dataclass(frozen=True, slots=True)
class FormatResult:
    """The outcome of formatting one file.

    Attributes:
        path: The file.
        original: Its text as read (``""`` when it could not be read).
        formatted: The canonical text, or ``None`` when the file was refused.
        diagnostics: Why the file was refused (empty when it was formatted).
    """

    path: Path
    original: str
    formatted: str | None
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether formatting changes the file (never true for a refused file)."""
        return self.formatted is not None and self.formatted != self.original

    def diff(self) -> str:
        """Return a unified diff from the file as it is to its canonical form."""
        if self.formatted is None:
            return ""
        name = self.path.as_posix()
        before, after = (name, name) if self.path.is_absolute() else (f"a/{name}", f"b/{name}")
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.formatted.splitlines(keepends=True),
                fromfile=before,
                tofile=after,
            )
        )

    def write(self) -> None:
        """Replace the file with its canonical form, atomically (temporary file, then rename).

        Raises:
            OSError: When the file cannot be written; it is then left as it was.
        """
        if self.formatted is None or not self.changed:
            return
        target = self.path.resolve()
        mode = target.stat().st_mode & 0o7777
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(self.formatted)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temporary).chmod(mode)
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


# --------------------------------------------------------------------------- key order


def canonical_key_order(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the canonical order of a model's keys (as written in YAML, i.e. aliases)."""
    override = _ORDER_OVERRIDES.get(model)
    if override is not None:
        return override
    return tuple(field.alias or name for name, field in model.model_fields.items())


_Shape = tuple[str, Any]  # ("model", type) | ("dict", annotation) | ("list", annotation)


def _shapes(annotation: object) -> list[_Shape]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shapes(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [shape for argument in typing.get_args(annotation) for shape in _shapes(argument)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("model", annotation)]
    if origin is dict:
        return [("dict", typing.get_args(annotation)[1])]
    if origin is list:
        return [("list", typing.get_args(annotation)[0])]
    return []


def _field_annotation(model: type[BaseModel], key: str) -> object:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field.annotation
    return None


def _walk(node: object, annotation: object, found: list[tuple[Any, tuple[str, ...]]]) -> None:
    """Collect every mapping under ``node`` whose keys have a canonical order."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq  # noqa: PLC0415 - optional extra

    for kind, inner in _shapes(annotation):
        if kind == "model" and isinstance(node, CommentedMap):
            found.append((node, canonical_key_order(inner)))
            for key, value in node.items():
                _walk(value, _field_annotation(inner, str(key)), found)
            return
        if kind == "dict" and isinstance(node, CommentedMap):
            for value in node.values():
                _walk(value, inner, found)
            return
        if kind == "list" and isinstance(node, CommentedSeq):
            for item in node:
                _walk(item, inner, found)
            return


def _ordered_mappings(document: object) -> list[tuple[Any, tuple[str, ...]]]:
    from ruamel.yaml.comments import CommentedMap  # noqa: PLC0415 - optional extra

    found: list[tuple[Any, tuple[str, ...]]] = []
    if not isinstance(document, CommentedMap):
        return found
    found.append((document, DOCUMENT_KEYS))
    if "metadata" in document:
        _walk(document["metadata"], Metadata, found)
    kind = document.get("kind")
    model = _SPECS.get(kind) if isinstance(kind, str) else None
    if model is not None and "spec" in document:
        _walk(document["spec"], model, found)
    return found


def _wanted(keys: list[Any], order: tuple[str, ...]) -> list[Any]:
    """Known keys in canonical order, then unknown ones in the order they were written."""
    rank = {name: index for index, name in enumerate(order)}
    known = sorted((k for k in keys if str(k) in rank), key=lambda k: rank[str(k)])
    return known + [k for k in keys if str(k) not in rank]


# --------------------------------------------------------------------------- formatting


def _yaml() -> Any:  # noqa: ANN401 - ruamel.yaml ships no type information for YAML
    try:
        from ruamel.yaml import YAML  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
        raise FormatError(
            [
                Diagnostic(
                    Position("<fmt>"),
                    "error",
                    Code.FILE_UNREADABLE,
                    "tierpolicy fmt needs ruamel.yaml: pip install 'tierpolicy[cli]'",
                )
            ]
        ) from exc
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    # Never re-wrap: a long line stays one line (wrapping would move text between lines).
    yaml.width = 1_000_000
    yaml.preserve_quotes = False
    yaml.allow_unicode = True
    return yaml


def _scalar_lines(text: str) -> frozenset[int]:
    """Return the 0-based lines inside multi-line scalars (where ``#`` is text, not a comment)."""
    import yaml  # noqa: PLC0415 - PyYAML's scanner knows where every scalar starts and ends

    lines: set[int] = set()
    for token in yaml.scan(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if isinstance(token, yaml.ScalarToken):
            # A block scalar ends at the start of the line after its text: not part of it.
            last = token.end_mark.line - (token.end_mark.column == 0)
            lines.update(range(token.start_mark.line + 1, last + 1))
    return frozenset(lines)


def _indent_comments(lines: list[str], text_lines: frozenset[int]) -> None:
    """Indent every full-line comment like the content line below it (the node it is about)."""
    below = 0
    for number in range(len(lines) - 1, -1, -1):
        line = lines[number]
        stripped = line.lstrip(" ")
        if number in text_lines or not stripped:
            continue
        if stripped.startswith("#"):
            lines[number] = " " * below + stripped
        else:
            below = _indent(line)


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _reorder_block(lines: list[str], mapping: Any, wanted: list[Any]) -> None:  # noqa: ANN401
    """Reorder a block mapping's entries in ``lines`` as blocks of whole lines.

    Each entry takes along the comment lines (and blank lines) directly above it that
    are not indented deeper than its key; comments after the last entry stay at the end.
    """
    keys = list(mapping.keys())
    starts: list[int] = []
    key_lines = [mapping.lc.key(k)[0] for k in keys]
    column = mapping.lc.key(keys[0])[1]
    for index, line_number in enumerate(key_lines):
        start = line_number
        if not (index == 0 and lines[line_number][:column].strip()):  # not on a "- " line
            while start - 1 >= 0 and _is_comment_or_blank(lines[start - 1]):
                previous = lines[start - 1]
                if previous.strip() and _indent(previous) > column:
                    break
                if index > 0 and start - 1 <= key_lines[index - 1]:
                    break
                start -= 1
        starts.append(start)
    end = key_lines[-1]
    probe = end + 1
    while probe < len(lines) and (_is_comment_or_blank(lines[probe]) or _indent(lines[probe]) > column):
        if not _is_comment_or_blank(lines[probe]):
            end = probe
        probe += 1
    bounds = [*starts[1:], end + 1]
    blocks = {key: lines[starts[i] : bounds[i]] for i, key in enumerate(keys)}
    dash_line = key_lines[0] - starts[0]
    first_block = blocks[keys[0]]
    prefix = first_block[dash_line][:column]
    has_dash = bool(prefix.strip())
    if has_dash:
        first_block[dash_line] = " " * column + first_block[dash_line][column:]
    region: list[str] = []
    for position, key in enumerate(wanted):
        block = list(blocks[key])
        if position == 0 and has_dash:
            key_offset = key_lines[keys.index(key)] - starts[keys.index(key)]
            block[key_offset] = prefix + block[key_offset][column:]
        region.extend(block)
    lines[starts[0] : end + 1] = region


def _canonical_once(text: str) -> str:
    yaml = _yaml()
    documents = list(yaml.load_all(text))
    # Flow mappings ({a: 1}) are reordered in the model; they hold no comments between keys.
    blocks_out_of_order = False
    for document in documents:
        for mapping, order in _ordered_mappings(document):
            keys = list(mapping.keys())
            wanted = _wanted(keys, order)
            if mapping.fa.flow_style():
                for key in wanted:
                    mapping.move_to_end(key)
            elif wanted != keys:
                blocks_out_of_order = True
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    dumped = stream.getvalue()
    # Block mappings are reordered as line blocks, so comments move with their entries.
    lines = dumped.split("\n")
    pending = []
    # Reading the result again is the slow part: only when some block needs moving.
    for document in yaml.load_all(dumped) if blocks_out_of_order else ():
        for mapping, order in _ordered_mappings(document):
            keys = list(mapping.keys())
            if mapping.fa.flow_style() or not keys:
                continue
            wanted = _wanted(keys, order)
            if wanted != keys:
                pending.append((mapping.lc.key(keys[0])[0], mapping, wanted))
    # Later (and so deeper) mappings first: reordering one never moves lines of another
    # that is still pending, only whole blocks that contain it.
    for _, mapping, wanted in sorted(pending, key=lambda item: -item[0]):
        _reorder_block(lines, mapping, wanted)
    cleaned = [line.rstrip() for line in lines]
    _indent_comments(cleaned, _scalar_lines("\n".join(cleaned)))
    while cleaned and not cleaned[-1]:
        cleaned.pop()
    return "\n".join(cleaned) + "\n" if cleaned else ""


def _values(text: str, file: str) -> list[object]:
    documents, _ = read_documents(text.encode("utf-8"), file)
    return [document.value for document in documents]


def format_text(text: str, *, file: str = "<string>") -> str:
    """Return the canonical form of one policy file's text.

    Args:
        text: The file's content.
        file: The name used in diagnostics.

    Returns:
        The canonical text (equal to ``text`` when it is already canonical).

    Raises:
        FormatError: The file does not parse (with the same positioned diagnostics as
            ``tierpolicy check``), or formatting would change one of its values.
    """
    text = text.removeprefix("\ufeff")
    documents, diagnostics = read_documents(text.encode("utf-8"), file)
    errors = [d for d in diagnostics if d.is_error]
    if errors:
        raise FormatError(errors)
    if not text.strip():
        return ""
    try:
        formatted = _canonical_once(text)
    except Exception as exc:  # ruamel.yaml's errors share no useful base class
        mark = getattr(exc, "problem_mark", None)
        position = Position(file, mark.line + 1, mark.column + 1) if mark is not None else Position(file)
        raise FormatError(
            [Diagnostic(position, "error", Code.YAML_SYNTAX, f"cannot format this file: {exc}")]
        ) from exc
    # The safety net: the formatted file must read back as exactly the same values.
    if _values(formatted, file) != [document.value for document in documents]:
        raise FormatError(
            [
                Diagnostic(
                    Position(file),
                    "error",
                    Code.YAML_SYNTAX,
                    "formatting this file would change its values, so it was left as it is",
                    hint="please report this file as a tierpolicy fmt bug",
                )
            ]
        )
    return formatted


# --------------------------------------------------------------------------- files


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into the files ``tierpolicy check`` would read: policies and suites.

    A file named explicitly is taken whatever its name; in a directory, files ending in
    ``.yaml`` or ``.yml`` are, except hidden ones and those under the top-level
    ``tests/``, and then the test suites there (``tests/**/*_test.yaml``).

    Raises:
        FileNotFoundError: A path does not exist.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(path)
        candidates: list[Path] = []
        for directory, subdirs, names in os.walk(path, followlinks=False):
            subdirs[:] = sorted(
                d
                for d in subdirs
                if not d.startswith(".") and not (Path(directory) == path and d in SKIPPED_DIRECTORIES)
            )
            candidates.extend(
                Path(directory, n) for n in names if n.endswith(POLICY_SUFFIXES) and not n.startswith(".")
            )
        found.extend(sorted(candidates))
        found.extend(suite_files(path))
    unique: dict[Path, None] = dict.fromkeys(found)
    return list(unique)


def format_paths(paths: Iterable[Path]) -> list[FormatResult]:
    """Format every policy file under ``paths`` in memory (nothing is written).

    Raises:
        FileNotFoundError: A path does not exist.
    """
    results = []
    for path in policy_files(paths):
        name = path.as_posix()
        try:
            data = path.read_bytes()
        except OSError as exc:
            problem = Diagnostic(
                Position(name), "error", Code.FILE_UNREADABLE, f"cannot read the file: {exc.strerror}"
            )
            results.append(FormatResult(path, "", None, (problem,)))
            continue
        try:
            original = data.decode("utf-8")
        except UnicodeDecodeError:
            # The engine's reader explains exactly where and why.
            _, diagnostics = read_documents(data, name)
            results.append(FormatResult(path, "", None, tuple(d for d in diagnostics if d.is_error)))
            continue
        try:
            formatted = format_text(original, file=name)
        except FormatError as exc:
            results.append(FormatResult(path, original, None, exc.diagnostics))
            continue
        results.append(FormatResult(path, original, formatted))
    return results


# --------------------------------------------------------------------------- command


def run_fmt(paths: Sequence[Path], *, check: bool, diff: bool, out: TextIO, err: TextIO) -> int:
    """Run ``tierpolicy fmt``: format (or with ``check``/``diff`` only report) policy files.

    Args:
        paths: Files and directories to format.
        check: List the files that would change instead of writing them.
        diff: Print a unified diff of each change instead of writing it.
        out: Where the report and the diffs go.
        err: Where refused files' diagnostics and write failures go.

    Returns:
        The exit code: 0 nothing to do or every file written, 1 a file was refused or
        (with ``check`` or ``diff``) would change, 2 a path does not exist.
    """
    for path in paths:
        if not path.exists():
            err.write(f"error: {path}: no such file or directory\n")
            return 2
    results = format_paths(paths)
    refused = [r for r in results if r.formatted is None]
    changed = [r for r in results if r.changed]
    for result in refused:
        err.writelines(diagnostic.format() + "\n" for diagnostic in result.diagnostics)
        err.write(f"error: {result.path.as_posix()}: not formatted (fix the errors above first)\n")
    report_only = check or diff
    failed_writes = 0
    for result in changed:
        if diff:
            out.write(result.diff())
        if check:
            out.write(f"would reformat {result.path.as_posix()}\n")
        if report_only:
            continue
        try:
            result.write()
        except OSError as exc:
            failed_writes += 1
            err.write(f"error: {result.path.as_posix()}: cannot write: {exc.strerror}; left as it was\n")
            continue
        out.write(f"reformatted {result.path.as_posix()}\n")
    unchanged = len(results) - len(changed) - len(refused)
    verb = "would be reformatted" if report_only else "reformatted"
    summary = f"{len(changed) - failed_writes} file{'s' * (len(changed) - failed_writes != 1)} {verb}"
    summary += f", {unchanged} already formatted"
    if refused:
        summary += f", {len(refused)} not formatted (errors)"
    out.write(summary + "\n")
    if refused or failed_writes or (report_only and changed):
        return 1
    return 0
