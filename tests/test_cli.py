"""The `analytics` command line end to end, in subprocesses: the six calls, `import` of
JSON Lines (bad lines, retries, stdin, dry run), `analytics collector`, and the demo."""

from __future__ import annotations

import json
import logging
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _collector_helpers import KEY, PY, ROOT, CollectorProcess, clean_env, get, run_cli

import analytics
from analytics import cli
from analytics.collector import Collector


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(db=str(tmp_path / "collector.db")).start()
    yield c
    c.stop()


def env_for(server_url: str, key: str = KEY) -> dict[str, str]:
    return clean_env(ANALYTICS_WRITE_KEY=key, ANALYTICS_HOST=server_url)


def line(i: int, **fields: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "type": "track",
        "messageId": f"import-{i}",
        "userId": f"user-{i % 37}",
        "event": "Order Completed",
        "properties": {"order": i, "revenue": i / 100},
        "timestamp": "2023-05-01T12:00:00+00:00",
    }
    m.update(fields)
    return {k: v for k, v in m.items() if v is not None}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


# -- one message --------------------------------------------------------------------------

CALLS = [
    (
        ["track", "--user-id", "u1", "--event", "Signed Up", "--properties", '{"plan":"pro"}'],
        {"type": "track", "userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
    ),
    (
        ["identify", "--anonymous-id", "a1", "--traits", '{"email":"a@example.com"}'],
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "a@example.com"}},
    ),
    (
        ["page", "--user-id", "u1", "--name", "Pricing", "--category", "Docs",
         "--properties", '{"path":"/pricing"}'],
        {"type": "page", "name": "Pricing", "category": "Docs", "properties": {"path": "/pricing"}},
    ),
    (
        ["screen", "--user-id", "u1", "--name", "Home"],
        {"type": "screen", "name": "Home", "properties": {}},
    ),
    (
        ["group", "--user-id", "u1", "--group-id", "acme", "--traits", '{"seats":5}'],
        {"type": "group", "groupId": "acme", "traits": {"seats": 5}},
    ),
    (
        ["alias", "--previous-id", "a1", "--user-id", "u1"],
        {"type": "alias", "previousId": "a1", "userId": "u1"},
    ),
]  # fmt: skip


@pytest.mark.parametrize("argv,expected", CALLS, ids=[c[0][0] for c in CALLS])
def test_each_call_is_delivered(
    server: Collector, argv: list[str], expected: dict[str, Any]
) -> None:
    done = run_cli(*argv, env=env_for(server.url), timeout=30)
    assert done.returncode == 0, done.stderr
    stored = server.events()
    assert len(stored) == 1
    assert {k: stored[0].get(k) for k in expected} == expected
    assert done.stdout.split() == ["delivered", expected["type"], stored[0]["messageId"]]


def test_options_reach_the_wire(server: Collector) -> None:
    done = run_cli(
        "track", "--write-key", KEY, "--host", server.url, "--user-id", "u1",
        "--anonymous-id", "a1", "--event", "E", "--context", '{"ip":"10.0.0.1"}',
        "--integrations", '{"All":false}', "--timestamp", "2024-01-02T03:04:05Z",
        "--message-id", "m-1", "--gzip", env=clean_env(), timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (m,) = server.events()
    assert m["messageId"] == "m-1" and m["anonymousId"] == "a1"
    assert m["context"]["ip"] == "10.0.0.1" and m["context"]["library"]["name"]
    assert m["integrations"] == {"All": False}
    assert m["timestamp"].startswith("2024-01-02T03:04:05")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["identify"], "needs a user_id or an anonymous_id"),
        (["group", "--user-id", "u1"], "group needs a group_id"),
        (["alias", "--user-id", "u1"], "alias needs both previous_id and user_id"),
        (["track", "--user-id", "u1", "--event", "E", "--properties", "[1]"],
         "--properties must be a JSON object"),
        (["identify", "--user-id", "u1", "--traits", "{"], "--traits is not valid JSON"),
        (["track", "--user-id", "u", "--event", "E", "--timestamp", "soon"], "ISO-8601"),
        (["track", "--user-id", "u", "--event", "E", "--wait", "0"], "--wait must be > 0"),
    ],
)  # fmt: skip
def test_a_validation_error_is_one_line_and_exit_2(
    server: Collector, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process, for speed; the same path as the subprocess test below."""
    code = cli.main([*argv, "--write-key", KEY, "--host", server.url])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("analytics: error:")
    assert server.stats()["events"] == 0


def test_a_validation_error_in_a_subprocess(server: Collector) -> None:
    done = run_cli("track", "--user-id", "u1", env=env_for(server.url), timeout=30)
    assert done.returncode == 2
    assert done.stderr == "analytics: error: track needs an event name (a non-empty str)\n"
    assert done.stdout == "" and server.stats()["events"] == 0


def test_no_write_key_is_exit_2(server: Collector) -> None:
    done = run_cli("track", "--host", server.url, "--user-id", "u", "--event", "E")
    assert done.returncode == 2 and "ANALYTICS_WRITE_KEY" in done.stderr


def test_not_delivered_is_exit_1_and_never_shows_the_key() -> None:
    with Collector(write_keys=["the-only-key"]) as c:
        done = run_cli("track", "--user-id", "u", "--event", "E", env=env_for(c.url), timeout=30)
    assert done.returncode == 1
    assert "not delivered" in done.stderr and "HTTP 401" in done.stderr
    assert KEY not in done.stdout + done.stderr


def test_unreachable_collector_gives_up_within_wait() -> None:
    with Collector() as c:
        url = c.url  # a port that was free a moment ago and is closed now
    done = run_cli(
        "track", "--user-id", "u", "--event", "E", "--wait", "1", env=env_for(url), timeout=30
    )
    assert done.returncode == 1 and "not delivered" in done.stderr


# -- import ---------------------------------------------------------------------------------

BAD_LINES = {
    17: "{this is not json",
    230: {"type": "track", "userId": "u"},
    4000: {"type": "group", "userId": "u"},
    7777: line(7777, timestamp="yesterday"),
    10000: {"type": "purchase", "userId": "u"},
}


def test_import_of_10000_lines_with_5_bad(server: Collector, tmp_path: Path) -> None:
    rows = [BAD_LINES.get(i, line(i)) for i in range(1, 10_001)]
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    done = run_cli(
        "import", str(path), "--batch-size", "250", "--rejects", str(rejects),
        env=env_for(server.url), timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    stats = server.stats()
    assert stats["events"] == 9_995 and stats["rejected"] == 0
    out = done.stdout
    assert re.search(r"sent\s+9,995", out) and re.search(r"delivered\s+9,995", out)
    assert re.search(r"rejected\s+5\b", out) and re.search(r"failed\s+0\b", out)
    named = [int(n) for n in re.findall(r"^\s+line (\d+):", out, re.M)]
    assert named == sorted(BAD_LINES)
    assert "line 4000: group needs groupId" in out
    assert [json.loads(r)["line"] for r in rejects.read_text().splitlines()] == sorted(BAD_LINES)
    # messageId and timestamp of each line are kept
    (m,) = server.events(message_id="import-5000")
    assert m["timestamp"].startswith("2023-05-01T12:00:00") and m["properties"]["order"] == 5000


def test_import_gets_through_a_failing_collector(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [line(i) for i in range(1, 301)])
    db = tmp_path / "collector.db"
    with CollectorProcess(db, "--quiet", "--fail-first", "2", "--fail-status", "503") as proc:
        # the library's first backoff waits (up to 1 s, then 2 s) are real here
        done = run_cli("import", str(path), "--gzip", env=env_for(proc.url), timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        stats = get(proc.url, "/v1/stats")
        assert stats["events"] == 300
        assert stats["requests"]["by_status"]["503"] == 2
        assert proc.stop() == 0
    assert re.search(r"delivered\s+300\b", done.stdout)


def test_import_honours_retry_after_from_the_collector(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [line(i) for i in range(1, 101)])
    args = ("--quiet", "--fail-first", "1", "--fail-status", "429", "--retry-after", "0.05")
    with CollectorProcess(tmp_path / "c.db", *args) as proc:
        done = run_cli("import", str(path), env=env_for(proc.url), timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert get(proc.url, "/v1/stats")["requests"]["by_status"] == {"200": 1, "429": 1}
        assert proc.stop() == 0


def test_import_stops_early_when_the_collector_refuses(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [line(i) for i in range(1, 2001)])
    with Collector(write_keys=["another-key"]) as c:
        done = run_cli("import", str(path), "--max-queue-size", "500", env=env_for(c.url))
        assert c.stats()["events"] == 0
    assert done.returncode == 1
    assert "stopped early" in done.stdout and "HTTP 401" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_import_from_stdin_with_a_small_queue(server: Collector) -> None:
    text = "".join(json.dumps(line(i)) + "\n" for i in range(1, 401)) + "\n"
    done = run_cli(
        "import", "-", "--max-queue-size", "32", "--batch-size", "10",
        env=env_for(server.url), input=text,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.stats()["events"] == 400  # nothing dropped on a full queue
    assert "imported stdin" in done.stdout


def test_import_dry_run_sends_nothing(server: Collector, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [line(1), {"type": "alias", "userId": "u"}])
    done = run_cli("import", str(path), "--dry-run", env=clean_env())  # no key needed
    assert done.returncode == 1
    assert re.search(r"valid\s+1\b", done.stdout) and "line 2: alias needs" in done.stdout
    path = write_jsonl(tmp_path / "ok.jsonl", [line(1), line(2)])
    assert run_cli("import", str(path), "--dry-run", env=clean_env()).returncode == 0
    assert server.stats()["events"] == 0


def test_import_shows_progress_on_request(server: Collector, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [line(i) for i in range(1, 301)])
    done = run_cli("import", str(path), "--progress", env=env_for(server.url))
    assert done.returncode == 0
    assert "lines/s" in done.stderr  # tqdm's bar or the plain counter
    quiet = run_cli("import", str(path), env=env_for(server.url))
    assert quiet.stderr == ""  # not a terminal: no progress unless asked


def test_import_against_a_down_collector_shows_retries_and_each_error_once(
    down_collector: Any, tmp_path: Path
) -> None:
    """Today's defaults were the library's (10 retries, ~73 s of silence, the error twice)."""
    path = write_jsonl(tmp_path / "e.jsonl", [line(i) for i in range(1, 51)])
    started = time.monotonic()
    done = run_cli("import", str(path), env=env_for(down_collector.url), timeout=45)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert elapsed < 25, elapsed  # 3 retries: at most 1 + 2 + 4 s of backoff
    retries = re.findall(r"^retrying: attempt (\d)/4 failed \((.*)\); attempt (\d) in [\d.]+ s$",
                         done.stderr.replace("\r", ""), re.M)  # fmt: skip
    assert [(a, b) for a, _, b in retries] == [("1", "2"), ("2", "3"), ("3", "4")]
    assert retries[0][1].startswith("ConnectionError") and "refused" in retries[0][1]
    assert [why for _, why, _ in retries[1:]] == ["the same error", "the same error"]
    out = done.stdout
    assert re.search(r"failed\s+50\b", out) and "gave up after 4 attempts" in out
    assert out.count("Connection refused") == 1, out  # under `failed`; `stopped early` refers to it
    assert "stopped early: delivery broke down" in out


def test_import_max_retries_and_timeout_flags(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [line(i) for i in range(1, 11)])
    with CollectorProcess(tmp_path / "c.db", "--quiet", "--delay-ms", "3000") as proc:
        started = time.monotonic()
        done = run_cli(
            "import", str(path), "--max-retries", "1", "--timeout", "0.3",
            env=env_for(proc.url), timeout=45,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 15, elapsed  # two tries of 0.3 s and one wait of at most 1 s
    assert re.findall(r"attempt (\d)/2 failed", done.stderr) == ["1"]
    assert "gave up after 2 attempts" in done.stdout and "imeout" in done.stdout


def test_command_line_defaults_are_sized_for_a_terminal() -> None:
    args = cli.build_parser().parse_args(["import", "events.jsonl"])
    assert (args.max_retries, args.timeout) == (3, 10.0)
    assert analytics.options.DEFAULTS.max_retries == 10  # the library's stay as they are
    one = cli.build_parser().parse_args(["track", "--max-retries", "0", "--timeout", "2"])
    assert (one.max_retries, one.timeout) == (0, 2.0)


def test_a_command_leaves_the_library_logger_as_it_was(
    server: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process: the retry display is on the `analytics` logger only while a command runs."""
    log = logging.getLogger("analytics")
    before = (log.level, list(log.handlers))
    argv = ["track", "--user-id", "u", "--event", "E", "--write-key", KEY, "--host", server.url]
    assert cli.main(argv) == 0
    assert (log.level, log.handlers) == before
    assert "delivered track" in capsys.readouterr().out


@pytest.mark.parametrize("command", [("analytics",), ("analytics.collector",)])
def test_version_flag(command: tuple[str, ...]) -> None:
    import subprocess

    done = subprocess.run(
        [PY, "-m", *command, "--version"], capture_output=True, text=True, timeout=30,
        env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    name = "analytics" if command == ("analytics",) else "analytics-collector"
    assert done.stdout == f"{name} {analytics.VERSION}\n"


def test_import_never_drops_on_a_full_queue(server: Collector) -> None:
    """In process: a queue of 1 that is never flushed by count still loses nothing."""
    rows = [json.dumps(line(i)).encode() for i in range(1, 201)] + [b"", b"  "]
    client = analytics.Client(KEY, host=server.url, max_queue_size=1, flush_interval=0.01)
    report = cli.run_import(rows, client, cli.ImportReport("test"), chunk=10**9)
    assert (report.sent, report.delivered, report.failed_count) == (200, 200, 0)
    assert report.blank == 2 and report.exit_code == 0
    assert server.stats()["events"] == 200


def test_import_of_a_missing_file_is_exit_2() -> None:
    done = run_cli("import", "/nonexistent/events.jsonl", env=clean_env(ANALYTICS_WRITE_KEY="k"))
    assert done.returncode == 2 and "no such file" in done.stderr


# -- analytics collector, the demo ----------------------------------------------------------


def test_analytics_collector_is_the_collector(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet", command=("analytics", "collector")) as proc:
        done = run_cli("identify", "--user-id", "u1", env=env_for(proc.url), timeout=30)
        assert done.returncode == 0, done.stderr
        assert get(proc.url, "/v1/stats")["by_type"]["identify"] == 1
        assert proc.stop(signal.SIGTERM) == 0


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("track", "identify", "page", "screen", "group", "alias", "import"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["collector", "--help"])
    assert "--fail-first" in capsys.readouterr().out


def test_demo_runs_and_prints_the_counts_table() -> None:
    import subprocess

    done = subprocess.run(
        [PY, str(ROOT / "examples" / "demo.py")],
        capture_output=True, text=True, timeout=60, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for kind, n in (("identify", 1), ("track", 4), ("page", 1), ("screen", 1), ("group", 1),
                    ("alias", 1), ("total", 9), ("rejected", 0)):  # fmt: skip
        assert re.search(rf"^\s+{kind}\s+{n}$", out, re.M), kind
    assert '"event": "Order Completed"' in out
    assert "refused" in out  # the invalid call, caught and shown
    uuid.UUID(re.findall(r'"messageId": "([^"]+)"', out)[0])
