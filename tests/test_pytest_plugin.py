"""The pytest plugin, run as users run it: pytest in a subprocess on small test files that use
(or do not use) the `analytics_events` fixture, with a loopback collector that must see
nothing while a test captures, and the messages of the tests that do not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

CAPTURING = '''
import os
from unittest.mock import ANY

import pytest

import analytics
from analytics import Client

URL = os.environ["COLLECTOR_URL"]
before = Client("k", host=URL, flush_interval=30)  # built before the test, at import


def test_every_client_and_the_module_are_captured(analytics_events):
    during = Client("k", host=URL, flush_interval=30)
    sync = Client("k", host=URL, sync_mode=True)
    stub = Client(stub=True)
    analytics.host = URL  # the module has no write key: the fixture lends it one
    analytics.track("u1", "Signed Up", {"plan": "pro", "seats": 3})
    before.identify("u1", {"email": "a@example.com"})
    during.page("u1", name="Home")
    sync.group("u1", "g1")
    stub.alias("old", "u1")
    analytics_events.tracked("Signed Up", user_id="u1", properties={"plan": "pro"})
    analytics_events.identified(user_id="u1", traits={"email": "a@example.com"})
    analytics_events.paged("Home")
    analytics_events.grouped("g1", user_id="u1")
    analytics_events.aliased("old", user_id="u1")
    assert [m["type"] for m in analytics_events.messages] == [
        "track", "identify", "page", "group", "alias"]
    assert [m["event"] for m in analytics_events.of_type("track")] == ["Signed Up"]
    assert analytics.flush(timeout=1) and before.flush(timeout=1) and during.flush(timeout=1)
    analytics_events.clear()
    assert analytics_events.messages == [] and len(analytics_events) == 0


def test_calls_are_still_checked_and_any_matches(analytics_events):
    lost = []
    client = Client("k", host=URL, on_error=lambda error, batch: lost.append(error))
    with pytest.raises(analytics.ValidationError):
        client.track(None, "No Id")
    assert client.track("u1", "Too Large", {"x": "a" * 40_000})[0] is False
    assert [type(e).__name__ for e in lost] == ["MessageTooLarge"]
    assert analytics_events.messages == []
    client.track("u1", "Signed Up", {"plan": "pro", "seats": 3})
    analytics_events.tracked("Signed Up", user_id=ANY, properties={"seats": ANY})


def test_ids_given_as_ints_match_and_a_stub_module_is_captured(analytics_events, monkeypatch):
    monkeypatch.setattr(analytics, "stub", True)
    ok, msg = analytics.track(42, "Paid", {"amount": 10})
    assert ok
    assert analytics_events.tracked("Paid", user_id=42) is msg
    with pytest.raises(AssertionError):
        analytics_events.tracked("Paid", properties={"amount": 11})


def test_without_the_fixture_clients_send_again():
    assert before.track("u1", "After")[0] is True
    assert before.flush(timeout=5) is True
    assert before.stats()["delivered"] == 1
'''

FAILING = '''
import analytics


def test_signed_up(analytics_events):
    analytics.track("u1", "Signed Up", {"plan": "pro"})
    analytics.identify("u1", {"email": "a@example.com"})
    analytics_events.tracked("Signed Up", user_id="u2")
'''


def run_pytest(
    tmp_path: Path, source: str, url: str = "", plugin: str = "-p", extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """pytest on one test file in a fresh directory; the plugin loaded by `-p` (entry points
    off) or by its entry point."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_app.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "COLLECTOR_URL": url}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    if plugin == "-p":
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args += ["-p", "analytics.pytest_plugin"]
    else:
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [*args, "test_app.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=90,
    )  # fmt: skip


@pytest.mark.parametrize("plugin", ["-p", "entry point"])
def test_the_fixture_captures_everything_and_sends_nothing(tmp_path, collector, plugin):
    proc = run_pytest(tmp_path, CAPTURING, collector.url, plugin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
    # what the capturing tests "sent" never arrived; the test without the fixture's did
    assert [m["event"] for m in collector.messages()] == ["After"]


def test_a_failing_assertion_shows_what_was_sent_instead(tmp_path):
    proc = run_pytest(tmp_path, FAILING)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no track message with event='Signed Up', userId='u2' was sent" in out, out
    assert "2 messages sent instead:" in out
    assert "1. track: event='Signed Up', userId='u1', properties={'plan': 'pro'}" in out
    assert "2. identify: userId='u1', traits={'email': 'a@example.com'}" in out
    assert "pytest_plugin.py" not in out, "the failure should point at the test, not at us"


def test_the_plugin_can_be_turned_off(tmp_path):
    proc = run_pytest(
        tmp_path, "def test_x(analytics_events):\n    pass\n", plugin="entry point",
        extra=("-p", "no:analytics.pytest_plugin"),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "fixture 'analytics_events' not found" in proc.stdout


def test_nothing_sent_says_so(tmp_path):
    proc = run_pytest(
        tmp_path,
        "def test_quiet(analytics_events):\n    analytics_events.identified(user_id='u1')\n",
    )
    assert proc.returncode == 1
    assert "no identify message with userId='u1' was sent; nothing was sent in this test" in (
        proc.stdout
    )


def test_the_entry_point_names_the_plugin_module():
    found = [ep for ep in entry_points(group="pytest11") if ep.value == "analytics.pytest_plugin"]
    assert [ep.name for ep in found] == ["analytics.pytest_plugin"]


def test_loading_the_plugin_imports_nothing_but_itself():
    code = """
        import json, sys
        import pytest, analytics
        before = set(sys.modules)
        import analytics.pytest_plugin
        import analytics.client, analytics.pipeline
        print(json.dumps({
            "new": sorted(set(sys.modules) - before),
            "default_client": analytics.default_client is None,
            "patched": analytics.client.Client._enqueue.__module__,
        }))
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {
        "new": ["analytics.pytest_plugin"], "default_client": True, "patched": "analytics.client"
    }


def readme_block(start: str, marker: str) -> str:
    """The README block (```python or ```text) that holds `marker`."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    [code] = [
        m.group(1) for m in re.finditer(rf"^```{start}\n(.*?)^```", text, re.S | re.M)
        if marker in m.group(1)
    ]
    return code


def test_the_readme_example_passes_and_its_failure_reads_as_shown(tmp_path):
    example = readme_block("python", "def test_sign_up_is_tracked(analytics_events)")
    proc = run_pytest(tmp_path, example, plugin="entry point")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the README's failure: the same example, asked for the wrong user
    wrong = example.replace(
        'tracked("Signed Up", user_id="u1", properties={"plan": "pro"})',
        'tracked("Signed Up", user_id="u2")',
    )
    assert wrong != example
    proc = run_pytest(tmp_path, wrong, plugin="entry point")
    assert proc.returncode == 1
    for line in readme_block("text", "AssertionError: no track message").splitlines():
        assert line in proc.stdout, f"{line!r} not in:\n{proc.stdout}"
