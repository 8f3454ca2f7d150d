"""Importing the package has no side effects; its public names are there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import analytics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fresh(code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_starts_no_thread():
    result = run_fresh(
        """
        import json, threading
        before = threading.active_count()
        import analytics
        print(json.dumps({"before": before, "after": threading.active_count()}))
        """
    )
    assert result["after"] == result["before"]


def test_import_adds_no_handler_but_a_null_handler():
    result = run_fresh(
        """
        import json, logging
        root_before = list(logging.getLogger().handlers)
        import analytics
        log = logging.getLogger("analytics")
        print(json.dumps({
            "handlers": [type(h).__name__ for h in log.handlers],
            "null": [isinstance(h, logging.NullHandler) for h in log.handlers],
            "root_changed": logging.getLogger().handlers != root_before,
        }))
        """
    )
    assert all(result["null"]), result["handlers"]
    assert result["root_changed"] is False


def test_module_defaults_and_no_default_client_at_import():
    result = run_fresh(
        """
        import json
        import analytics as a
        print(json.dumps({
            "write_key": a.write_key, "host": a.host, "on_error": a.on_error,
            "debug": a.debug, "stub": a.stub, "max_queue_size": a.max_queue_size,
            "batch_size": a.batch_size, "flush_interval": a.flush_interval,
            "gzip": a.gzip, "timeout": a.timeout, "max_retries": a.max_retries,
            "sync_mode": a.sync_mode, "shutdown_timeout": a.shutdown_timeout,
            "proxies": a.proxies, "default_client": repr(a.default_client),
        }))
        """
    )
    assert result == {
        "write_key": None,
        "host": "https://api.segment.io",
        "on_error": None,
        "debug": False,
        "stub": False,
        "max_queue_size": 10000,
        "batch_size": 100,
        "flush_interval": 0.5,
        "gzip": False,
        "timeout": 15,
        "max_retries": 10,
        "sync_mode": False,
        "shutdown_timeout": 5,
        "proxies": None,
        "default_client": "None",
    }


def test_errors_are_exported_with_their_hierarchy():
    assert issubclass(analytics.ValidationError, ValueError)
    for name in ("QueueFull", "MessageTooLarge", "ClientShutdown", "APIError",
                 "RetriesExhausted"):
        cls = getattr(analytics, name)
        assert issubclass(cls, analytics.DeliveryError), name
        assert issubclass(cls, Exception)
    assert not issubclass(analytics.ValidationError, analytics.DeliveryError)


def test_library_name_and_version_match_the_distribution():
    from importlib.metadata import version

    assert analytics.LIBRARY_NAME == "analytics-client"
    assert version("analytics-client") == analytics.VERSION


def test_logger_is_named_analytics():
    import logging

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("analytics").handlers)
