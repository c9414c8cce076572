"""Tests of ``tierpolicy diff`` and ``tierpolicy errors`` on the command line: formats, exit codes, git."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tierpolicy import cli

ROOT = Path(__file__).resolve().parents[2]
BASE_FILES = ROOT / "policies"


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


def copy_set(target: Path) -> Path:
    """A copy of the marketplace policies at ``target``."""
    shutil.copytree(BASE_FILES, target)
    return target


def edit(directory: Path, name: str, old: str, new: str) -> None:
    """Replace ``old`` (which must occur once) by ``new`` in one policy file."""
    path = directory / name
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the marketplace set; the second gives silver video and lowers gold's listings."""
    old, new = copy_set(tmp_path / "old"), copy_set(tmp_path / "new")
    edit(
        new,
        "tiers.yaml",
        "Add a product video to listings.\n      from: gold",
        "Add a product video to listings.\n      from: silver",
    )
    edit(new, "tiers.yaml", "gold: 50000", "gold: 20000")
    return old, new


def test_diff_text_and_exit_zero(monkeypatch, capsys, pair):
    """Without --fail-on, a diff exits 0 and prints each change with its effect."""
    old, new = pair
    code, out, _ = run(monkeypatch, capsys, "diff", str(old), str(new))
    assert code == 0
    assert "  listing.video  tier silver: not granted -> granted  [loosen: gained]\n" in out
    assert "  active_listings  tier gold: 50000 -> 20000  [tighten: lowered]\n" in out
    assert out.endswith("2 changes: 1 loosen, 1 tighten, 0 neutral. The change loosens and tightens.\n")


@pytest.mark.parametrize(
    ("fail_on", "lower", "expected"),
    [("tighten", True, 1), ("tighten", False, 0), ("loosen", False, 1), ("any", False, 1)],
)
def test_fail_on(monkeypatch, capsys, tmp_path, fail_on, lower, expected):
    """--fail-on exits 1 exactly when the diff has changes of that effect (any: any change)."""
    old, new = copy_set(tmp_path / "old"), copy_set(tmp_path / "new")
    edit(new, "tiers.yaml", "gold: 50000", "gold: 20000" if lower else "gold: 90000")
    code, _, _ = run(monkeypatch, capsys, "diff", str(old), str(new), "--fail-on", fail_on)
    assert code == expected


def test_fail_on_any_passes_without_changes(monkeypatch, capsys, tmp_path):
    """Identical sets pass even --fail-on any, and say there is nothing to review."""
    old, new = copy_set(tmp_path / "old"), copy_set(tmp_path / "new")
    code, out, _ = run(monkeypatch, capsys, "diff", str(old), str(new), "--fail-on", "any")
    assert code == 0
    assert out.endswith("No semantic changes.\n")


def test_diff_json_and_markdown(monkeypatch, capsys, pair):
    """--format json is the diff's JSON; --format markdown starts with the summary line."""
    old, new = pair
    code, out, _ = run(monkeypatch, capsys, "diff", str(old), str(new), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["summary"] == "both"
    assert data["counts"] == {"loosen": 1, "tighten": 1, "neutral": 0}
    code, out, _ = run(monkeypatch, capsys, "diff", str(old), str(new), "--format", "markdown")
    assert code == 0
    assert out.startswith("**Policy diff: loosens and tightens** (2 changes: 1 loosen, 1 tighten, 0 neutral;")
    assert "| `active_listings` | `tier gold` | `50000` | `20000` | **tighten** (lowered) |" in out


def test_diff_missing_directory_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """A directory that does not exist exits 2 naming it, without a traceback."""
    code, out, err = run(monkeypatch, capsys, "diff", str(tmp_path / "nope"), str(BASE_FILES))
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such file or directory (write git:REV for a git revision)" in err
    assert "Traceback" not in out + err


def test_diff_bad_option_is_a_usage_error(monkeypatch, capsys):
    """An unknown --format or --fail-on value exits 2."""
    assert run(monkeypatch, capsys, "diff", "policies", "policies", "--format", "html")[0] == 2
    assert run(monkeypatch, capsys, "diff", "policies", "policies", "--fail-on", "sideways")[0] == 2


def test_diff_set_that_does_not_load(monkeypatch, capsys, tmp_path):
    """A set that does not load prints its diagnostics and exits 1."""
    old, new = copy_set(tmp_path / "old"), copy_set(tmp_path / "new")
    edit(new, "tiers.yaml", "from: platinum", "from: diamond")
    code, _, err = run(monkeypatch, capsys, "diff", str(old), str(new))
    assert code == 1
    assert f"{new}/tiers.yaml:" in err
    assert "error[TP" in err
    assert f"the policy set {new} did not load (1 error)" in err


# --------------------------------------------------------------------------- git


def git(repo: Path, *args: str) -> None:
    """Run git in ``repo`` with a fixed identity."""
    subprocess.run(  # noqa: S603  fixed arguments from these tests
        [  # noqa: S607  git from PATH, as users run it
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A git repository with two commits of policies/: the second lowers gold's listings; cwd is it."""
    root = tmp_path / "repo"
    root.mkdir()
    copy_set(root / "policies")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    edit(root / "policies", "tiers.yaml", "gold: 50000", "gold: 20000")
    git(root, "commit", "-q", "-am", "two")
    monkeypatch.chdir(root)
    return root


@pytest.mark.usefixtures("repo")
def test_diff_git_revisions(monkeypatch, capsys):
    """git:REV reads the policy directory as committed; labels name the revision and path."""
    code, out, _ = run(monkeypatch, capsys, "diff", "git:HEAD~1", "git:HEAD", "--fail-on", "tighten")
    assert code == 1
    assert out.startswith("diff git:HEAD~1:policies (version ")
    assert "  active_listings  tier gold: 50000 -> 20000  [tighten: lowered]\n" in out


def test_diff_git_against_working_tree(monkeypatch, capsys, repo):
    """A revision compares with a directory; the committed set equals the working tree's."""
    code, out, _ = run(monkeypatch, capsys, "diff", "git:HEAD", "policies")
    assert code == 0
    assert out.endswith("No semantic changes.\n")
    sub = repo / "policies"
    monkeypatch.chdir(sub)
    code, out, _ = run(monkeypatch, capsys, "diff", "git:HEAD~1", ".", "--path", ".")
    assert code == 0
    assert "tier gold: 50000 -> 20000" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("git:nope", "git:HEAD"), "git:nope: no such revision in this repository"),
        (
            ("git:HEAD:elsewhere", "git:HEAD"),
            (
                "git:HEAD:elsewhere: no such revision in this repository (for a directory of a revision,"
                " write git:HEAD --path elsewhere)"
            ),
        ),
        (("git:", "git:HEAD"), "git:: name a revision after 'git:', e.g. git:HEAD~1 or git:main"),
        (("git:--all", "git:HEAD"), "git:--all: a revision cannot start with '-'"),
        (
            ("git:HEAD", "git:HEAD", "--path", "elsewhere"),
            "git:HEAD: the revision has no 'elsewhere' (paths are relative to the current directory)",
        ),
    ],
)
@pytest.mark.usefixtures("repo")
def test_diff_bad_revision_is_a_usage_error(monkeypatch, capsys, args, message):
    """A revision git cannot give exits 2 with a message naming it."""
    code, out, err = run(monkeypatch, capsys, "diff", *args)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in out + err


def test_diff_outside_a_repository(monkeypatch, capsys, tmp_path):
    """Outside a git repository, git's own complaint is passed on with exit 2."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code, _, err = run(monkeypatch, capsys, "diff", "git:HEAD", "git:HEAD")
    assert code == 2
    assert "git:HEAD: git failed: not a git repository" in " ".join(err.split())


def test_diff_git_revision_that_does_not_load(monkeypatch, capsys, repo):
    """A committed set that does not load prints diagnostics under the revision's label; exit 1."""
    edit(repo / "policies", "tiers.yaml", "from: platinum", "from: diamond")
    git(repo, "commit", "-q", "-am", "broken")
    code, _, err = run(monkeypatch, capsys, "diff", "git:HEAD~1", "git:HEAD")
    assert code == 1
    assert "git:HEAD:policies/tiers.yaml:" in err
    assert "the policy set git:HEAD:policies did not load (1 error)" in err


# --------------------------------------------------------------------------- errors


def test_errors_markdown_and_json(monkeypatch, capsys):
    """The registry prints as Markdown by default and as JSON on request."""
    code, out, _ = run(monkeypatch, capsys, "errors", str(BASE_FILES))
    assert code == 0
    assert out.startswith("# Error codes\n")
    assert "| [`RATE_LIMITED`](#rate_limited) | 429 | throttled | yes | Too many requests |" in out
    code, out, _ = run(monkeypatch, capsys, "errors", str(BASE_FILES), "--format", "json")
    assert code == 0
    codes = [entry["code"] for entry in json.loads(out)["codes"]]
    assert codes == sorted(codes)
    assert "INTERNAL" in codes


def test_errors_bad_input(monkeypatch, capsys, tmp_path):
    """A missing directory exits 2; a set without error codes, or that does not load, exits 1."""
    code, _, err = run(monkeypatch, capsys, "errors", str(tmp_path / "nope"))
    assert code == 2
    assert "no such file or directory" in err
    (tmp_path / "t.yaml").write_text(
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n  tiers: [{name: a}]\n"
    )
    code, _, err = run(monkeypatch, capsys, "errors", str(tmp_path))
    assert code == 1
    assert f"the policy set {tmp_path} has no Errors document, so no error codes" in " ".join(err.split())
    (tmp_path / "t.yaml").write_text("kind: [\n")
    code, _, err = run(monkeypatch, capsys, "errors", str(tmp_path))
    assert code == 1
    assert f"{tmp_path}/t.yaml:" in err
