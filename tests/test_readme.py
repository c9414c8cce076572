"""Tests that README.md's commands and example are the ones that really work."""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run contains README's test command verbatim, so CI runs what users run."""
    commands = [block.strip() for block in _blocks("sh")]
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1
    assert test_commands[0] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_main_command_checks_and_serves_the_shipped_files():
    """The main command checks policies/ and starts the service in the mode whose run tests/test_cli.py tries."""
    [main] = [block.strip() for block in _blocks("sh") if "tierpolicy serve" in block]
    assert "tierpolicy check policies/" in main
    assert main.endswith("tierpolicy serve --dev")
    assert "--input examples/eval-request.json" in README
    assert (ROOT / "examples" / "eval-request.json").is_file()


def test_readme_python_example_runs(monkeypatch, tmp_path):
    """The library example in README.md runs as written against the shipped policies."""
    [example] = _blocks("python")
    monkeypatch.chdir(ROOT)
    path = tmp_path / "readme_example.py"
    path.write_text(example, encoding="utf-8")
    namespace = runpy.run_path(os.fspath(path))
    assert namespace["decision"].feature == "listing.promoted"
    assert namespace["decision"].policy_version == namespace["engine"].version
    assert namespace["problem"]["code"] == "PAYMENT_PROVIDER_TIMEOUT"
    assert namespace["results"] == ["red shoes"]


@pytest.mark.parametrize("link", re.findall(r"\]\((docs/[^)]+)\)", README))
def test_readme_links_to_existing_docs(link):
    """Every docs/ page the README links to exists."""
    assert (ROOT / link).is_file()
