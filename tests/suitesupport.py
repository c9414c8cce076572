"""Shared helpers of the test-suite tests: the marketplace set, and suites written to disk."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import tierpolicy

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"

HEADER = "apiVersion: tierpolicy/v1\nkind: TestSuite\nmetadata:\n  name: {name}\nspec:\n"


def marketplace() -> tierpolicy.PolicySet:
    """The shipped marketplace policy set."""
    return tierpolicy.engine._loader.load(POLICIES)


def copy_policies(target: Path, *, suites: bool = True) -> Path:
    """Copy the marketplace policies (with or without their suites) to ``target``."""
    shutil.copytree(POLICIES, target, ignore=None if suites else shutil.ignore_patterns("tests"))
    return target


def suite_text(spec: str, name: str = "demo") -> str:
    """A whole TestSuite document around ``spec`` (written without its indentation)."""
    return HEADER.format(name=name) + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n"


def write_suite(directory: Path, spec: str, *, file: str = "demo_test.yaml", name: str = "demo") -> Path:
    """Write a suite into ``directory/tests`` and return its path."""
    (directory / "tests").mkdir(exist_ok=True)
    path = directory / "tests" / file
    path.write_text(suite_text(spec, name))
    return path
