"""The collector: a local HTTP sink that counts what the libraries deliver.

Run as its own process (`python bench/sink.py`); it prints its port on the first line of
stdout and serves until it is terminated. Any POST path is accepted: the body (gunzipped
if `Content-Encoding: gzip`) must be JSON with a "batch" list; each item is one message,
identified by `messageId` (Segment's format) or `uuid` (PostHog's). Control endpoints
(GET, never counted as traffic):

- `/_stats`: counters since the last reset, and the sink's own CPU seconds.
- `/_reset?delay=S`: zero the counters; delay every later response by S seconds.
- `/_delay?seconds=S`: change the response delay only.
- `/_arrivals?ids=a,b,c`: the arrival time (`time.time()`) of each named message.

Responses are written in one `write` on a socket with Nagle off: a header write followed
by a body write would make each request wait out the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OK_BODY = b'{"status": 1, "success": true}'


def cpu_seconds() -> float:
    """User plus system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tally:
    """What arrived since the last reset; every method is thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delay = 0.0
        self.reset(0.0)

    def reset(self, delay: float) -> None:
        with self.lock:
            self.delay = delay
            self.messages = 0
            self.requests = 0
            self.wire_bytes = 0
            self.json_bytes = 0
            self.bad_requests = 0
            self.gzipped_requests = 0
            self.paths: dict[str, int] = {}
            self.arrivals: dict[str, float] = {}
            self.first_arrival: float | None = None
            self.last_arrival: float | None = None
            self.cpu_start = cpu_seconds()
            self.wall_start = time.monotonic()

    def record(
        self, path: str, wire: int, size: int, ids: list[str], gzipped: bool, now: float
    ) -> None:
        with self.lock:
            self.requests += 1
            self.messages += len(ids)
            self.wire_bytes += wire
            self.json_bytes += size
            self.gzipped_requests += gzipped
            self.paths[path] = self.paths.get(path, 0) + 1
            arrivals = self.arrivals
            for message_id in ids:
                arrivals.setdefault(message_id, now)
            if self.first_arrival is None:
                self.first_arrival = now
            self.last_arrival = now

    def bad(self) -> None:
        with self.lock:
            self.bad_requests += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": self.messages,
                "unique": len(self.arrivals),
                "requests": self.requests,
                "wire_bytes": self.wire_bytes,
                "json_bytes": self.json_bytes,
                "gzipped_requests": self.gzipped_requests,
                "bad_requests": self.bad_requests,
                "paths": dict(self.paths),
                "first_arrival": self.first_arrival,
                "last_arrival": self.last_arrival,
                "cpu_s": cpu_seconds() - self.cpu_start,
                "wall_s": time.monotonic() - self.wall_start,
                "delay": self.delay,
            }

    def arrivals_of(self, ids: list[str]) -> dict[str, float | None]:
        with self.lock:
            return {i: self.arrivals.get(i) for i in ids}


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    tally: Tally


class Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1; Nagle off; one write per response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SinkServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Quiet: a log line per request would cost more than the request."""

    def _reply(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {self.responses.get(status, ('OK',))[0]}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.wfile.write(head.encode("latin-1") + body)
        except OSError:  # the client went away (e.g. a worker that exited mid-delay)
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _head_bytes(self) -> int:
        """Bytes of the request line and headers, as sent."""
        size = len(self.requestline) + 4  # CRLF after the line, CRLF closing the headers
        for key, value in self.headers.items():
            size += len(key) + len(value) + 4
        return size

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        tally = self.server.tally
        raw = self._read_body()
        now = time.time()
        gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
        try:
            body = gzip.decompress(raw) if gzipped else raw
            doc = json.loads(body)
            batch = doc.get("batch") if isinstance(doc, dict) else doc
            if not isinstance(batch, list):
                raise ValueError("no batch list")
            ids = [str(m.get("messageId") or m.get("uuid")) for m in batch]
        except (ValueError, OSError, AttributeError, EOFError):
            tally.bad()
            self._reply(400, b'{"error": "bad batch"}')
            return
        path = urlsplit(self.path).path
        tally.record(path, self._head_bytes() + len(raw), len(body), ids, gzipped, now)
        delay = tally.delay
        if delay > 0:
            time.sleep(delay)
        self._reply(200, OK_BODY)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        tally = self.server.tally
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        result: Any
        if url.path == "/_stats":
            result = tally.snapshot()
        elif url.path == "/_reset":
            tally.reset(float(query.get("delay", ["0"])[0]))
            result = {"ok": True}
        elif url.path == "/_delay":
            with tally.lock:
                tally.delay = float(query.get("seconds", ["0"])[0])
            result = {"ok": True}
        elif url.path == "/_arrivals":
            ids = [i for i in query.get("ids", [""])[0].split(",") if i]
            result = tally.arrivals_of(ids)
        else:
            self._reply(404, b'{"error": "not found"}')
            return
        self._reply(200, json.dumps(result).encode())


class SinkProcess:
    """The sink as a child process of the bench: start, talk to it, stop it (by its pid)."""

    def __init__(self, python: str, start_timeout: float = 15) -> None:
        self.proc = subprocess.Popen(
            [python, __file__], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        ready = threading.Event()
        port: list[int] = []

        def read_port() -> None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.strip().isdigit():
                port.append(int(line))
            ready.set()

        threading.Thread(target=read_port, daemon=True).start()
        if not ready.wait(start_timeout) or not port:
            self.stop()
            raise RuntimeError("the sink did not start")
        self.url = f"http://127.0.0.1:{port[0]}"

    def get(self, path: str) -> Any:
        """A control request; its JSON answer."""
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self, delay: float = 0.0) -> None:
        self.get(f"/_reset?delay={delay}")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/_stats")
        return result

    def arrivals(self, ids: list[str]) -> dict[str, float | None]:
        result: dict[str, float | None] = self.get("/_arrivals?ids=" + ",".join(ids))
        return result

    def stop(self) -> None:
        """Terminate the process we started; kill it if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def main() -> None:
    """Serve on 127.0.0.1 at a free port; print the port; run until terminated."""
    server = SinkServer(("127.0.0.1", 0), Handler)
    server.tally = Tally()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
