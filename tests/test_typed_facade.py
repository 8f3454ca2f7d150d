"""The module's functions have `Client`'s signatures, types and docstrings: `mypy --strict`
on user code finds the same mistakes in `analytics.track(...)` as in `client.track(...)`."""

from __future__ import annotations

import inspect
import os
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pytest

import analytics

mypy = pytest.importorskip("mypy", reason="mypy comes with the lint extra")

CALLS = ["track", "identify", "page", "screen", "group", "alias"]
EVERY = [*CALLS, "flush", "shutdown"]

# Each line a mistake mypy must report; the same lines are written once against the module
# and once against a Client.
MISTAKES = """\
{o}.track(123.5, ["x"], properties="oops")
{o}.identify("u1", traits=5)
{o}.page(user_id="u1", nme="Home")
{o}.screen("u1", "Mobile", 7)
{o}.group("u1", group_id=2.5)
{o}.alias("a1")  # fine: both are optional, the call checks at run time
{o}.flush(timeout="soon")
{o}.shutdown(1, 2)
event: int = {o}.track("u1", "E")[1]
"""
EXPECTED = [  # (line in MISTAKES, mypy's code)
    (1, "arg-type"), (1, "arg-type"), (1, "arg-type"),
    (2, "arg-type"),
    (3, "call-arg"),
    (4, "arg-type"),
    (5, "arg-type"),
    (7, "arg-type"),
    (8, "call-arg"),
    (9, "assignment"),
]  # fmt: skip

CORRECT = """\
import uuid
from datetime import datetime, timezone

import analytics

queued: bool
message: dict[str, object]
queued, message = analytics.track("u1", "Signed Up", {"plan": "pro"}, timestamp=datetime.now(
    timezone.utc))
analytics.identify(42, {"email": "ada@example.com"}, anonymous_id=uuid.uuid4())
analytics.page("u1", "Docs", "Quick start", {"url": "https://example.com"})
analytics.screen(user_id="u1", name="Home")
analytics.group("u1", "acme", {"seats": 3}, context={"ip": "192.0.2.1"})
analytics.alias("anon-1", "u1", message_id="m1")
delivered: bool = analytics.flush(timeout=2.5) and analytics.shutdown(1) and analytics.join()
"""

HEADERS = {
    "module": "import analytics\n\n",
    "client": 'import analytics\n\nclient = analytics.Client("KEY", stub=True)\n',
}


def _errors(output: str, name: str, first_line: int) -> list[tuple[int, str, str]]:
    """(line in MISTAKES, code, message with the callee's name taken out) of one file."""
    found = []
    for line, text, code in re.findall(rf"^{name}\.py:(\d+): error: (.*)  \[([\w-]+)\]$",
                                       output, re.M):  # fmt: skip
        text = re.sub(r' (to|for) "\w+"( of "Client")?', "", text)
        found.append((int(line) - first_line + 1, code, text))
    return sorted(found)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, dict[str, int]]:
    """One `mypy --strict` run over three user files: mistakes on the module, the same on a
    Client, and a correct file. Returns mypy's output, status and the first line of each."""
    where = tmp_path_factory.mktemp("user")
    firsts = {}
    for name, header in HEADERS.items():
        obj = "analytics" if name == "module" else "client"
        (where / f"{name}.py").write_text(header + MISTAKES.format(o=obj), encoding="utf-8")
        firsts[name] = header.count("\n") + 1
    (where / "correct.py").write_text(CORRECT, encoding="utf-8")
    # The package as the user's mypy finds it: its source directory (an editable install's
    # import hook is invisible to mypy), with its py.typed.
    package_root = Path(analytics.__file__).resolve().parent.parent
    assert (package_root / "analytics" / "py.typed").exists()
    env = {**os.environ, "MYPYPATH": str(package_root)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--hide-error-context",
         "--cache-dir", str(where / ".mypy_cache"), "module.py", "client.py", "correct.py"],
        cwd=where, env=env, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    return done.stdout + done.stderr, done.returncode, firsts


@pytest.mark.timeout(600)
def test_mypy_strict_finds_the_mistakes_made_on_the_module(checked):
    output, status, firsts = checked
    found = _errors(output, "module", firsts["module"])
    assert [(line, code) for line, code, _ in found] == EXPECTED, output
    assert status == 1
    assert 'Argument 1 has incompatible type "float"; expected "str | int | UUID | None"' in output


@pytest.mark.timeout(600)
def test_the_module_and_a_client_give_the_same_errors(checked):
    output, _, firsts = checked
    on_module = _errors(output, "module", firsts["module"])
    on_client = _errors(output, "client", firsts["client"])
    assert on_module == on_client, output


@pytest.mark.timeout(600)
def test_a_correct_user_file_passes_mypy_strict(checked):
    output, _, _ = checked
    assert not re.search(r"^correct\.py:", output, re.M), output


@pytest.mark.parametrize("name", EVERY)
def test_each_function_has_the_client_methods_signature_and_docstring(name):
    function, method = getattr(analytics, name), getattr(analytics.Client, name)
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    assert inspect.signature(function) == inspect.signature(method).replace(parameters=params)
    assert function.__name__ == name and function.__module__ == "analytics"
    if name in CALLS:
        assert function.__doc__ == method.__doc__
    assert function.__doc__ and function.__doc__ in pydoc.render_doc(function)
    assert "self" not in pydoc.render_doc(function)


def test_join_is_shutdown_as_on_a_client():
    assert analytics.join is analytics.shutdown
    assert analytics.Client.join is analytics.Client.shutdown


def test_the_functions_still_take_positional_and_keyword_arguments(facade, collector):
    assert facade.track("u1", "Positional", {"n": 1})[0]
    assert facade.page(user_id="u1", name="Keywords")[0]
    assert facade.flush(5) and facade.flush(timeout=5)
    assert [m.get("event", m.get("name")) for m in collector.messages()] == [
        "Positional", "Keywords",
    ]  # fmt: skip
    with pytest.raises(TypeError):
        facade.track("u1", "E", nme="x")
