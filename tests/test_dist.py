"""The package as a user gets it: `make dist`'s build (sdist, then the wheel from it),
installed into a fresh venv next to the newest python-dateutil, runs the README's quick start
against a loopback collector. Needs the package registry for the dependencies."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from collector import Collector

import analytics

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# python-dateutil's newest release, which our range must let in; 4.0.0 needs Python 3.11
NEWEST_DATEUTIL = "4.0.0" if sys.version_info >= (3, 11) else "3.0.0"


def run(*argv: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A command to completion, bounded; its output in the failure message."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done


def has_distribution(name: str) -> bool:
    # not find_spec: a setuptools `build/` folder in the checkout is importable as `build`
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class Installed:
    """A fresh venv with the built wheel installed into it."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        self.wheel = wheel
        self.python = root / "venv" / "bin" / "python"
        self.bin = root / "venv" / "bin"

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        # this interpreter's pip drives the venv (`pip --python`): the venv needs none
        return run(sys.executable, "-m", "pip", "--python", self.python, *args, cwd=self.root)

    def version_of(self, dist: str) -> str:
        return self.pip("show", dist).stdout.split("Version:", 1)[1].split()[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("dist")
    out = root / "dist"
    if has_distribution("build"):  # what `make dist` runs
        run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
        assert len(list(out.glob("*.tar.gz"))) == 1
    else:
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, ROOT, cwd=ROOT)
    [wheel] = out.glob("*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root)
    env = Installed(root, wheel)
    env.pip("install", "-q", f"python-dateutil=={NEWEST_DATEUTIL}")  # already in the project
    env.pip("install", "-q", wheel)
    yield env


def test_the_wheel_ships_the_license_and_the_metadata(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = whl.read(meta).decode()
        [lic] = [n for n in names if re.search(r"\.dist-info/(licenses/)?LICENSE$", n)]
        assert "Copyright (c) 2026 the analytics-client authors" in whl.read(lic).decode()
    assert "analytics/py.typed" in names and "analytics/collector/static/app.js" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "examples/"))]
    assert f"Version: {analytics.VERSION}" in metadata
    for classifier in (
        "Typing :: Typed", "Framework :: Django", "Framework :: Flask", "Framework :: FastAPI",
        "Programming Language :: Python :: 3.9", "Programming Language :: Python :: 3.13",
    ):  # fmt: skip
        assert f"Classifier: {classifier}" in metadata
    # the tooling for working on the repository is not offered to users as extras
    extras = re.findall(r"^Provides-Extra: (\S+)", metadata, re.M)
    assert "test" not in extras and "lint" not in extras
    site = installed.pip("show", "-f", "analytics-client").stdout
    assert re.search(r"analytics_client-[\w.]+\.dist-info/(licenses/)?LICENSE", site)


def test_installing_next_to_the_newest_dateutil_keeps_it_and_pip_check_is_clean(
    installed: Installed,
) -> None:
    assert installed.version_of("python-dateutil") == NEWEST_DATEUTIL
    assert "No broken requirements" in installed.pip("check").stdout


def test_both_commands_print_the_version(installed: Installed) -> None:
    for command in ("analytics", "analytics-collector"):
        done = run(installed.bin / command, "--version", cwd=installed.root, timeout=30)
        assert done.stdout == f"{command} {analytics.VERSION}\n"


def test_the_readme_quick_start_delivers_from_the_installed_wheel(
    installed: Installed, collector: Collector
) -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", quick, re.S)
    assert snippet is not None
    # the quick start as printed, pointed at the loopback collector instead of Segment
    before = f"import analytics\nanalytics.host = {collector.url!r}\n"
    after = "import json\nprint(json.dumps([analytics.__file__, analytics.default_client.stats()]))"
    program = f"{before}{snippet.group(1)}\n{after}\n"
    done = run(installed.python, "-c", program, cwd=installed.root, timeout=60)
    where, stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(installed.root / "venv")  # the wheel, not the checkout
    assert stats["delivered"] == 3 and stats["dropped"] == 0
    kinds = sorted(m["type"] for m in collector.delivered_messages())
    assert kinds == ["identify", "page", "track"]
