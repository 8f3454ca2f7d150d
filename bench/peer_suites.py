"""Run Segment's and RudderStack's own client and module tests against this package.

`python bench/peer_suites.py` (make peer-suites). Fetches nothing: it reads the test files
that `segment-analytics-python` and `rudder-sdk-python` ship inside their installed
packages (bench/.venv-peers, made by `make bench`; or `--site-packages DIR`), and skips, with
a message, a suite whose package is not there. Each suite's files are copied to a temporary
folder with their imports pointed at `analytics` (their `Client` at a subclass aimed at a
loopback collector started here; RudderStack's with `dataPlaneUrl`, as its users would
migrate), then run with this project's pytest. Their private modules stay importable (the
peers' site-packages is last on sys.path), so a `mock.patch` of their internals still
patches something; it just no longer touches the client under test.

Every failure must be one listed in KNOWN below, as "internals" (the test reaches into
their private modules or attributes) or "by design" (a difference README.md names). The exit
status is 1 if any other test fails (or a listed one passes: the list is out of date).
No request leaves the machine: HTTP(S)_PROXY point at a closed loopback port for everything
but 127.0.0.1, where the collector listens.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_VENV = BENCH_DIR / ".venv-peers"
SUITE_TIMEOUT_S = 600
TEST_TIMEOUT_S = 60

# suite -> (import prefix, pip name, {file in their test folder: file name here})
SUITES = {
    "segment": (
        "segment",
        "segment-analytics-python",
        {"test_client.py": "test_client.py", "test_module.py": "test_module.py",
         "test_init.py": "test_init.py"},
    ),
    "rudderstack": (
        "rudderstack",
        "rudder-sdk-python",
        {"test_client.py": "test_client.py", "test_module.py": "test_module.py",
         "__init__.py": "test_init.py", "test_constants.py": "test_constants.py"},
    ),
}  # fmt: skip

INTERNALS = "internals"
BY_DESIGN = "by design"
# "suite::file::Class::test" -> (class, why). README.md's migration sections name every
# "by design" difference.
_LIBRARY = (BY_DESIGN, "context.library names this library, not analytics-python")
_RAISES = (BY_DESIGN, "ValidationError, not AssertionError")
_NO_NULL_IDS = (BY_DESIGN, "an id not given is left out of the message, not sent as null")
_CONSUMERS = (INTERNALS, "reads client.consumers, their consumer threads")
KNOWN: dict[str, tuple[str, str]] = {
    # -- Segment 2.4 ---------------------------------------------------------------------
    "segment::test_client::TestClient::test_requires_write_key": _RAISES,
    "segment::test_client::TestClient::test_advanced_track": _LIBRARY,
    "segment::test_client::TestClient::test_advanced_identify": _LIBRARY,
    "segment::test_client::TestClient::test_advanced_group": _LIBRARY,
    "segment::test_client::TestClient::test_advanced_page": _LIBRARY,
    "segment::test_client::TestClient::test_advanced_screen": _LIBRARY,
    "segment::test_client::TestClient::test_stringifies_user_id": _NO_NULL_IDS,
    "segment::test_client::TestClient::test_stringifies_anonymous_id": _NO_NULL_IDS,
    "segment::test_client::TestClient::test_default_timeout_15": _CONSUMERS,
    "segment::test_client::TestClient::test_proxies": _CONSUMERS,
    "segment::test_client::TestClient::test_shutdown": _CONSUMERS,
    "segment::test_client::TestClient::test_user_defined_timeout": _CONSUMERS,
    "segment::test_client::TestClient::test_user_defined_upload_size": (
        INTERNALS, "mock.patch of segment.analytics.consumer.post, reads client.consumers"),
    "segment::test_init::TestInit::test_max_retries": _CONSUMERS,
    # -- RudderStack 2.1 -----------------------------------------------------------------
    "rudderstack::test_client::TestClient::test_requires_write_key": _RAISES,
    "rudderstack::test_client::TestClient::test_advanced_track": _LIBRARY,
    "rudderstack::test_client::TestClient::test_advanced_identify": _LIBRARY,
    "rudderstack::test_client::TestClient::test_advanced_group": _LIBRARY,
    "rudderstack::test_client::TestClient::test_advanced_page": _LIBRARY,
    "rudderstack::test_client::TestClient::test_advanced_screen": _LIBRARY,
    "rudderstack::test_client::TestClient::test_stringifies_user_id": _NO_NULL_IDS,
    "rudderstack::test_client::TestClient::test_stringifies_anonymous_id": _NO_NULL_IDS,
    "rudderstack::test_client::TestClient::test_default_timeout_15": _CONSUMERS,
    "rudderstack::test_client::TestClient::test_proxies": _CONSUMERS,
    "rudderstack::test_client::TestClient::test_shutdown": _CONSUMERS,
    "rudderstack::test_client::TestClient::test_user_defined_timeout": _CONSUMERS,
    "rudderstack::test_client::TestClient::test_user_defined_upload_size": _CONSUMERS,
    "rudderstack::test_client::TestClient::test_synchronous": (
        INTERNALS, "mock.patch of rudderstack.analytics.client.post"),
    "rudderstack::test_client::TestClient::test_failure_on_invalid_write_key": (
        INTERNALS, "drives a mock of rudderstack.analytics.consumer.post (and builds "
        "APIError(status, code, message), where ours is APIError(status, detail))"),
    "rudderstack::test_init::TestInit::test_max_retries": _CONSUMERS,
    "rudderstack::test_module::TestModule::test_no_write_key": _RAISES,
}  # fmt: skip


def site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python*/site-packages"))
    return found[-1] if found else None


def _rewrite(text: str, prefix: str) -> str:
    """Their imports pointed at this package; their mock.patch strings left as they are."""
    p = re.escape(prefix)
    rules = [
        (rf"^import {p}\.analytics as analytics$", "import analytics"),
        (rf"^from {p}\.analytics\.client import Client$", "from peer_shim import Client"),
        (rf"^from {p}\.analytics\.version import VERSION$", "from analytics import VERSION"),
        (rf"^from {p}\.analytics\.request import APIError$", "from analytics import APIError"),
        (rf"^from {p}\.analytics\.test\.test_constants import", "from test_constants import"),
    ]
    for pattern, replacement in rules:
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


SHIM = '''"""Their Client, aimed at the loopback collector (written by bench/peer_suites.py)."""
import os

import analytics

URL = os.environ["PEER_COLLECTOR_URL"]
FAST = analytics.Backoff(factor=0.001, max_wait=0.01)  # their tests wait on failures


class Client(analytics.Client):
    def __init__(self, *args, **kwargs):
        if len(args) < 2 and kwargs.get("host") is None and "dataPlaneUrl" not in kwargs:
            kwargs.pop("host", None)
            kwargs[os.environ["PEER_HOST_OPTION"]] = URL
        kwargs.setdefault("backoff", FAST)
        super().__init__(*args, **kwargs)

    @property
    def consumers(self):
        # Theirs: the consumer threads, None in sync mode. Their setUp tests it for None;
        # any other use of it reaches into their internals, and fails here as such.
        return None if self.sync_mode else _Internals()


class _Internals:
    def _refuse(self, *args):
        raise AttributeError("peer_suites: client.consumers (their threads) is internals")

    __iter__ = __getitem__ = __len__ = _refuse

    def __bool__(self):
        return True
'''

CONFTEST = """import os
import sys

sys.path.append(os.environ["PEER_SITE_PACKAGES"])  # last: `analytics` is this package

import analytics  # noqa: E402

setattr(analytics, os.environ["PEER_HOST_OPTION"], os.environ["PEER_COLLECTOR_URL"])
analytics.backoff = analytics.Backoff(factor=0.001, max_wait=0.01)
"""

MOCK = '"""Segment\'s tests import the `mock` backport: the standard library\'s."""\n' \
    "from unittest.mock import *  # noqa: F403\n"  # fmt: skip


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_suite(name: str, site: Path, url: str, work: Path) -> dict[str, str] | None:
    """Outcomes by test id ("passed", "failed", "skipped"); None if not installed."""
    prefix, pip_name, files = SUITES[name]
    source = site / prefix / "analytics" / "test"
    if not all((source / f).is_file() for f in files):
        print(f"{name}: skipped: {pip_name} (with its tests) is not installed in {site}")
        return None
    folder = work / name
    folder.mkdir()
    for theirs, ours in files.items():
        text = (source / theirs).read_text(encoding="utf-8")
        (folder / ours).write_text(_rewrite(text, prefix), encoding="utf-8")
    (folder / "peer_shim.py").write_text(SHIM, encoding="utf-8")
    (folder / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (folder / "mock.py").write_text(MOCK, encoding="utf-8")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(folder),
        "PEER_SITE_PACKAGES": str(site),
        "PEER_COLLECTOR_URL": url,
        "PEER_HOST_OPTION": "dataPlaneUrl" if name == "rudderstack" else "host",
        "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
    }  # fmt: skip
    report = folder / "report.xml"
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
        str(folder / "pytest.ini"), "--rootdir", str(folder), f"--junitxml={report}",
        f"--timeout={TEST_TIMEOUT_S}", *sorted(files.values()),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S
    )
    (work / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if not report.exists():
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(f"{name}: pytest wrote no report")
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)
        test_id = f"{name}::{'::'.join(module)}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[test_id] = (
            "failed" if kinds & {"failure", "error"} else
            "skipped" if "skipped" in kinds else "passed"
        )  # fmt: skip
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--site-packages", type=Path, default=None,
        help="the peers' site-packages (default: bench/.venv-peers's)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work folder, print it")
    args = parser.parse_args(argv)
    site = args.site_packages or site_packages(PEERS_VENV)
    if site is None or not site.is_dir():
        print(f"peer suites: skipped: no peers' site-packages ({PEERS_VENV}: run `make bench`)")
        return 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    work = Path(tempfile.mkdtemp(prefix="peer-suites-"))
    bad: list[str] = []
    try:
        for name in SUITES:
            outcomes = run_suite(name, site, url, work)
            if outcomes is None:
                continue
            passed = [t for t, o in outcomes.items() if o == "passed"]
            failed = [t for t, o in outcomes.items() if o == "failed"]
            print(f"{name}: {len(passed)} passed, {len(failed)} failed")
            for test in failed:
                kind, why = KNOWN.get(test, ("UNEXPECTED", "neither internals nor by design"))
                print(f"  {kind:10} {test}: {why}")
                if test not in KNOWN:
                    bad.append(test)
            for test in passed:
                if test in KNOWN:
                    print(f"  now passes (drop it from KNOWN): {test}")
                    bad.append(test)
    finally:
        server.shutdown()
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
