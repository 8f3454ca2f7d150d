"""Values that reach the wire by paths other than a call's arguments go through the same
value table: what a `before_send` hook puts in, and A-Track's attributes and context.
In a subprocess: orjson 3.13 kills the process (SIGSEGV) on a tzinfo that raises."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import analytics


def test_hook_and_atrack_values_are_cut_and_normalised_with_either_backend() -> None:
    script = textwrap.dedent(
        """
        import datetime as dt, json
        import analytics
        from analytics import encode

        class Failing(dt.tzinfo):
            def utcoffset(self, d):
                raise RuntimeError("no offset today")

        when = dt.datetime(2024, 3, 1, 12, 30, tzinfo=Failing())
        loop = {"name": "loop"}
        loop["self"] = loop

        def hook(msg):
            msg["properties"]["at"] = when
            msg["properties"]["loop"] = loop
            return msg

        for backend in encode._BACKENDS:
            encode.use_backend(backend)
            seg = analytics.Client("k", stub=True, before_send=hook)
            ok, msg = seg.track("u1", "E")
            assert ok, msg
            body = json.loads(encode.encode(msg))
            assert body["properties"]["at"] == "2024-03-01T12:30:00+00:00", body
            assert body["properties"]["loop"]["self"] == "<circular reference>", body

            at = analytics.Client("k", protocol="atrack", stub=True)
            assert at.init(uuid="u1", attributes={"at": when, "loop": loop})["uuid"] == "u1"
            ok, msg = at.set_attributes({"deep": {"at": when, "loop": loop}}, uuid="u1")
            assert ok, msg
            body = json.loads(encode.encode(msg))
            text = json.dumps(body)
            assert "2024-03-01T12:30:00" in text and "<circular reference>" in text, body
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip() == "ok"


def test_an_int_id_past_the_digit_limit_is_a_validation_error_not_a_value_error() -> None:
    client = analytics.Client("k", stub=True)
    with pytest.raises(analytics.ValidationError, match="user_id is an int of .* too long"):
        client.track(10**5000, "E")
