"""The command-line side of the authoring tools: reading sets from directories or git revisions.

``tierpolicy diff`` compares two policy sets, each a directory or ``git:REV`` (the policy
directory as committed in a git revision). Git is run here, in the command-line layer,
never in :mod:`tierpolicy.authoring`, which stays pure.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .engine._diagnostics import Code, Diagnostic, Position
from .engine._loader import (
    MAX_FILES,
    POLICY_SUFFIXES,
    SKIPPED_DIRECTORIES,
    CheckResult,
    SourceFile,
    check,
    check_files,
)
from .engine._yaml import YamlLimits

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "GIT_PREFIX",
    "DiffFormat",
    "ErrorsFormat",
    "FailOn",
    "SourceError",
    "read_set",
]

GIT_PREFIX = "git:"
GIT_TIMEOUT = 60.0
"""Seconds one git command may take."""


class DiffFormat(StrEnum):
    """Output formats of ``tierpolicy diff``."""

    text = "text"
    json = "json"
    markdown = "markdown"


class FailOn(StrEnum):
    """Which changes make ``tierpolicy diff --fail-on`` exit 1."""

    tighten = "tighten"
    loosen = "loosen"
    any = "any"


class ErrorsFormat(StrEnum):
    """Output formats of ``tierpolicy errors``."""

    markdown = "markdown"
    json = "json"


class SourceError(Exception):
    """A set that cannot even be read: a missing directory, a bad revision (a usage error)."""


def read_set(source: str, path: str) -> tuple[str, CheckResult]:
    """Read and check the set named ``source``: a directory, or ``git:REV`` with ``path`` inside it.

    Returns:
        A label naming the set for people (``policies/``, ``git:HEAD~1:policies``) and
        what checking it found; diagnostics name files under that label.

    Raises:
        SourceError: The directory does not exist, or git cannot give the revision.
    """
    if not source.startswith(GIT_PREFIX):
        if not Path(source).exists():
            msg = f"{source}: no such file or directory (write git:REV for a git revision)"
            raise SourceError(msg)
        return source, check(source)
    revision = source.removeprefix(GIT_PREFIX)
    if not revision:
        msg = f"{source}: name a revision after 'git:', e.g. git:HEAD~1 or git:main"
        raise SourceError(msg)
    if revision.startswith("-"):
        msg = f"{source}: a revision cannot start with '-'"
        raise SourceError(msg)
    label = f"{source}:{path}"
    files, problems = _git_files(source, revision, path)
    result = check_files(files, root=label) if files else CheckResult(None, ())
    diagnostics = [*problems, *result.diagnostics]
    single = path.endswith(POLICY_SUFFIXES)  # one policy file rather than a directory
    shown = tuple(
        dataclasses.replace(
            d,
            position=dataclasses.replace(d.position, file=label if single else f"{label}/{d.position.file}"),
        )
        if d.position.file != label
        else d
        for d in diagnostics
    )
    failed = result.policy_set is None or any(d.is_error for d in problems)
    return label, CheckResult(None if failed else result.policy_set, shown)


def _git(source: str, *args: str, unknown: str | None = None) -> bytes:
    try:
        completed = subprocess.run(  # noqa: S603  fixed program, arguments checked above
            ["git", "--no-pager", *args],  # noqa: S607  git from PATH, as a user runs it
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError:
        msg = f"{source}: reading a git revision needs git, which is not installed"
        raise SourceError(msg) from None
    except subprocess.TimeoutExpired:
        msg = f"{source}: git did not answer within {GIT_TIMEOUT:g} seconds"
        raise SourceError(msg) from None
    if completed.returncode != 0:
        said = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        if not said and unknown is not None:
            raise SourceError(unknown)
        reason = said[-1] if said else f"exit status {completed.returncode}"
        msg = f"{source}: git failed: {reason.removeprefix('fatal: ')}"
        raise SourceError(msg)
    return completed.stdout


def _git_files(source: str, revision: str, path: str) -> tuple[list[SourceFile], list[Diagnostic]]:
    commit = _git(
        source,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{revision}^{{commit}}",
        unknown=f"{source}: no such revision in this repository"
        + (
            f" (for a directory of a revision, write git:{revision.split(':', 1)[0]} --path {revision.split(':', 1)[1]})"
            if ":" in revision and not revision.startswith(":")
            else ""
        ),
    ).decode()
    base = PurePosixPath(Path(path).as_posix())
    # Paths are relative to the current directory, as `git show REV:./path` reads them.
    listing = _git(source, "ls-tree", "-r", "-z", "-l", commit.strip(), "--", base.as_posix())
    entries = _entries(listing)
    if not entries:
        msg = f"{source}: the revision has no {path!r} (paths are relative to the current directory)"
        raise SourceError(msg)
    limit = YamlLimits().max_file_bytes
    files: list[SourceFile] = []
    problems: list[Diagnostic] = []
    for name, full, size in sorted(_policy_files(entries, base))[: MAX_FILES + 1]:
        if size > limit:
            problems.append(
                Diagnostic(
                    Position(name),
                    "error",
                    Code.FILE_TOO_LARGE,
                    f"the file is {size:,} bytes; a policy file may be at most {limit:,} bytes",
                    hint="split it into several files",
                )
            )
            continue
        files.append(SourceFile(name, _git(source, "show", f"{commit.strip()}:./{full}")))
    if not files and not problems:
        msg = f"{source}: {path!r} holds no policy files (.yaml or .yml) in that revision"
        raise SourceError(msg)
    return files, problems


def _entries(listing: bytes) -> list[tuple[str, str, int]]:
    """``(path, type, size)`` of each ``ls-tree -l -z`` entry."""
    found = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        kind, size = meta.split()[1:4:2]
        found.append(
            (name.decode("utf-8", "surrogateescape"), kind.decode(), int(size) if size.isdigit() else 0)
        )
    return found


def _policy_files(entries: Sequence[tuple[str, str, int]], base: PurePosixPath) -> list[tuple[str, str, int]]:
    """``(name relative to base, path relative to here, size)`` of the files the loader would read."""
    if len(entries) == 1 and PurePosixPath(entries[0][0]) == base:  # one file, not a directory
        name, _, size = entries[0]
        return [(base.name, name, size)] if name.endswith(POLICY_SUFFIXES) else []
    picked = []
    for name, kind, size in entries:
        relative = PurePosixPath(name).relative_to(base)
        parts = relative.parts
        if kind != "blob" or any(part.startswith(".") for part in parts):
            continue
        if len(parts) > 1 and parts[0] in SKIPPED_DIRECTORIES:
            continue
        if relative.name.endswith(POLICY_SUFFIXES):
            picked.append((relative.as_posix(), name, size))
    return picked
