"""The ``tierpolicy`` command line.

Exit codes follow the contract in README.md: 0 success (warnings allowed), 1 the
policy set or the input is invalid, 2 usage errors (unknown options, missing files).
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

try:
    import typer
    from rich.console import Console
    from rich.markup import escape
except ImportError:  # pragma: no cover - exercised only without the extra installed
    _CLI_EXTRA = False
else:
    _CLI_EXTRA = True

from . import __name__ as _package
from ._authoring_cli import DiffFormat, ErrorsFormat, FailOn
from .authoring._reports import TestFormat, check_suites, parse_threshold, render, report_json, schema_of
from .authoring._reports import render_text as render_tests
from .authoring._reports import run_directory as run_suites
from .authoring._suites import SUITE_KIND
from .engine._engine import Engine
from .engine._evaluation import dumps, evaluate
from .engine._exceptions import InvalidRequestError, TierpolicyError
from .engine._kinds import SPEC_MODELS
from .engine._loader import check as check_policies
from .engine._schema import set_schema

if TYPE_CHECKING:
    from .engine._diagnostics import Diagnostic
    from .service import Settings

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
MAX_INPUT_BYTES = 8 * 1_048_576


class OutputFormat(StrEnum):
    """Output formats of ``tierpolicy check``."""

    text = "text"
    json = "json"
    sarif = "sarif"


def _count(n: int, noun: str) -> str:
    """``1 error``, ``2 errors``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _app() -> typer.Typer:
    app = typer.Typer(
        name="tierpolicy",
        help="Check, evaluate and explain tierpolicy policy sets.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, soft_wrap=True, highlight=False)

    fail = _fail

    def load_engine(policies: Path) -> Engine:
        result = check_policies(policies)
        if result.policy_set is None:
            for diagnostic in result.diagnostics:
                err.print(escape(diagnostic.format()))
            fail(f"the policy set {policies} did not load ({_count(len(result.errors), 'error')})")
        return Engine(result.policy_set)

    def read_request(source: str) -> object:
        name = "<stdin>" if source == "-" else source
        try:
            data = (
                sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if source == "-" else _read_limited(Path(source))
            )
        except OSError as exc:
            fail(f"{name}: cannot read: {exc.strerror}", EXIT_USAGE)
        if len(data) > MAX_INPUT_BYTES:
            fail(f"{name}: the request is larger than {MAX_INPUT_BYTES:,} bytes")
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            fail(f"{name}: the request is not UTF-8 (byte {exc.start})")
        except json.JSONDecodeError as exc:
            fail(f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
        except RecursionError:
            fail(f"{name}: the JSON request is nested too deeply")

    @app.command()
    def check(
        directory: Annotated[Path, typer.Argument(help="The policy directory (or one policy file).")],
        output: Annotated[
            OutputFormat, typer.Option("--format", help="text, json or sarif (SARIF 2.1.0).")
        ] = OutputFormat.text,
        no_tests: Annotated[  # noqa: FBT002  typer reads options from parameters with defaults
            bool, typer.Option("--no-tests", help="Do not run the test suites in DIR/tests.")
        ] = False,
    ) -> None:
        """Validate a policy set and run its test suites: exit 0 if valid and passing, 1 if not."""
        if not directory.exists():
            fail(f"{directory}: no such file or directory", EXIT_USAGE)
        result = check_policies(directory)
        suites = None if no_tests else check_suites(directory, result)
        errors = len(result.errors)
        warnings = sum(d.severity == "warning" for d in result.diagnostics)
        infos = len(result.diagnostics) - errors - warnings
        if output is OutputFormat.sarif:
            from .authoring._sarif import to_sarif  # noqa: PLC0415  only for this format

            sys.stdout.write(json.dumps(to_sarif(result.diagnostics), indent=2) + "\n")
        elif output is OutputFormat.json:
            out.print_json(
                json.dumps(
                    {
                        "valid": result.ok,
                        "version": result.policy_set.version if result.policy_set else None,
                        "errors": errors,
                        "warnings": warnings,
                        "infos": infos,
                        "diagnostics": [d.to_json() for d in result.diagnostics],
                        **({"tests": report_json(suites)} if suites is not None else {}),
                    }
                )
            )
        else:
            for diagnostic in result.diagnostics:
                out.print(_styled(diagnostic))
            summary = f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
            if infos:
                summary += f", {infos} info{'s' * (infos != 1)}"
            if result.policy_set is not None:
                out.print(
                    f"[green]ok[/]: {escape(str(directory))} is valid ({summary}; version {result.policy_set.version})"
                )
            else:
                out.print(f"[red]invalid[/]: {escape(str(directory))} ({summary})")
            if suites is not None:
                out.print(escape(render_tests(suites, verbose=False)), end="")
        raise typer.Exit(EXIT_OK if result.ok and (suites is None or suites.passed) else EXIT_INVALID)

    @app.command("test")
    def test_(
        directory: Annotated[Path, typer.Argument(help="The policy directory; suites are in DIR/tests.")],
        output: Annotated[
            TestFormat, typer.Option("--format", help="text, json or junit.")
        ] = TestFormat.text,
        pattern: Annotated[
            str | None,
            typer.Option("--filter", help="Run only suites or tests whose name matches this glob."),
        ] = None,
        coverage: Annotated[  # noqa: FBT002  typer reads options from parameters with defaults
            bool, typer.Option("--coverage", help="Report which rules no test exercised.")
        ] = False,
        threshold: Annotated[
            str | None, typer.Option("--threshold", help="Fail when rule coverage is below this percentage.")
        ] = None,
    ) -> None:
        """Run the YAML test suites of a policy set: exit 0 if all pass, 1 if not (see docs/testing.md)."""
        if not directory.is_dir():
            fail(f"{directory}: no such directory", EXIT_USAGE)
        try:
            minimum = None if threshold is None else parse_threshold(threshold)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
        report = run_suites(directory, pattern=pattern, threshold=minimum)
        sys.stdout.write(render(report, output, coverage=coverage))
        raise typer.Exit(EXIT_OK if report.passed else EXIT_INVALID)

    @app.command("eval")
    def eval_(
        policies: Annotated[Path, typer.Option("--policies", "-p", help="The policy directory.")],
        input_: Annotated[str, typer.Option("--input", "-i", help="The JSON request file, or - for stdin.")],
    ) -> None:
        """Answer a JSON evaluation request (see docs/evaluation.md) with JSON decisions."""
        if not policies.exists():
            fail(f"{policies}: no such file or directory", EXIT_USAGE)
        _require_input(input_)
        engine = load_engine(policies)
        payload = read_request(input_)
        try:
            answer = evaluate(engine, payload)
        except InvalidRequestError as exc:
            fail(f"{'<stdin>' if input_ == '-' else input_}: invalid request: {exc}")
        sys.stdout.write(dumps(answer) + "\n")

    @app.command()
    def explain(
        policies: Annotated[Path, typer.Option("--policies", "-p", help="The policy directory.")],
        input_: Annotated[str, typer.Option("--input", "-i", help="The JSON request file, or - for stdin.")],
        query: Annotated[
            str, typer.Option("--query", "-q", help="Which query to explain: its 0-based index or its id.")
        ] = "0",
    ) -> None:
        """Show, for a human, how one query of a request was decided, step by step."""
        if not policies.exists():
            fail(f"{policies}: no such file or directory", EXIT_USAGE)
        _require_input(input_)
        engine = load_engine(policies)
        payload = read_request(input_)
        if not isinstance(payload, dict) or not isinstance(payload.get("queries"), list):
            fail("invalid request: it needs a 'queries' list")
        queries = payload["queries"]
        ids = [q.get("id") if isinstance(q, dict) else None for q in queries]
        if query in [str(i) for i in ids if i is not None]:
            index = [str(i) for i in ids].index(query)
        elif query.isdigit() and int(query) < len(queries):
            index = int(query)
        else:
            fail(
                f"the request has {len(queries)} queries; --query {query} is neither an index nor an id of one",
                EXIT_USAGE,
            )
        try:
            answer = evaluate(engine, {**payload, "queries": [queries[index]], "trace": True})
        except InvalidRequestError as exc:
            fail(f"invalid request: {exc}")
        _explain(out, answer["results"][0], index)  # type: ignore[index]

    @app.command()
    def schema(
        kind: Annotated[
            str | None, typer.Argument(help="A document kind; all kinds in one schema if omitted.")
        ] = None,
        output: Annotated[
            Path | None,
            typer.Option(
                "--output",
                "-o",
                help="Write one file per kind into this directory (and policy.schema.json for all of them).",
            ),
        ] = None,
    ) -> None:
        """Print the JSON Schema of policy documents (for editor autocompletion)."""
        if kind is not None:
            # Kinds are written capitalised in documents; accept any case on the command line.
            kinds = sorted([*SPEC_MODELS, SUITE_KIND])
            kind = {name.lower(): name for name in kinds}.get(kind.lower(), kind)
            if kind not in kinds:
                fail(f"unknown kind {kind!r}; kinds: {', '.join(kinds)}", EXIT_USAGE)
        if output is not None:
            if output.exists() and not output.is_dir():
                fail(f"{output}: exists and is not a directory", EXIT_USAGE)
            try:
                output.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                fail(f"{output}: cannot create the directory: {exc.strerror}", EXIT_USAGE)
            for name in [kind] if kind else sorted([*SPEC_MODELS, SUITE_KIND]):
                (output / f"{name.lower()}.schema.json").write_text(
                    json.dumps(schema_of(name), indent=2) + "\n"
                )
            if kind is None:  # the schema of any document, beside those of each kind
                (output / "policy.schema.json").write_text(json.dumps(set_schema(), indent=2) + "\n")
            return
        sys.stdout.write(json.dumps(schema_of(kind), indent=2) + "\n")

    @app.command()
    def serve(
        policies: Annotated[
            Path | None,
            typer.Option("--policies", "-p", help="The policy directory (default: POLICY_DIR or policies/)."),
        ] = None,
        host: Annotated[
            str | None, typer.Option(help="Interface to bind (default: HOST or 127.0.0.1).")
        ] = None,
        port: Annotated[int | None, typer.Option(help="Port to listen on (default: PORT or 8000).")] = None,
        dev: Annotated[  # noqa: FBT002  typer reads options from parameters with defaults
            bool,
            typer.Option(
                "--dev",
                help=(
                    "Try it out: without JWT_SECRET or JWT_PUBLIC_KEY, sign tokens with a secret made "
                    "for this run, and print tokens and a curl command. Loopback addresses only."
                ),
            ),
        ] = False,
    ) -> None:
        """Run the seller service; settings come from the environment (see docs/service.md)."""
        try:
            import uvicorn  # noqa: PLC0415  the service extra is optional
            from pydantic import ValidationError  # noqa: PLC0415  as above

            from .service import AuthSetupError, Settings, create_app  # noqa: PLC0415  as above
        except ImportError:
            fail("the service needs its extra: pip install 'tierpolicy[service]'", EXIT_USAGE)
        overrides: dict[str, object] = {
            key: value
            for key, value in (("policy_dir", policies), ("host", host), ("port", port))
            if value is not None
        }
        try:
            settings = Settings(**overrides)  # type: ignore[arg-type]  # validated by pydantic
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            fail(f"invalid settings: {problems}", EXIT_USAGE)

        if dev:
            settings = development(settings)

        def directory(policy_dir: Path) -> Engine:
            # Only when the store has no active version: a replica serves the store's.
            if not policy_dir.exists():
                fail(f"{policy_dir}: no such policy directory (set POLICY_DIR or --policies)", EXIT_USAGE)
            return load_engine(policy_dir)  # a broken set is reported as `check` does

        try:
            application = create_app(settings, load_policies=directory)
        except AuthSetupError as exc:  # a JWT key the service refuses is a bad setting
            fail(f"invalid settings: {exc}", EXIT_USAGE)
        except TierpolicyError as exc:
            fail(str(exc))
        if dev:
            introduce(settings)
        uvicorn.run(application, host=settings.host, port=settings.port, log_level=settings.log_level)

    def development(settings: Settings) -> Settings:
        """``settings`` for ``serve --dev``: loopback only, with a secret of this run's own if none is set."""
        import ipaddress  # noqa: PLC0415  only --dev needs them
        import secrets  # noqa: PLC0415  as above

        from pydantic import SecretStr  # noqa: PLC0415  the service extra is optional

        try:
            loopback = settings.host == "localhost" or ipaddress.ip_address(settings.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            fail(
                f"--dev serves loopback addresses only, not {settings.host!r} (set HOST or --host)",
                EXIT_USAGE,
            )
        if settings.jwt_secret is not None or settings.jwt_public_key is not None:
            return settings
        return settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(32))})

    def introduce(settings: Settings) -> None:
        """Print tokens for this run and a request to try (``serve --dev``)."""
        from .service import mint_token  # noqa: PLC0415  the service extra is optional

        if settings.jwt_secret is None:  # a public key only verifies: nothing to sign with here
            return
        service, admin = (
            mint_token(settings, role=role, subject=f"dev-{role}", ttl=8 * 3600)
            for role in ("service", "admin")
        )
        base = f"http://{settings.host}:{settings.port}"
        sys.stdout.write(
            "Development mode: tokens for this run (valid 8 hours)\n"
            f"  service: {service}\n"
            f"  admin:   {admin}\n"
            "Try, from another terminal in this directory:\n"
            f"  curl -s -X POST {base}/api/marketplace/seller/policy/evaluate \\\n"
            f"    -H 'Authorization: Bearer {service}' \\\n"
            "    -H 'Content-Type: application/json' --data @examples/eval-request.json\n"
            f"API browser: {base}/docs\n"
        )
        sys.stdout.flush()

    @app.command()
    def token(
        role: Annotated[str, typer.Option(help="seller, admin or service.")],
        subject: Annotated[str, typer.Option(help="The token's subject (sub): who acts.")],
        seller_id: Annotated[
            str | None, typer.Option("--seller-id", help="The seller of a seller token.")
        ] = None,
        ttl: Annotated[float, typer.Option(help="Seconds until it expires.")] = 3600,
        private_key: Annotated[
            Path | None, typer.Option("--private-key", help="An RSA private key (PEM) to sign RS256 with.")
        ] = None,
    ) -> None:
        """Mint a bearer token for the service (JWT_SECRET from the environment, or --private-key)."""
        try:
            from pydantic import ValidationError  # noqa: PLC0415  the service extra is optional

            from .service import AuthSetupError, Settings, mint_token  # noqa: PLC0415  as above
        except ImportError:
            fail("minting tokens needs the service extra: pip install 'tierpolicy[service]'", EXIT_USAGE)
        try:
            settings = Settings()
        except ValidationError as exc:
            fail(f"invalid settings: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", EXIT_USAGE)
        key = None
        if private_key is not None:
            try:
                key = private_key.read_bytes()
            except OSError as exc:
                fail(f"{private_key}: cannot read: {exc.strerror}", EXIT_USAGE)
        # The token's claims, said in the options' words (mint_token speaks of claims).
        if role == "seller" and not seller_id:
            fail("a seller token needs --seller-id: the seller it acts for", EXIT_USAGE)
        if role != "seller" and seller_id is not None:
            fail(f"--seller-id is for seller tokens only, not {role} tokens", EXIT_USAGE)
        try:
            minted = mint_token(
                None if key is not None and settings.jwt_secret is None else settings,
                role=role,
                subject=subject,
                seller_id=seller_id,
                ttl=ttl,
                private_key=key,
            )
        except (AuthSetupError, ValueError) as exc:
            fail(str(exc), EXIT_USAGE)
        sys.stdout.write(minted + "\n")

    db = typer.Typer(help="Manage the service's database (DATABASE_URL).", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def db_upgrade(
        revision: Annotated[str, typer.Argument(help="The revision to reach.")] = "head",
    ) -> None:
        """Apply the store's migrations to DATABASE_URL."""
        try:
            from .adapters.sqlalchemy import current, upgrade  # noqa: PLC0415  the sql extra is optional
            from .service import Settings  # noqa: PLC0415  as above
        except ImportError:
            fail("the database needs the service extra: pip install 'tierpolicy[service]'", EXIT_USAGE)
        url = Settings().database_url
        try:
            upgrade(url, revision)
            out.print(f"database at revision {current(url)}")
        except TierpolicyError as exc:
            fail(str(exc))

    @app.command()
    def fmt(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(help="Policy files or directories (default: policies/).", show_default=False),
        ] = None,
        check_only: Annotated[  # noqa: FBT002  typer reads options from parameters with defaults
            bool, typer.Option("--check", help="List the files that would change; write nothing.")
        ] = False,
        diff: Annotated[  # noqa: FBT002  as above
            bool, typer.Option("--diff", help="Print a unified diff of each change; write nothing.")
        ] = False,
    ) -> None:
        """Format policy files canonically, keeping comments (see docs/formatting.md)."""
        from .authoring._fmt import run_fmt  # noqa: PLC0415  ruamel.yaml is imported only here

        code = run_fmt(
            paths or [Path("policies")], check=check_only, diff=diff, out=sys.stdout, err=sys.stderr
        )
        raise typer.Exit(code)

    @app.command()
    def diff(
        old: Annotated[str, typer.Argument(help="The set before: a directory, or git:REV.")],
        new: Annotated[str, typer.Argument(help="The set after: a directory, or git:REV.")],
        path: Annotated[
            str, typer.Option("--path", help="For git:REV, the policy directory in the revision.")
        ] = "policies",
        output: Annotated[
            DiffFormat, typer.Option("--format", help="text, json or markdown.")
        ] = DiffFormat.text,
        fail_on: Annotated[
            FailOn | None,
            typer.Option("--fail-on", help="Exit 1 if there are tighten, loosen or any changes."),
        ] = None,
    ) -> None:
        """Show what a policy change does, per tier, code, operation and limit (see docs/diff.md)."""
        from ._authoring_cli import SourceError, read_set  # noqa: PLC0415  only this command needs them
        from .authoring._diff import diff_sets, render_markdown, render_text  # noqa: PLC0415  as above

        sets = []
        for source in (old, new):
            try:
                label, result = read_set(source, path)
            except SourceError as exc:
                fail(str(exc), EXIT_USAGE)
            if result.policy_set is None:
                for diagnostic in result.diagnostics:
                    err.print(escape(diagnostic.format()))
                fail(f"the policy set {label} did not load ({_count(len(result.errors), 'error')})")
            sets.append((label, result.policy_set))
        (old_label, old_set), (new_label, new_set) = sets
        changes = diff_sets(old_set, new_set, old_label=old_label, new_label=new_label)
        if output is DiffFormat.json:
            sys.stdout.write(json.dumps(changes.to_json(), indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write((render_markdown if output is DiffFormat.markdown else render_text)(changes))
        failing = fail_on is not None and (
            bool(changes.changes)
            if fail_on is FailOn.any
            else changes.count("tighten" if fail_on is FailOn.tighten else "loosen") > 0
        )
        raise typer.Exit(EXIT_INVALID if failing else EXIT_OK)

    @app.command()
    def errors(
        directory: Annotated[Path, typer.Argument(help="The policy directory.")] = Path("policies"),
        output: Annotated[
            ErrorsFormat, typer.Option("--format", help="markdown or json.")
        ] = ErrorsFormat.markdown,
    ) -> None:
        """Print the error-code registry for support teams (see docs/errors.md)."""
        from .authoring._errors import error_registry, registry_json, registry_markdown  # noqa: PLC0415  only here

        if not directory.exists():
            fail(f"{directory}: no such file or directory", EXIT_USAGE)
        policy_set = load_engine(directory).policy_set
        entries = error_registry(policy_set)
        if entries is None:
            fail(f"the policy set {directory} has no Errors document, so no error codes")
        if output is ErrorsFormat.json:
            sys.stdout.write(json.dumps(registry_json(entries, version=policy_set.version), indent=2) + "\n")
        else:
            sys.stdout.write(registry_markdown(entries, version=policy_set.version))

    @app.command()
    def version() -> None:
        """Print the tierpolicy version."""
        from importlib.metadata import version as dist_version  # noqa: PLC0415  only here

        out.print(f"{_package} {dist_version(_package)}")

    return app


def _require_input(source: str) -> None:
    if source == "-":
        return
    path = Path(source)
    if path.is_dir():
        _fail(f"{source}: is a directory; --input takes a JSON request file (or - for stdin)", EXIT_USAGE)
    if not path.is_file():
        _fail(f"{source}: no such file", EXIT_USAGE)


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_INPUT_BYTES + 1)


def _styled(diagnostic: Diagnostic) -> str:
    colour = {"error": "red", "warning": "yellow"}.get(diagnostic.severity, "blue")
    return escape(diagnostic.format()).replace(
        f"{diagnostic.severity}[", f"[{colour}]{diagnostic.severity}[/{colour}][", 1
    )


def _headline(item: dict[str, Any]) -> tuple[str, str, str]:
    """Name, outcome and reason of any decision kind, for explain's first line."""
    if "code" in item:  # a classification
        retry = "retryable" if item.get("retryable") else "not retryable"
        return (
            item["code"],
            f"{item.get('category')}, {retry}, HTTP {item.get('status')}",
            str(item.get("rule")),
        )
    if "retry" in item and "operation" in item:  # a retry plan
        outcome = f"retry after {item.get('delay')}s" if item["retry"] else "do not retry"
        return f"{item['operation']} attempt {item.get('attempt')}", outcome, str(item.get("reason"))
    result = item.get("outcome") or item.get("action") or item.get("value")
    label = item.get("feature") or item.get("limit") or item.get("seller_id")
    return str(label), str(result), str(item.get("reason"))


def _explain(out: Console, result: dict[str, Any], index: int) -> None:
    out.print(
        f"[bold]query {index}[/]: {escape(json.dumps({k: result[k] for k in ('kind', 'name') if k in result}))}"
    )
    if result["status"] != "ok":
        error = result["error"]
        out.print(f"  [red]error[/] {error['type']}: {escape(error['message'])}")
        return
    decision = result["decision"]
    if "features" in decision:  # entitlements: every feature, then every limit
        items = [*decision["features"].values(), *decision["limits"].values()]
    else:
        items = [decision]
    for item in items:
        label, outcome, why = _headline(item)
        out.print(
            f"  [bold]{escape(label)}[/]: {escape(outcome)} ({escape(why)}) — {escape(str(item.get('message', '')))}"
        )
        for step in item.get("trace", []):
            mark = {
                "pass": "[green]✓[/]",
                "fail": "[red]✗[/]",
                "error": "[red]![/]",
                "skip": "-",
                "decide": "→",
            }[step["outcome"]]
            rule = f" [dim]({escape(step['rule'])})[/]" if step.get("rule") else ""
            out.print(f"    {mark} {step['step']}: {escape(step['detail'])}{rule}")
        for key, label in (
            ("missing", f"missing for {decision.get('next_tier')}"),
            ("keep_missing", "to keep"),
        ):
            for missing in item.get(key, []):
                # JSON spelling (null, true, "FR"), as in the eval answer, not Python's.
                actual = json.dumps(missing["actual"], ensure_ascii=False)
                out.print(f"    {label}: {escape(missing['clause'])} (actual: {escape(actual)})")
        out.print(
            f"    [dim]rule {escape(item['rule'])} at {escape(item['source'])}; policy version {item['policy_version']}[/]"
        )


def main() -> None:
    """Run the command line; never shows a traceback for bad input."""
    if not _CLI_EXTRA:  # pragma: no cover - exercised only without the extra installed
        sys.stderr.write("the tierpolicy command needs the 'cli' extra: pip install 'tierpolicy[cli]'\n")
        raise SystemExit(EXIT_USAGE)
    try:
        _app()(prog_name="tierpolicy")
    except TierpolicyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(EXIT_INVALID) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("TIERPOLICY_DEBUG"):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in tierpolicy; rerun with TIERPOLICY_DEBUG=1 for details and report it\n"
        )
        raise SystemExit(EXIT_INVALID) from None


if __name__ == "__main__":  # pragma: no cover
    main()
