"""The environments: ours is the project's venv (run.py's interpreter); the peers live in
`bench/.venv-peers`, made here with `python -m venv` and pip from the package registry.

PostHog is pinned to 7.91.1: the asked-for 7.91.0 was never published (7.79.0 jumps to
7.91.1), so this is the newest 7.x. matplotlib draws the chart and is pinned too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / ".venv-peers"
REQUIREMENTS = (
    "segment-analytics-python==2.4.0",
    "posthog==7.91.1",
    "rudder-sdk-python==2.1.9",  # not benchmarked: its tests run in peer_suites.py
    "matplotlib==3.11.2",
)
STAMP = PEERS_DIR / ".bench-requirements"
INSTALL_TIMEOUT_S = 900


def ours_python() -> str:
    """The project's interpreter: the one running the bench."""
    return sys.executable


def peers_python() -> Path:
    """The peers' interpreter (it may not exist yet)."""
    return PEERS_DIR / "bin" / "python"


def ensure_peers() -> Path:
    """Create or update the peers' venv so that it holds exactly the pinned set."""
    python = peers_python()
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python
    if not python.exists():
        print(f"bench: creating {PEERS_DIR}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_DIR)], check=True, timeout=300)
    print(f"bench: installing {', '.join(REQUIREMENTS)}", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *REQUIREMENTS],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    STAMP.write_text(wanted)
    return python


def versions(python: str | Path, packages: list[str]) -> dict[str, str | None]:
    """Installed versions of `packages` in the environment of `python`."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code, *packages],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, str | None] = json.loads(out.stdout)
    return result


def python_version(python: str | Path) -> str:
    """`X.Y.Z` of an interpreter."""
    out = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip()
