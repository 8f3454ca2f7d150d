"""Helpers for the collector and CLI tests: subprocess runs with deadlines, a collector
subprocess that reports its URL, and HTTP calls that ignore proxy settings."""

from __future__ import annotations

import base64
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KEY = "sk-collector-test-Zq8wXv31"
KEY_TOKEN = base64.b64encode(f"{KEY}:".encode()).decode()
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

http = requests.Session()
http.trust_env = False  # the loopback collector is reached directly, whatever the env says


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no proxies, no ANALYTICS_* settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _PROXY_VARS and not k.startswith("ANALYTICS_")
    }
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m analytics ARGS` to completion (bounded by `timeout`)."""
    return subprocess.run(
        [PY, "-m", "analytics", *args],
        capture_output=True,
        text=True,
        input=input,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        cwd=ROOT,
    )


def post(
    url: str, path: str = "/v1/batch", *, body: bytes | None = None, json_body: Any = None,
    key: str | None = KEY, headers: dict[str, str] | None = None,
) -> requests.Response:  # fmt: skip
    """One POST to the collector with Basic auth (`key=None`: no auth header)."""
    auth = (key, "") if key is not None else None
    return http.post(
        url + path, data=body, json=json_body, auth=auth, headers=headers or {}, timeout=10
    )


def get(url: str, path: str) -> Any:
    resp = http.get(url + path, timeout=10)
    resp.raise_for_status()
    return resp.json()


class CollectorProcess:
    """`python -m <module> [collector] --port 0 --db DB ARGS` in a subprocess; `url` comes
    from its first stdout line. Always ended by `stop()` or on leaving the `with` block."""

    def __init__(
        self, db: str | Path, *args: str, command: tuple[str, ...] = ("analytics.collector",),
        startup: float = 20, max_file_bytes: int | None = None,
    ) -> None:  # fmt: skip
        def limit_files() -> None:  # a disk that fails: writes past this size get EFBIG
            if max_file_bytes is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        self.proc = subprocess.Popen(
            [PY, "-m", *command, "--port", "0", "--db", str(db), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=ROOT,
            preexec_fn=limit_files if max_file_bytes is not None else None,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False)),
        ]
        for t in self._readers:
            t.daemon = True
            t.start()
        try:
            first = self._lines.get(timeout=startup)
        except queue.Empty:
            first = None
        if first is None or not first.startswith("listening on http://127.0.0.1:"):
            self.kill()
            raise AssertionError(f"collector did not start: {first!r} {''.join(self.stderr)}")
        self.url = first.split()[-1]

    def _read(self, stream: Any, sink: list[str], announce: bool) -> None:
        for line in stream:
            sink.append(line)
            if announce:
                self._lines.put(line.rstrip("\n"))
        if announce:
            self._lines.put(None)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send `sig`, wait for the exit (bounded), collect the output; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"collector did not exit within {timeout}s of {sig}") from None
        for t in self._readers:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=5)

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
