"""Tests of the tierpolicy command line: exit codes, formats, and no tracebacks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tierpolicy
from support import SMALL_SET
from tierpolicy import cli
from tierpolicy.engine._kinds import SPEC_MODELS

ROOT = Path(__file__).resolve().parents[1]


def run(monkeypatch, capsys, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A directory holding the small policy set."""
    (tmp_path / "policy.yaml").write_text(SMALL_SET)
    return tmp_path


def test_check_valid_exits_zero(monkeypatch, capsys, policies):
    """Check exits 0 for a valid set and says so with the version."""
    code, out, _ = run(monkeypatch, capsys, "check", str(policies))
    assert code == 0
    assert "is valid (0 errors, 0 warnings; version" in out


def test_check_invalid_exits_one_with_positioned_diagnostics(monkeypatch, capsys, tmp_path):
    """Check exits 1 and prints FILE:LINE:COL: severity[CODE]: message lines."""
    (tmp_path / "t.yaml").write_text(
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n  tiers: [{name: a}]\n  featurs: {}\n"
    )
    code, out, _ = run(monkeypatch, capsys, "check", str(tmp_path))
    assert code == 1
    assert f"{tmp_path}/t.yaml:6:3: error[TP205]: unknown key 'featurs' in spec" in out
    assert "Traceback" not in out


def test_check_json_format(monkeypatch, capsys, tmp_path):
    """--format json gives the same diagnostics as JSON."""
    (tmp_path / "t.yaml").write_text("kind: Tiers\n")
    code, out, _ = run(monkeypatch, capsys, "check", str(tmp_path), "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert report["valid"] is False
    assert report["diagnostics"][0]["code"] == "TP201"
    assert report["diagnostics"][0]["line"] == 1


def test_usage_errors_exit_two(monkeypatch, capsys, tmp_path):
    """Unknown options, bad formats and missing paths are usage errors (exit 2)."""
    assert run(monkeypatch, capsys, "check", str(tmp_path), "--format", "xml")[0] == 2
    assert run(monkeypatch, capsys, "check", str(tmp_path / "missing"))[0] == 2
    assert run(monkeypatch, capsys, "check", "--bogus")[0] == 2
    assert (
        run(
            monkeypatch,
            capsys,
            "eval",
            "--policies",
            str(tmp_path),
            "--input",
            str(tmp_path / "none.json"),
        )[0]
        == 2
    )
    assert run(monkeypatch, capsys, "schema", "Nope")[0] == 2


def test_eval_answers_json(monkeypatch, capsys, policies, tmp_path):
    """Eval reads a JSON request and prints the JSON answer."""
    request = {
        "context": {"seller": {"id": "s", "tier": "gold"}},
        "queries": [{"kind": "limit", "name": "listings"}],
    }
    path = tmp_path / "req.json"
    path.write_text(json.dumps(request))
    code, out, _ = run(monkeypatch, capsys, "eval", "--policies", str(policies), "--input", str(path))
    assert code == 0
    assert json.loads(out)["results"][0]["decision"]["value"] == "unlimited"


def test_eval_reads_stdin(monkeypatch, capsys, policies):
    """--input - reads the request from standard input."""
    request = {
        "context": {"seller": {"id": "s", "tier": "gold"}},
        "queries": [{"kind": "feature", "name": "basic"}],
    }
    code, out, _ = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", "-", stdin=json.dumps(request))
    assert code == 0
    assert json.loads(out)["results"][0]["decision"]["allowed"] is True


def test_eval_invalid_json_is_positioned(monkeypatch, capsys, policies):
    """Invalid JSON is reported with its line and column, exit 1, no traceback."""
    code, _, err = run(
        monkeypatch,
        capsys,
        "eval",
        "-p",
        str(policies),
        "-i",
        "-",
        stdin='{"context": {},\n "queries": [}',
    )
    assert code == 1
    assert "<stdin>:2:14: invalid JSON" in err
    assert "Traceback" not in err


def test_eval_invalid_request_exits_one(monkeypatch, capsys, policies):
    """A request of the wrong shape is reported and exits 1."""
    code, _, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", "-", stdin="[1, 2]")
    assert code == 1
    assert "invalid request: the request must be a JSON object" in err


def test_eval_with_broken_policies_exits_one(monkeypatch, capsys, tmp_path):
    """Eval refuses to answer from a policy set that does not load."""
    (tmp_path / "t.yaml").write_text("kind: Tiers\n")
    code, _, err = run(monkeypatch, capsys, "eval", "-p", str(tmp_path), "-i", "-", stdin="{}")
    assert code == 1
    assert "error[TP201]" in err


def test_explain_shows_the_trace(monkeypatch, capsys, policies):
    """Explain prints each step of one query's decision."""
    request = {
        "context": {
            "seller": {"id": "s", "tier": "gold", "verified": True},
            "metrics": {"rating": 4.9},
        },
        "queries": [{"kind": "feature", "name": "basic"}, {"kind": "feature", "name": "promoted"}],
    }
    code, out, _ = run(
        monkeypatch,
        capsys,
        "explain",
        "-p",
        str(policies),
        "-i",
        "-",
        "--query",
        "1",
        stdin=json.dumps(request),
    )
    assert code == 0
    assert "promoted: allow (CONDITION_MATCH)" in out
    assert "condition: seller.verified && metrics.rating >= 4.5 is true" in out
    code, _, err = run(
        monkeypatch,
        capsys,
        "explain",
        "-p",
        str(policies),
        "-i",
        "-",
        "--query",
        "5",
        stdin=json.dumps(request),
    )
    assert code == 2
    assert "--query 5 is neither an index nor an id of one" in err


def test_schema_prints_every_kind(monkeypatch, capsys, tmp_path):
    """Schema prints a JSON Schema per kind, or writes them to a directory."""
    code, out, _ = run(monkeypatch, capsys, "schema", "Tiers")
    schema = json.loads(out)
    assert code == 0
    assert schema["properties"]["kind"] == {"const": "Tiers"}
    assert "TiersSpec" in schema["$defs"]
    code, _, _ = run(monkeypatch, capsys, "schema", "--output", str(tmp_path))
    expected = sorted(
        [
            *(f"{kind.lower()}.schema.json" for kind in SPEC_MODELS),
            "policy.schema.json",
            "testsuite.schema.json",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    one = tmp_path / "one"
    code, _, _ = run(monkeypatch, capsys, "schema", "tiers", "--output", str(one))
    assert (code, [p.name for p in one.iterdir()]) == (0, ["tiers.schema.json"])


def test_console_script_runs_on_the_shipped_policies():
    """The installed module entry point checks the shipped policy set cleanly."""
    completed = subprocess.run(
        [sys.executable, "-m", "tierpolicy.cli", "check", "policies"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "0 errors, 0 warnings" in completed.stdout


def test_serve_reports_bad_settings_without_a_traceback(monkeypatch, capsys, policies):
    """A malformed environment variable is a usage error naming the variable."""
    monkeypatch.setenv("PORT", "eighty")
    code, _, err = run(monkeypatch, capsys, "serve", "--policies", str(policies))
    assert code == 2
    assert "PORT" in err
    assert "Traceback" not in err


def test_serve_refuses_a_jwt_key_it_cannot_use_as_a_bad_setting(monkeypatch, capsys, policies, tmp_path):
    """A JWT secret too short for HS256 stops serve with exit 2, naming the setting."""
    monkeypatch.setenv("JWT_SECRET", "short")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tp.db'}")
    code, _, err = run(monkeypatch, capsys, "serve", "--policies", str(policies))
    assert code == 2
    assert "invalid settings: JWT_SECRET" in err


def test_serve_refuses_a_missing_or_broken_policy_directory(monkeypatch, capsys, tmp_path):
    """A missing directory is a usage error; a broken set prints its diagnostics and exits 1."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tp.db'}")
    code, _, err = run(monkeypatch, capsys, "serve", "--policies", str(tmp_path / "nowhere"))
    assert (code, "no such policy directory" in err) == (2, True)
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: x}\nspec: {tiers: 3}\n"
    )
    code, _, err = run(monkeypatch, capsys, "serve", "--policies", str(tmp_path))
    assert code == 1
    assert "bad.yaml:4:" in err


def test_serve_dev_starts_the_service_and_the_printed_request_answers(tmp_path):
    """README's `tierpolicy serve --dev` on embedded defaults prints a token, and evaluate answers it."""
    import socket  # noqa: PLC0415  only this test needs it
    import time  # noqa: PLC0415  as above
    import urllib.request  # noqa: PLC0415  as above

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'tp.db'}"}
    for name in ("REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY"):
        env.pop(name, None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603  this interpreter, fixed arguments
            [sys.executable, "-m", "tierpolicy.cli", "serve", "--dev", "--policies", str(ROOT / "policies")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        body = (ROOT / "examples" / "eval-request.json").read_bytes()
        deadline = time.monotonic() + 30
        while True:
            printed = re.search(r"Bearer ([\w.-]+)'", log.read_text())
            try:
                if printed is None:
                    raise ConnectionRefusedError  # not started yet
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/marketplace/seller/policy/evaluate",
                    data=body,
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {printed[1]}"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  as above
                    answer = json.loads(response.read())
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.2)
        assert len(answer["data"]["results"]) == 7
        assert answer["meta"]["policy_version"] == answer["data"]["policy_version"]
        assert f"http://127.0.0.1:{port}/docs" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_dev_refuses_addresses_other_than_loopback(monkeypatch, capsys, tmp_path):
    """--dev mints tokens for anyone who can reach it, so it will not bind a public interface."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tp.db'}")
    code, _, err = run(monkeypatch, capsys, "serve", "--dev", "--host", "0.0.0.0")  # noqa: S104  the refused case
    assert (code, "loopback" in err) == (2, True)
    code, _, err = run(monkeypatch, capsys, "serve", "--dev", "--host", "example.com")
    assert (code, "loopback" in err) == (2, True)


def test_serve_serves_the_stores_active_version_even_without_a_policy_directory(tmp_path, caplog):
    """A replica serves the database's active version at startup; POLICY_DIR is only the first-run default."""
    from tierpolicy.adapters.sqlalchemy import Database  # noqa: PLC0415  only this test
    from tierpolicy.service import Settings, create_app  # noqa: PLC0415  as above

    files = {p.name: p.read_text() for p in (ROOT / "policies").glob("*.yaml")}
    files["errors.yaml"] = files["errors.yaml"].replace("Not found", "Nothing here", 1)
    url = f"sqlite:///{tmp_path / 'tp.db'}"
    served = tierpolicy.load_files(files, root="t")
    with Database.from_url(url) as database:
        database.migrate()
        database.add_policy_version(version=served.version, digest=served.digest, files=files, author="test")
        database.activate_policy_version(served.version)
    refused: list[Path] = []

    def no_directory(path: Path) -> tierpolicy.Engine:
        refused.append(path)
        raise AssertionError(path)

    settings = Settings(
        database_url=url,
        policy_dir=tmp_path / "nowhere",
        jwt_secret="a-development-secret-of-32-bytes-or-more",  # noqa: S106  a test-only key
    )
    app = create_app(settings, load_policies=no_directory)
    assert app.state.holder.engine.version == served.version
    assert refused == []
    (tmp_path / "edited").mkdir()
    with caplog.at_level(logging.WARNING, logger="tierpolicy.service"):
        create_app(
            settings.model_copy(update={"policy_dir": tmp_path / "edited"}), load_policies=no_directory
        )
    assert f"serving the store's active policy version {served.version}" in caplog.text


def test_token_mints_what_the_service_accepts_and_refuses_bad_roles(monkeypatch, capsys):
    """`tierpolicy token` prints a token for JWT_SECRET; a bad role or no secret is a usage error."""
    from tierpolicy.service import Authenticator, Settings  # noqa: PLC0415  only this test

    monkeypatch.setenv("JWT_SECRET", "a-development-secret-of-32-bytes-or-more")
    code, out, _ = run(monkeypatch, capsys, "token", "--role", "admin", "--subject", "ana")
    assert code == 0
    principal = Authenticator.from_settings(Settings()).decode(out.strip())
    assert (principal.role, principal.subject) == ("admin", "ana")
    code, _, err = run(monkeypatch, capsys, "token", "--role", "root", "--subject", "ana")
    assert code == 2
    assert "role" in err
    monkeypatch.delenv("JWT_SECRET")
    code, _, err = run(monkeypatch, capsys, "token", "--role", "admin", "--subject", "ana")
    assert (code, "JWT_SECRET" in err) == (2, True)


def test_token_options_for_the_seller_claim_are_named_as_options(monkeypatch, capsys):
    """A seller token without --seller-id, or --seller-id on another role, is a usage error naming the option."""
    monkeypatch.setenv("JWT_SECRET", "a-development-secret-of-32-bytes-or-more")
    code, _, err = run(monkeypatch, capsys, "token", "--role", "seller", "--subject", "ana")
    assert code == 2
    assert "a seller token needs --seller-id" in err
    code, _, err = run(
        monkeypatch, capsys, "token", "--role", "admin", "--subject", "ana", "--seller-id", "s-1"
    )
    assert code == 2
    assert "--seller-id is for seller tokens only, not admin tokens" in err
    code, out, _ = run(
        monkeypatch, capsys, "token", "--role", "seller", "--subject", "ana", "--seller-id", "s-1"
    )
    assert (code, out.count(".")) == (0, 2)


def test_db_upgrade_migrates_the_database_url(monkeypatch, capsys, tmp_path):
    """`tierpolicy db upgrade` brings DATABASE_URL to the latest revision and says which."""
    from tierpolicy.adapters.sqlalchemy import head  # noqa: PLC0415  only this test

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'up.db'}")
    code, out, _ = run(monkeypatch, capsys, "db", "upgrade")
    assert code == 0
    assert head() in out
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _, err = run(monkeypatch, capsys, "db", "upgrade")
    assert code == 1
    assert "Traceback" not in err
