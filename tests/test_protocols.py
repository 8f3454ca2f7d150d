"""The protocol table: a protocol is a value, loaded by name on first use, so a Segment
user never imports A-Track's code."""

from __future__ import annotations

import subprocess
import sys

import pytest

import analytics
from analytics import protocols


def test_a_segment_client_never_imports_a_track():
    code = (
        "import sys, analytics\n"
        "c = analytics.Client('k', stub=True)\n"
        "c.track('u', 'E')\n"
        "print(any(m.startswith('analytics.atrack') for m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"


def test_each_protocol_is_a_value_with_its_limits():
    segment, atrack = protocols.load("segment"), protocols.load("atrack")
    assert (segment.name, segment.batch_limit, segment.refuses) == ("segment", None, frozenset())
    assert segment.default_host == analytics.options.DEFAULTS.host
    assert (atrack.batch_limit, atrack.refuses, atrack.key_name) == (1, {"alias"}, "public_key")
    assert protocols.load("atrack") is atrack  # loaded once


@pytest.mark.parametrize("name", ["rudder", "", None, 3])
def test_an_unknown_protocol_is_refused_at_the_client(name):
    with pytest.raises(analytics.ValidationError, match="protocol"):
        analytics.Client("k", protocol=name)


def test_the_protocol_names_its_client_class():
    from analytics.atrack import ATrackClient

    assert protocols.client_class(protocols.load("segment")) is None
    assert protocols.client_class(protocols.load("atrack")) is ATrackClient
    client = analytics.Client("k", stub=True, protocol="atrack")
    assert type(client) is ATrackClient and client.protocol is protocols.load("atrack")
