"""`make demo` (examples/demo.py) against the bundled collector: a Segment session and a short
A-Track one are stored, and the output is the demo's own report only."""

from __future__ import annotations

import re
import subprocess

from _collector_helpers import PY, ROOT, clean_env


def test_the_demo_sends_an_atrack_session_too_and_prints_only_its_report() -> None:
    done = subprocess.run(
        [PY, str(ROOT / "examples" / "demo.py")],
        capture_output=True, text=True, timeout=60, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # no warnings, no request log: only the report on stdout
    out = done.stdout
    for kind in ("init", "attributes", "event"):
        assert re.search(rf"^\s+{kind}\s+1$", out, re.M), kind
    assert '"protocol": "atrack"' in out and '"event": "Project Created"' in out
    (check,) = [line for line in out.splitlines() if "ValidationError" in line]
    assert check.startswith("input check works:") and "as designed" in check
    assert "flushed: everything delivered" in out
