"""Every Python block of README.md runs as pasted in a fresh project, and the framework
recipes (Django, Flask, FastAPI) run in a real project of each framework.

Each block is written to a new directory and run in its own interpreter by
`_readme_run.py`, which sends what would leave the machine to a loopback collector instead.
A block added to the README is run here without any change to this file; a block that needs
more than "exits cleanly" to prove it works gets a check below.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from collector import Collector
from helpers import is_uuid4

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUNNER = Path(__file__).resolve().parent / "_readme_run.py"
KEY = "readme-write-key"
COOKIE = "ajs_anonymous_id=%22anon-7%22"  # as analytics.js writes it: JSON-quoted, URL-encoded


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)
    ]


def block(marker: str) -> str:
    [code] = [code for _, code in python_blocks() if marker in code]
    return code


def run(cwd: Path, collector: Collector, script: str, timeout: float = 60) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS")}
    env.update(README_COLLECTOR=collector.url, SEGMENT_WRITE_KEY=KEY, PYTHONPATH=str(cwd))
    proc = subprocess.run(
        [sys.executable, str(RUNNER), script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{output}"
    assert "Traceback" not in output, output
    return output


def sent_with(collector: Collector) -> list[tuple[str, dict[str, Any]]]:
    """(write key, message) of everything the collector received."""
    out = []
    for request in collector.snapshot():
        auth = request.headers.get("Authorization", "")
        key = base64.b64decode(auth.split()[-1]).decode().rstrip(":") if auth else ""
        out.extend((key, m) for m in (request.json or {}).get("batch", []))
    return out


# ---- checks for blocks that claim more than running cleanly ---------------------------------


def _quick_start(collector: Collector, cwd: Path) -> None:
    got = {(m["type"], m.get("event") or m.get("name")) for m in collector.messages()}
    assert {("identify", None), ("track", "Order Completed"), ("page", "Quick start")} <= got
    assert all(m["userId"] == "user-42" for m in collector.messages())


def _clients(collector: Collector, cwd: Path) -> None:
    sent = [(k, m["event"]) for k, m in sent_with(collector)]
    assert sent == [("BATCH_JOB_KEY", "Job Finished")]


def _atrack_session(collector: Collector, cwd: Path) -> None:
    paths = [r.path for r in collector.snapshot()]
    assert paths.count("/init") == 3 and "/event" in paths and "/attributes" in paths, paths


CHECKS: dict[str, Callable[[Collector, Path], None]] = {
    'analytics.identify("user-42"': _quick_start,
    'Client("BATCH_JOB_KEY")': _clients,
    "client.clear_user()": _atrack_session,
}
# Blocks run elsewhere: the framework recipes below, the Batcher in test_readme_batcher.
ELSEWHERE = ("# settings.py", "# views.py", "integrations.flask import", "integrations.asgi import",
             "Batcher(max_count=100)", "@analytics.flush_after")


def standalone() -> list[Any]:
    return [
        pytest.param(code, id=f"line{line}")
        for line, code in python_blocks()
        if not any(marker in code for marker in ELSEWHERE)
    ]


@pytest.mark.parametrize("code", standalone())
def test_readme_block_runs_as_pasted(code: str, collector: Collector, tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(code)
    run(tmp_path, collector, "snippet.py")
    for marker, check in CHECKS.items():
        if marker in code:
            check(collector, tmp_path)


def test_every_check_and_recipe_names_a_block_that_exists() -> None:
    codes = [code for _, code in python_blocks()]
    for marker in (*CHECKS, *ELSEWHERE):
        assert sum(marker in code for code in codes) >= 1, f"no README block has {marker!r}"


def test_serverless_handler_delivers_before_it_returns(
    collector: Collector, tmp_path: Path
) -> None:
    (tmp_path / "handler.py").write_text(block("@analytics.flush_after"))
    (tmp_path / "invoke.py").write_text(
        "import os\n"
        "import handler\n"
        "assert handler.handler({'user_id': 'u1'}, None) == {'statusCode': 200}\n"
        "os._exit(0)  # a frozen Lambda: no atexit drain, so delivery was flush_after's\n"
    )
    run(tmp_path, collector, "invoke.py")
    sent = [(k, m["event"], m["userId"]) for k, m in sent_with(collector)]
    assert sent == [(KEY, "Invoked", "u1")]


# ---- the framework recipes, in real projects; the process exits and its queue drains -------


def _two_visits(collector: Collector) -> None:
    """A signed-out visit, then one with analytics.js's cookie: 200s, each with its id."""
    sent = [(k, m) for k, m in sent_with(collector) if m.get("event") == "Order Completed"]
    assert [k for k, _ in sent] == [KEY, KEY]
    first, second = (m for _, m in sent)
    assert is_uuid4(first["anonymousId"]) and "userId" not in first
    assert second["anonymousId"] == "anon-7"
    assert first["properties"] == {"revenue": 42}


def test_django_recipe_in_a_startproject_project(collector: Collector, tmp_path: Path) -> None:
    pytest.importorskip("django")
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
                   check=True, timeout=60)
    settings = tmp_path / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + block("# settings.py"))
    (tmp_path / "mysite" / "views.py").write_text(block("# views.py"))
    urls = tmp_path / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + "\nfrom . import views\n"
                    'urlpatterns += [path("checkout", views.checkout)]\n')
    (tmp_path / "visit.py").write_text(
        "import os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'\n"
        "import django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "assert Client(HTTP_HOST='localhost').get('/checkout').status_code == 200\n"
        f"assert Client(HTTP_HOST='localhost', HTTP_COOKIE={COOKIE!r}).get('/checkout')"
        ".status_code == 200\n"
    )
    run(tmp_path, collector, "visit.py")
    _two_visits(collector)


def _app_recipe(collector: Collector, tmp_path: Path, marker: str, visits: str) -> None:
    """The README's app (the block with `marker`) as app.py, visited by `visits`."""
    (tmp_path / "app.py").write_text(block(marker))
    (tmp_path / "visit.py").write_text(visits)
    run(tmp_path, collector, "visit.py")
    _two_visits(collector)


def test_flask_recipe_in_a_bare_app(collector: Collector, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    # the module call must use the app's key: the module has none
    _app_recipe(collector, tmp_path, "integrations.flask import", (
        "from app import app\n"
        "c = app.test_client()\n"
        "assert c.post('/checkout').status_code == 200\n"
        "c.set_cookie('ajs_anonymous_id', '%22anon-7%22')\n"
        "assert c.post('/checkout').status_code == 200\n"
    ))  # fmt: skip


def test_fastapi_recipe_through_the_shipped_middleware(
    collector: Collector, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    _app_recipe(collector, tmp_path, "integrations.asgi import", (
        "from fastapi.testclient import TestClient\n"
        "from app import app\n"
        "c = TestClient(app)\n"
        "assert c.post('/checkout').status_code == 200\n"
        f"assert c.post('/checkout', headers={{'Cookie': {COOKIE!r}}}).status_code == 200\n"
    ))  # fmt: skip
