"""bench/peer_suites.py: its import rewriting, its skip when the peers are not installed,
and (where bench/.venv-peers exists) a full run whose every failure is classified."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "peer_suites.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_suites", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_their_imports_are_pointed_at_this_package_and_their_patches_left_alone():
    peer = _script()
    text = (
        "import rudderstack.analytics as analytics\n"
        "from rudderstack.analytics.client import Client\n"
        "from rudderstack.analytics.version import VERSION\n"
        "from rudderstack.analytics.request import APIError\n"
        "from rudderstack.analytics.test.test_constants import TEST_PROXY\n"
        "        post_patcher = mock.patch('rudderstack.analytics.consumer.post')\n"
    )
    assert peer._rewrite(text, "rudderstack").splitlines() == [
        "import analytics",
        "from peer_shim import Client",
        "from analytics import VERSION",
        "from analytics import APIError",
        "from test_constants import TEST_PROXY",
        "        post_patcher = mock.patch('rudderstack.analytics.consumer.post')",
    ]
    assert peer._rewrite("import segment.analytics as analytics\n", "segment") == (
        "import analytics\n"
    )


def test_every_known_failure_is_classified_internals_or_by_design():
    peer = _script()
    assert peer.KNOWN
    for test, (kind, why) in peer.KNOWN.items():
        assert test.split("::")[0] in peer.SUITES, test
        assert kind in (peer.INTERNALS, peer.BY_DESIGN) and why, test


def test_it_skips_with_a_message_when_the_peers_are_not_installed(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--site-packages", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "segment: skipped: segment-analytics-python" in done.stdout
    assert "rudderstack: skipped: rudder-sdk-python" in done.stdout


_SITES = sorted((ROOT / "bench" / ".venv-peers").glob("lib/python*/site-packages"))
PEERS_SITE = _SITES[-1] if _SITES else None


@pytest.mark.skipif(
    PEERS_SITE is None or not (PEERS_SITE / "rudderstack").is_dir(),
    reason="bench/.venv-peers with segment-analytics-python and rudder-sdk-python: make bench",
)
def test_their_suites_leave_only_classified_failures():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--site-packages", str(PEERS_SITE)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "segment: " in done.stdout and "rudderstack: " in done.stdout
    assert "UNEXPECTED" not in done.stdout
