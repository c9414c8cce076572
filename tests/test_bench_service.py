"""The pure parts of benchmarks/bench_service.py: statistics, requests, the response parser, arguments.

No server is started here: the benchmark itself is run by hand (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import cProfile
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_service.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_service", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules["bench_service"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _result(server, mode, latencies_ms, *, statuses=None, unsent=0, window_s=10.0, rate=1_000.0):
    latency = [round(ms * 1_000_000) for ms in latencies_ms]
    return bench.LoadResult(
        server=server,
        mode=mode,
        connections=8,
        target_rate=rate if mode == "open" else None,
        window_s=window_s,
        latency_ns=latency,
        service_ns=latency,
        lag_ns=[0] * len(latency),
        statuses=collections.Counter(statuses or {200: len(latency)}),
        unsent=unsent,
        cpu={"server": window_s * 0.5, "redis": None, "client": window_s * 0.1, "machine_busy_cpus": 1.0},
    )


# --------------------------------------------------------------------------- percentiles


def test_percentile_is_nearest_rank():
    """The q-th percentile is the smallest value with at least q % of the values at or below it."""
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 90) == 90
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 99.9) == 100
    assert bench.percentile(values, 100) == 100
    assert bench.percentile(values, 0) == 1


def test_percentile_of_a_small_sample_rounds_up():
    """With fewer values than the percentile needs, the rank rounds up (no interpolation)."""
    assert bench.percentile([10, 20, 30], 50) == 20
    assert bench.percentile([10, 20, 30], 34) == 20
    assert bench.percentile([10, 20, 30], 33) == 10
    assert bench.percentile([7], 99.9) == 7


@pytest.mark.parametrize(("values", "q", "message"), [([], 50, "no values"), ([1], 101, "within 0 and 100")])
def test_percentile_refuses_what_has_no_answer(values, q, message):
    """An empty sample or a percentile outside 0 to 100 is an error, not a made-up number."""
    with pytest.raises(ValueError, match=message):
        bench.percentile(values, q)


def test_distribution_sorts_and_reports_the_tail():
    """distribution() sorts its input and gives p50, p90, p99, p99.9 and max."""
    values = list(range(1000, 0, -1))
    d = bench.distribution(values)
    assert d == {"p50": 500, "p90": 900, "p99": 990, "p99.9": 999, "max": 1000}
    assert bench.distribution([]) == {}


# --------------------------------------------------------------------------- requests


def test_eval_body_has_five_queries_of_the_example_without_trace():
    """The request body keeps the example's time and context and the five chosen queries, untraced."""
    body = json.loads(bench.eval_body())
    example = json.loads(bench.EXAMPLE.read_text(encoding="utf-8"))
    assert [q["id"] for q in body["queries"]] == list(bench.QUERY_IDS)
    assert {q["kind"] for q in body["queries"]} == {"feature", "limit", "tier"}
    assert all("trace" not in q for q in body["queries"])
    assert body["now"] == example["now"]
    assert body["context"] == example["context"]


def test_eval_body_names_a_missing_query(tmp_path):
    """Asking for a query id the example lacks fails with that id in the message."""
    example = tmp_path / "request.json"
    example.write_text(json.dumps({"now": "x", "context": {}, "queries": [{"id": "a", "kind": "tier"}]}))
    with pytest.raises(ValueError, match="no query with id b"):
        bench.eval_body(example, ("a", "b"))


def test_build_request_is_a_well_formed_keep_alive_post():
    """The request is one HTTP/1.1 POST with a matching Content-Length and the bearer token."""
    body = b'{"queries":[]}'
    raw = bench.build_request("127.0.0.1", 8123, "/api/x", body, "abc.def-ghi_jkl")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("ascii").split("\r\n")
    assert lines[0] == "POST /api/x HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == "127.0.0.1:8123"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Authorization"] == "Bearer abc.def-ghi_jkl"
    assert "Connection" not in headers  # HTTP/1.1 keeps the connection open by default
    assert rest == body
    assert b"Authorization" not in bench.build_request("h", 1, "/p", body)


@pytest.mark.parametrize(
    ("path", "token"), [("/ok", "a\r\nX-Evil: 1"), ("/ok", "a b"), ("no-slash", None), ("/a b", None)]
)
def test_build_request_refuses_what_would_break_the_request(path, token):
    """A token or path that would inject a header or break the request line is refused."""
    with pytest.raises(ValueError, match=r"token|path"):
        bench.build_request("h", 1, path, b"{}", token)


# --------------------------------------------------------------------------- responses


def _answer(status, body, extra=""):
    return (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_response_parser_splits_a_stream_fed_byte_by_byte():
    """Two answers fed one byte at a time come out once each, in order, with their bodies."""
    stream = _answer(200, b'{"a":1}') + _answer(429, b'{"title":"Too many"}')
    parser = bench.ResponseParser(keep_bodies=True)
    answers = []
    for i in range(len(stream)):
        answers += parser.feed(stream[i : i + 1])
    assert answers == [(200, b'{"a":1}'), (429, b'{"title":"Too many"}')]


def test_response_parser_reads_several_answers_in_one_chunk():
    """Answers arriving together are all returned; bodies are dropped unless asked for."""
    parser = bench.ResponseParser()
    assert parser.feed(_answer(200, b"x" * 10) + _answer(503, b"") + _answer(200, b"y")[:5]) == [
        (200, b""),
        (503, b""),
    ]
    assert parser.feed(_answer(200, b"y")[5:]) == [(200, b"")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", "chunked"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", "without Content-Length"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "bad Content-Length"),
    ],
)
def test_response_parser_refuses_what_it_cannot_frame(raw, message):
    """Answers the client cannot frame raise ProtocolError rather than being miscounted."""
    with pytest.raises(bench.ProtocolError, match=message):
        bench.ResponseParser().feed(raw)


def test_response_parser_bounds_the_head():
    """A head that never ends is refused once it passes 64 KiB."""
    parser = bench.ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n") == []
    with pytest.raises(bench.ProtocolError, match="64 KiB"):
        parser.feed(b"x-filler: " + b"a" * bench.MAX_HEAD)


# --------------------------------------------------------------------------- arguments


def test_parse_args_defaults_are_the_issue_target():
    """Without flags: 1,000 requests/s for 10 s after 2 s, 8 connections, every configuration."""
    options = bench.parse_args([])
    assert (options.rate, options.duration, options.warmup) == (1_000.0, 10.0, 2.0)
    assert options.connections == 8
    assert options.configs == bench.CONFIGS
    assert options.database_url is None
    assert options.redis_url is None


def test_parse_args_quick_shortens_only_what_was_not_given():
    """--quick shortens the runs, but an explicit --duration still wins."""
    quick = bench.parse_args(["--quick"])
    assert (quick.duration, quick.warmup, quick.closed_duration) == (2.0, 0.5, 1.0)
    assert bench.parse_args(["--quick", "--duration", "7"]).duration == 7.0


def test_parse_args_reads_every_flag():
    """Every flag lands in its option, with configurations deduplicated in order."""
    options = bench.parse_args(
        [
            "--rate=1500",
            "--connections=16",
            "--closed-connections=4",
            "--configs=embedded,floor,embedded",
            "--database-url=postgresql+psycopg://u@h/db",
            "--redis-url=redis://127.0.0.1:7000/0",
        ]
    )
    assert options.rate == 1500.0
    assert (options.connections, options.closed_connections) == (16, 4)
    assert options.configs == ("embedded", "floor")
    assert options.database_url == "postgresql+psycopg://u@h/db"
    assert options.redis_url == "redis://127.0.0.1:7000/0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "0"], "--rate: must be more than 0"),
        (["--rate", "fast"], "--rate: not a number"),
        (["--rate", "nan"], "--rate: must be more than 0"),
        (["--connections", "0"], "--connections: must be more than 0"),
        (["--connections", "2.5"], "--connections: not a number"),
        (["--warmup", "-1"], "--warmup: must be 0 or more"),
        (["--configs", "floor,nginx"], "unknown configuration nginx"),
        (["--configs", ","], "unknown configuration (none)"),
        (["--database-url", "mysql://h/db"], "--database-url: not a PostgreSQL URL"),
        (["--redis-url", "http://h"], "--redis-url: not a Redis URL"),
        (["--json", "/nonexistent-dir/x.json"], "--json: no such directory"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_parse_args_refuses_bad_input_with_the_flag_named(argv, message, capsys):
    """A bad flag exits with status 2 and a one-line message naming it, no traceback."""
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- results and report


def test_load_result_counts_every_non_200_and_unsent_request():
    """Errors are the answers that are not 200 (by status) plus the requests never sent."""
    r = _result("embedded", "open", [1.0] * 10, statuses={200: 7, 429: 2, 0: 1}, unsent=3, window_s=2.0)
    assert r.completed == 10
    assert r.errors == 6
    assert r.rate == 5.0
    assert r.cpu_share("server") == 0.5
    assert r.cpu_share("redis") is None
    assert bench.fmt_statuses(r) == "**6** (0: 1, 429: 2, unsent: 3)"
    assert bench.fmt_statuses(_result("floor", "open", [1.0])) == "0"


def test_report_judges_the_target_on_p99_rate_and_errors():
    """The target is met only with p99 under 5 ms at (about) 1,000/s and no errors; ratios use the floor."""
    fast = [1.0] * 990 + [4.0] * 10
    slow = [1.0] * 980 + [6.0] * 20
    results = [
        _result("floor", "open", [0.5] * 1000),
        _result("embedded", "open", fast, window_s=1.0),
        _result("postgres+redis", "open", slow, window_s=1.0),
        _result("errors", "open", fast, statuses={200: 999, 429: 1}, window_s=1.0),
        _result("floor", "closed", [0.5] * 400, window_s=1.0),
        _result("embedded", "closed", [2.0] * 100, window_s=1.0),
    ]
    out = {
        "results": results,
        "request_bytes": 685,
        "floor_body_bytes": 2400,
        "answer_bytes": {"floor": 2400, "embedded": 2400},
        "server_logs": {"embedded": {"lines": 3, "problems": 1}},
    }
    info = bench.machine() | {"loadavg_end": None, "wall_seconds": 1.0}
    text = bench.report(out, bench.parse_args(["--quick"]), info)
    target = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| p99 < 5 ms")}
    assert target["embedded"].endswith("| met |")
    assert "**not met**" in target["postgres+redis"]
    assert "**not met**" in target["errors"]
    assert "floor" not in target
    assert "| embedded | 1,000 | 2.00 ms |" not in text  # open-loop p50 is 1 ms, not the closed loop's
    assert "| embedded | 1,000 | 1.00 ms |" in text
    assert "| embedded | 100 | x0.25 |" in text  # closed loop: 100/s against the floor's 400/s
    assert "Server logs with warnings or errors: embedded: 1 of 3 lines." in text


# --------------------------------------------------------------------------- measuring aids


def test_process_cpu_seconds_reads_this_process():
    """The CPU time read from /proc/<pid>/stat grows when this process works."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc on this system")
    before = bench.process_cpu_seconds(os.getpid())
    assert before is not None
    total = 0
    while bench.process_cpu_seconds(os.getpid()) == before:
        total += sum(range(10_000))
    assert bench.process_cpu_seconds(os.getpid()) > before
    assert bench.process_cpu_seconds(None) is None
    assert bench.process_cpu_seconds(2**22 + 12345) is None  # above pid_max: no such process


@pytest.mark.parametrize(
    ("filename", "function", "expected"),
    [
        ("~", "<method 'poll' of 'select.epoll' objects>", "waiting for I/O (epoll)"),
        ("~", "<method 'send' of '_socket.socket' objects>", "socket send/recv"),
        ("/x/site-packages/h11/_connection.py", "send", "uvicorn (HTTP parsing"),
        ("/x/site-packages/jwt/api_jws.py", "<genexpr>", "JWT"),
        ("/x/src/tierpolicy/engine/_evaluation.py", "evaluate", "tierpolicy engine"),
        ("/x/src/tierpolicy/service/_auth.py", "authenticate", "tierpolicy service"),
        ("/x/site-packages/fastapi/routing.py", "app", "fastapi"),
        ("/usr/lib/python3.11/asyncio/base_events.py", "_run_once", "asyncio"),
        ("/x/mystery.py", "f", "other"),
    ],
)
def test_category_sorts_profiled_functions_by_package(filename, function, expected):
    """Each profiled function is put in the package group a reader of the profile expects."""
    assert bench.category(filename, function).startswith(expected)


def test_profile_breakdown_totals_own_time_by_package(tmp_path):
    """A real cProfile file is summed by package; the groups add up to the profile's total."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(2_000):
        json.loads(json.dumps({"i": i, "s": "x" * 50}))
    profiler.disable()
    path = tmp_path / "p.prof"
    profiler.dump_stats(path)
    b = bench.profile_breakdown(path, top=3)
    groups = dict(b["categories"])
    assert groups["json (stdlib reader, orjson writer)"] > 0
    assert sum(groups.values()) == pytest.approx(b["total_s"])
    assert len(b["top"]) == 3
    assert b["top"][0][0] >= b["top"][1][0] >= b["top"][2][0]


def test_runs_summary_lists_each_run_with_its_machine_speed_and_verdict():
    """--repeat's table has a row per run and server: the yardstick, the open loop's p99 and verdict, the closed loop."""
    fast = [1.0] * 990 + [4.0] * 10
    slow = [1.0] * 980 + [6.0] * 20
    first = {
        "results": [
            _result("embedded", "open", fast, window_s=1.0),
            _result("embedded", "closed", [2.0] * 100, window_s=1.0),
        ]
    }
    second = {"results": [_result("embedded", "open", slow, window_s=1.0)]}
    text = bench.runs_summary(
        [
            (first, {"yardstick_start_ns": 34.4, "yardstick_end_ns": 35.6}),
            (second, {"yardstick_start_ns": 52.0, "yardstick_end_ns": 49.0}),
        ]
    )
    rows = [line for line in text.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert rows == [
        "| 1 | 34 / 36 ns | embedded | 1,000/s, 1.00 ms | met | 100/s | 5.00 ms |",
        "| 2 | 52 / 49 ns | embedded | 1,000/s, 6.00 ms | not met | - | - |",
    ]
    assert text.startswith("#### The 2 runs side by side")


def test_repeat_is_a_positive_count_and_the_yardstick_is_a_time():
    """--repeat defaults to 1 and refuses 0; the yardstick measures an empty call in nanoseconds."""
    assert bench.parse_args([]).repeat == 1
    assert bench.parse_args(["--repeat", "3"]).repeat == 3
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeat", "0"])
    assert 1 < bench.yardstick() < 10_000
