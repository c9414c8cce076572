"""Policy authoring tools: test suites, deep checks, semantic diff, formatting, registry docs.

Everything here is pure: it reads policy files and runs the engine, and never imports a
network, database or web library (an import-linter contract enforces it).
"""

from ._diff import Change, PolicyDiff, diff_sets, render_markdown, render_text
from ._errors import RegistryEntry, error_registry, registry_json, registry_markdown
from ._fmt import FormatError, FormatResult, format_paths, format_text
from ._reports import TestReport, run_directory
from ._runner import Coverage, RunResult
from ._sarif import to_sarif
from ._suites import load_suites, suite_schema

__all__ = [
    "Change",
    "Coverage",
    "FormatError",
    "FormatResult",
    "PolicyDiff",
    "RegistryEntry",
    "RunResult",
    "TestReport",
    "diff_sets",
    "error_registry",
    "format_paths",
    "format_text",
    "load_suites",
    "registry_json",
    "registry_markdown",
    "render_markdown",
    "render_text",
    "run_directory",
    "suite_schema",
    "to_sarif",
]
