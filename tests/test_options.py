"""The options table (analytics.options) and everything that must follow it: Client's
signature, the module facade, the README's Options table, the framework settings, the CLI;
and the checks every option gets wherever it is given."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WRITE_KEY

import analytics
from analytics import cli
from analytics.integrations._common import CLIENT_OPTIONS, parse_options
from analytics.options import (
    ALIASES,
    BY_NAME,
    DEFAULTS,
    FACADE_OPTIONS,
    OPTIONS,
    Settings,
    boolean,
    resolve,
)

README = Path(__file__).resolve().parent.parent / "README.md"
SEGMENT_POSITIONAL = [
    "write_key", "host", "debug", "max_queue_size", "send", "on_error", "gzip", "max_retries",
    "sync_mode", "timeout", "proxies", "thread", "upload_size", "upload_interval", "log_handler",
]  # fmt: skip
FACADE_NAMES = [o.name for o in FACADE_OPTIONS] + list(ALIASES)
BOOL_NAMES = [o.name for o in OPTIONS if o.check is boolean] + [
    alias for alias, o in ALIASES.items() if o.check is boolean
]


_built: list[analytics.Client] = []


def stub_client(**kw: Any) -> analytics.Client:
    """A client that sends nothing and starts no thread; shut down after the test."""
    kw.setdefault("stub", None if "send" in kw else True)
    client = analytics.Client(WRITE_KEY, **kw)
    _built.append(client)
    return client


@pytest.fixture(autouse=True)
def _shut_down_built() -> Iterator[None]:
    level = logging.getLogger("analytics").level  # debug=True changes it for the process
    yield
    while _built:
        assert _built.pop().shutdown(timeout=2)
    logging.getLogger("analytics").setLevel(level)


# -- who follows the table ------------------------------------------------------------------


def test_the_table_is_the_settings_and_its_aliases_are_segments():
    assert [f.name for f in dataclasses.fields(Settings)] == [o.name for o in OPTIONS]
    assert Settings() == DEFAULTS
    assert {alias: o.name for alias, o in ALIASES.items()} == {
        "send": "stub", "upload_size": "batch_size", "upload_interval": "flush_interval",
        "dataPlaneUrl": "host",  # RudderStack's
    }  # fmt: skip
    assert (DEFAULTS.value("send"), DEFAULTS.value("upload_size")) == (True, 100)
    assert DEFAULTS.timeout == 15 and DEFAULTS.host == "https://api.segment.io"
    # log_handler is no Client extra: Segment's module has it too
    assert {o.name for o in OPTIONS if o.client_only} == {"thread"}
    assert all(o.doc and "\n" not in o.doc for o in OPTIONS)


def test_client_signature_follows_the_table():
    params = dict(inspect.signature(analytics.Client.__init__).parameters)
    del params["self"]
    assert set(params) == {o.name for o in OPTIONS} | set(ALIASES)
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == SEGMENT_POSITIONAL
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in params
               if n not in SEGMENT_POSITIONAL)  # fmt: skip
    for option in OPTIONS:
        default = params[option.name].default
        if option.alias is not None:
            # None = not given, so that an option and its alias can be told apart
            assert default is None and params[option.alias].default is None, option.name
        elif option.name == "host":
            assert default is None, "None: the protocol's default host (Segment's: the table's)"
        else:
            assert default == option.default and type(default) is type(option.default), option
    client = stub_client()
    assert client.settings == dataclasses.replace(DEFAULTS, write_key=WRITE_KEY, stub=True)


def test_facade_attributes_follow_the_table():
    # A fresh interpreter: other tests change the module's settings (and restore them).
    code = (
        "import analytics\n"
        f"names = {FACADE_NAMES!r}\n"
        "print(repr({n: getattr(analytics, n) for n in names}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    values = done.stdout.strip()  # reprs: the values include an analytics.Backoff
    assert values == repr({name: DEFAULTS.value(name) for name in FACADE_NAMES})
    assert list(analytics._SETTINGS) == [o.name for o in FACADE_OPTIONS]
    annotated = set(analytics.__annotations__)
    assert set(FACADE_NAMES) <= annotated, "the facade must stay typed"


def _readme_options() -> dict[str, Any]:
    """The Options table of README.md: option name -> default, as written there."""
    section = README.read_text(encoding="utf-8").split("\n## Options\n", 1)[1].split("\n## ")[0]
    table: dict[str, Any] = {}
    for row in re.findall(r"^\| (`\w+`.*?) \| (.*?) \| .* \|$", section, re.M):
        names = re.findall(r"`(\w+)`", row[0])
        defaults = [d.strip() for d in row[1].split(",")]  # one row may hold several options
        assert len(names) == len(defaults), row
        for name, text in zip(names, defaults):
            mb = re.fullmatch(r"(\d+) MB", text)
            literal = text.strip("`")
            if mb:
                table[name] = int(mb[1]) * 1024 * 1024
            elif literal.startswith("Backoff("):  # the one default that is an object
                table[name] = eval(literal, {"__builtins__": {}}, {"Backoff": analytics.Backoff})  # noqa: S307
            else:
                table[name] = ast.literal_eval(literal)
    return table


def test_readme_options_table_lists_every_option_with_its_default():
    table = _readme_options()
    assert table == {o.name: o.default for o in FACADE_OPTIONS}
    section = README.read_text(encoding="utf-8").split("\n## Options\n", 1)[1].split("\n## ")[0]
    for option in OPTIONS:  # Segment's names and the extras are named under the table
        for name in (option.name, option.alias):
            assert name is None or f"`{name}`" in section, name


def test_framework_settings_keys_follow_the_table():
    assert set(CLIENT_OPTIONS) == {name.upper() for name in FACADE_NAMES}
    given = {name.upper(): DEFAULTS.value(name) for name in FACADE_NAMES}
    given["ON_ERROR"] = "logging.warning"  # the integrations also take a dotted path
    client, _ = parse_options(given, lambda key: f"ANALYTICS_{key}")
    assert client["on_error"] is logging.warning
    assert client["stub"] is False and client["batch_size"] == 100


def test_cli_defaults_are_the_tables():
    """The table's, except the few the CLI sizes for a terminal, named in one place."""
    assert set(cli.CLI_DEFAULTS) <= set(analytics.options.BY_NAME)
    cli_default = {**{name: DEFAULTS.value(name) for name in FACADE_NAMES}, **cli.CLI_DEFAULTS}
    args = cli.build_parser().parse_args(["import", "events.jsonl"])
    assert (args.timeout, args.max_retries) == (cli_default["timeout"], cli_default["max_retries"])
    assert (args.batch_size, args.max_queue_size) == (DEFAULTS.batch_size,
                                                      DEFAULTS.max_queue_size)  # fmt: skip
    track = cli.build_parser().parse_args(["track"])
    assert track.timeout == cli_default["timeout"]
    assert track.max_retries == cli_default["max_retries"]


# -- the checks -----------------------------------------------------------------------------


def test_gzip_false_as_a_string_is_refused():
    with pytest.raises(analytics.ValidationError, match="gzip must be True or False"):
        analytics.Client(WRITE_KEY, gzip="false")


@pytest.mark.parametrize("name", BOOL_NAMES)
@pytest.mark.parametrize("value", ["false", "", 1, 0, 0.0])
def test_a_bool_option_takes_only_true_or_false(name, value):
    with pytest.raises(analytics.ValidationError, match=f"^{name} must be True or False"):
        stub_client(**{name: value})


@pytest.mark.parametrize("name", [n for n in BOOL_NAMES if n != "send"])
def test_a_bool_option_takes_true(name, tmp_path):
    client = stub_client(**{name: True}, spool_path=str(tmp_path / "spool.db"))
    assert getattr(client.settings, name) is True
    assert stub_client(send=True).stub is False


CHECKS = [
    ({"timeout": 0}, "timeout must be a number >= 0.001, not 0"),
    ({"timeout": "15"}, "timeout must be a number"),
    ({"shutdown_timeout": -1}, "shutdown_timeout must be a number >= 0"),
    ({"flush_interval": -0.1}, "flush_interval must be a number >= 0"),
    ({"upload_interval": -1}, "upload_interval must be a number >= 0"),
    ({"max_queue_size": 0}, "max_queue_size must be an int >= 1"),
    ({"max_queue_size": 10.0}, "max_queue_size must be an int >= 1"),
    ({"max_retries": -1}, "max_retries must be an int >= 0"),
    ({"max_retries": True}, "max_retries must be an int >= 0"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"upload_size": 0}, "upload_size must be an int >= 1"),
    ({"spool_max_bytes": 0}, "spool_max_bytes must be an int >= 1"),
    ({"host": "ftp://collector"}, "host must be an http(s) URL"),
    ({"on_error": "print"}, "on_error must be callable"),
    ({"proxies": ["http://proxy:3128"]}, "proxies must be a dict"),
    ({"log_handler": "stderr"}, "log_handler must be a logging.Handler"),
    ({"spool_path": 5}, "spool_path must be a file path"),
    ({"durable": True}, "durable=True needs spool_path"),
    ({"batch_size": 6, "upload_size": 5}, "batch_size=6 and its alias upload_size=5 disagree"),
    ({"flush_interval": 1, "upload_interval": 2}, "flush_interval=1 and its alias"),
    ({"stub": True, "send": True}, "stub=True and its alias send=True disagree"),
]


@pytest.mark.parametrize(("given", "message"), CHECKS, ids=[m for _, m in CHECKS])
def test_a_wrong_value_is_refused_naming_the_option(given, message):
    with pytest.raises(analytics.ValidationError, match=re.escape(message)):
        stub_client(**given)


def test_an_option_and_its_alias_that_agree_are_taken():
    client = stub_client(batch_size=7, upload_size=7, upload_interval=0.2)
    assert (client.batch_size, client.flush_interval) == (7, 0.2)
    assert stub_client(send=False, stub=None).stub is True


def test_write_key_is_required_unless_stub_and_never_shown():
    with pytest.raises(analytics.ValidationError, match="write_key is required"):
        analytics.Client(None)
    with pytest.raises(analytics.ValidationError, match="write_key must be a str") as info:
        analytics.Client(b"sekrit-bytes-key", stub=True)
    assert "sekrit" not in str(info.value) and "sekrit" not in repr(info.value)
    assert WRITE_KEY not in repr(stub_client().settings)


def test_on_error_false_means_none():
    assert stub_client(on_error=False).on_error is None


@pytest.mark.parametrize("value", [False, 0, "", None])
def test_a_falsy_on_error_means_none(value):
    client = stub_client(on_error=value)
    assert client.on_error is None and client.settings.on_error is None
    client.on_error = print
    client.on_error = value  # the attribute takes the same values as the option
    assert client.on_error is None


def test_a_falsy_callable_on_error_is_a_callback():
    from helpers import ErrorLog

    log = ErrorLog()
    assert not log, "an empty ErrorLog is falsy (it has a __len__)"
    assert stub_client(on_error=log).on_error is log
    client = stub_client()
    client.on_error = log
    assert client.on_error is log


@pytest.mark.parametrize("value", ["print", 1, True, [print]])
def test_a_truthy_non_callable_on_error_is_refused(value):
    with pytest.raises(analytics.ValidationError, match="on_error must be callable"):
        stub_client(on_error=value)
    client = stub_client()
    with pytest.raises(analytics.ValidationError, match="on_error must be callable"):
        client.on_error = value
    assert client.on_error is None


def test_a_queue_smaller_than_a_batch_is_legal():
    """A batch is whatever is queued when it is sent (README, Options)."""
    client = stub_client(max_queue_size=5)
    assert (client.max_queue_size, client.batch_size) == (5, DEFAULTS.batch_size)


def test_resolve_labels_errors_as_the_user_wrote_them():
    def label(name: str) -> str:
        return f"ANALYTICS[{name.upper()!r}]"

    with pytest.raises(analytics.ValidationError, match=re.escape("ANALYTICS['TIMEOUT']")):
        resolve({"timeout": "fast"}, label)
    with pytest.raises(analytics.ValidationError) as info:
        resolve({"write_key": None}, label)
    assert "ANALYTICS['WRITE_KEY'] is required" in str(info.value)
    assert resolve({"write_key": None}, label, require_write_key=False).write_key is None


def test_the_settings_are_frozen():
    settings = stub_client(timeout=3).settings
    assert settings.timeout == 3 and BY_NAME["timeout"].default == 15
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 1
