"""The collector's HTTP side: a threaded server on 127.0.0.1 that takes Segment-format
batches and A-Track requests, checks auth, size and spec, commits to the `Store`, answers
the read API, and serves the live page (`GET /`, see `page`)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import socket
import sqlite3
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, TextIO
from urllib.parse import parse_qs, urlsplit

from ..batch import MAX_BATCH_BYTES
from ..version import VERSION
from . import page
from .store import KINDS, MAX_TIMELINE_MINUTES, PROTOCOLS, Rejection, Store, StoreError
from .validate import ATRACK_TYPES, MESSAGE_TYPES, check, check_atrack

BATCH_PATH = "/v1/batch"
SINGLE_PATHS = {f"/v1/{kind}": kind for kind in MESSAGE_TYPES}
ATRACK_PATHS = {f"/{kind}": kind for kind in ATRACK_TYPES}  # /init, /attributes, /event
ATRACK_KEY_HEADER = "x-a-track-key"
DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds a whole request (its line, headers and body) may take to arrive, from its first
byte: a client that drips bytes is cut off after this, whatever each read takes."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# A gzipped body of at most MAX_BATCH_BYTES can be a little larger than its content.
MAX_RAW_BYTES = MAX_BATCH_BYTES + 4096
_JSON_TYPE = "application/json"


def key_hash(write_key: str) -> str:
    """The short fingerprint that stands for a write key in the store: never the key."""
    return hashlib.sha256(write_key.encode("utf-8")).hexdigest()[:12]


def basic_auth_key(header: str | None) -> str | None:
    """The write key (user name) of a Basic `Authorization` header; None if absent or bad."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key = decoded.partition(":")[0]
    return key or None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass
class Reply:
    """An answer to one request: status, JSON payload (or a `body` of `content_type`), and
    whether to close the connection."""

    status: int
    payload: Any
    close: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    content_type: str = _JSON_TYPE


def _error(status: int, message: str, close: bool = False) -> Reply:
    return Reply(status, {"success": False, "error": message}, close)


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side with a whole-request deadline: waiting for a request's
    first byte may take the idle timeout; from that byte on, the request has `limit`
    seconds in all (TimeoutError after)."""

    def __init__(self, sock: socket.socket, idle: float | None, limit: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle = idle
        self.limit = limit
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            wait = self._idle
        else:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError(f"the request took longer than {self.limit:g} s to arrive")
        self._sock.settimeout(wait)
        try:
            n = self._sock.recv_into(buffer)
        except TimeoutError:
            if self.deadline is None:
                raise
            raise TimeoutError(f"the request took longer than {self.limit:g} s to arrive") from None
        finally:
            self._sock.settimeout(self._idle)  # writing the answer has the idle timeout
        if n and self.deadline is None:
            self.deadline = time.monotonic() + self.limit
        return n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"analytics-collector/{VERSION}"
    timeout = 120  # an idle kept-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # else each reply waits ~40 ms on the client's delayed ACK
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # read through the deadline instead
        self._reader = _DeadlineReader(
            self.connection, self.timeout, self.server.collector.request_timeout
        )
        self.rfile = io.BufferedReader(self._reader)
        self.server.collector._opened(self.connection)

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # each request's deadline starts at its first byte
        super().handle_one_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("X-Content-Type-Options", "nosniff")  # every answer, errors too

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.collector._closed(self.connection)

    def do_POST(self) -> None:
        self.server.collector._serve(self, self.server.collector._post)

    def do_GET(self) -> None:
        self.server.collector._serve(self, self.server.collector._get)

    do_HEAD = do_GET  # the same headers, no body (see Collector._send)

    def _not_allowed(self) -> None:
        self.server.collector._serve(self, lambda h: _error(405, "method not allowed", True))

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the collector logs each reply itself, with what it stored

    def log_message(self, format: str, *args: Any) -> None:
        self.server.collector._log(f"{self.address_string()} {format % args}")


class Collector:
    """A local Segment-compatible collector backed by SQLite.

    `start()` serves in a background thread; `url` is where to send; `stop()` ends the
    server and closes the database. Also a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        db: str = ":memory:",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        write_keys: Iterable[str] | None = None,
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: float | None = None,
        delay_ms: float = 0,
        quiet: bool = True,
        log: TextIO | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if fail_first < 0 or delay_ms < 0 or (retry_after is not None and retry_after < 0):
            raise ValueError("fail_first, retry_after and delay_ms must be >= 0")
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, not {request_timeout}")
        self.request_timeout = float(request_timeout)
        if not 100 <= fail_status <= 599:
            raise ValueError(f"fail_status must be an HTTP status, not {fail_status}")
        self.host = host
        self.port = port
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.delay = delay_ms / 1000.0
        self.quiet = quiet
        self._log_stream = log
        keys = [k for k in (write_keys or ()) if k]
        self._allowed = [hashlib.sha256(k.encode("utf-8")).digest() for k in keys]
        self.store = Store(db)
        self._cond = threading.Condition()
        self._posts = 0
        self._statuses: Counter[int] = Counter()
        self._in_flight = 0
        self._closing = False
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "not started"
        return f"<Collector {where} db={self.store.path!r}>"

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Collector:
        """Listen (binding `host`:`port`; port 0 picks a free one) and serve in a thread."""
        if self._httpd is not None or self._closing:
            raise RuntimeError("a Collector can be started once")
        httpd = _Server((self.host, self.port), self)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="analytics-collector",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The base URL to give a client as `host`."""
        if self._httpd is None:
            raise RuntimeError("the collector is not started")
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, let requests in flight finish (up to `timeout` s), close every
        connection and the database. Safe to call twice."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closing and self._httpd is None:
                return
            self._closing = True
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        self.store.close()

    # -- reading, in process --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Stored events by type, rejected messages, and POSTs answered, by status."""
        counts = self.store.counts()
        with self._cond:
            by_status = {str(k): v for k, v in sorted(self._statuses.items())}
            total = sum(self._statuses.values())
        counts["requests"] = {"total": total, "by_status": by_status}
        return counts

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored messages, newest first; see `Store.events`."""
        return self.store.events(**filters)

    # -- connection bookkeeping (called by the handler) -----------------------------------

    def _opened(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections[conn] = threading.current_thread()

    def _closed(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.pop(conn, None)

    def _log(self, line: str) -> None:
        if self.quiet:
            return
        stream = self._log_stream or sys.stderr
        with contextlib.suppress(Exception):
            stream.write(line + "\n")
            stream.flush()

    # -- requests -------------------------------------------------------------------------

    def _serve(self, h: _Handler, route: Callable[[_Handler], Reply]) -> None:
        with self._cond:
            closing = self._closing
            if not closing:
                self._in_flight += 1
        if closing:
            self._send(h, _error(503, "the collector is shutting down", close=True))
            return
        try:
            try:
                reply = route(h)
            except StoreError as exc:
                reply = _error(503, str(exc))
            except Exception as exc:  # a bug must cost one request, not the server
                self._log(f"internal error: {type(exc).__name__}: {exc}")
                reply = _error(500, "internal error of the collector", close=True)
            self._send(h, reply)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _send(self, h: _Handler, reply: Reply) -> None:
        if h.command == "POST":
            with self._cond:
                self._statuses[reply.status] += 1
        self._log_reply(h, reply)
        data = reply.body if reply.body is not None else _json_bytes(reply.payload)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers:
                h.send_header(name, value)
            if reply.close:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    def _log_reply(self, h: _Handler, reply: Reply) -> None:
        if self.quiet:
            return
        payload = reply.payload
        if isinstance(payload, dict) and "accepted" in payload:
            note = (
                f"accepted={payload['accepted']} duplicates={payload['duplicates']}"
                f" rejected={len(payload['rejected'])}"
            )
        elif isinstance(payload, dict) and "error" in payload:
            note = str(payload["error"])
        else:
            note = ""
        self._log(f"{h.address_string()} {h.command} {h.path} {reply.status} {note}".rstrip())

    def _post(self, h: _Handler) -> Reply:
        path = urlsplit(h.path).path
        atrack = ATRACK_PATHS.get(path)
        if path != BATCH_PATH and path not in SINGLE_PATHS and atrack is None:
            return _error(404, f"no such endpoint: POST {path}", close=True)
        raw = self._read_body(h)
        if isinstance(raw, Reply):
            return raw
        with self._cond:
            self._posts += 1
            n = self._posts
        if self.delay:
            time.sleep(self.delay)  # fault injection: a slow collector
        if n <= self.fail_first:
            reply = _error(self.fail_status, f"injected failure {n} of {self.fail_first}")
            if self.retry_after is not None:
                reply.headers.append(("Retry-After", f"{self.retry_after:g}"))
            return reply
        if atrack is not None:
            key = h.headers.get(ATRACK_KEY_HEADER) or None
            if key is None or not self._allowed_key(key):
                return _error(401, f"missing or unknown key (the {ATRACK_KEY_HEADER} header)")
        else:
            key = basic_auth_key(h.headers.get("Authorization"))
            if key is None or not self._allowed_key(key):
                reply = _error(401, "missing or unknown write key (HTTP Basic auth, key as user)")
                reply.headers.append(("WWW-Authenticate", 'Basic realm="analytics-collector"'))
                return reply
        body = _decode(raw, h.headers.get("Content-Encoding"))
        if isinstance(body, Reply):
            return body
        data = _parse_json(body)
        if isinstance(data, Reply):
            return data
        if atrack is not None:
            return self._store_atrack(key_hash(key), atrack, data)
        items = _messages(data, SINGLE_PATHS.get(path))
        if isinstance(items, Reply):
            return items
        return self._store(key_hash(key), items, SINGLE_PATHS.get(path))

    def _read_body(self, h: _Handler) -> bytes | Reply:
        if h.headers.get("Transfer-Encoding"):
            return _error(411, "send the body with a Content-Length", close=True)
        lengths = {v.strip() for v in h.headers.get_all("Content-Length") or ()}
        if not lengths:
            return _error(411, "Content-Length is required", close=True)
        if len(lengths) > 1:
            return _error(400, "conflicting Content-Length headers", close=True)
        length_text = lengths.pop()
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            return _error(400, f"bad Content-Length {length_text!r}", close=True)
        if length > MAX_RAW_BYTES:
            return _too_large(length, close=True)
        try:
            raw = h.rfile.read(length)
        except TimeoutError as exc:
            return _error(408, str(exc), close=True)
        if len(raw) < length:
            return _error(400, "the body ended before Content-Length bytes", close=True)
        return raw

    def _allowed_key(self, key: str) -> bool:
        if not self._allowed:
            return True
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return any(hmac.compare_digest(digest, allowed) for allowed in self._allowed)

    def _store(self, source: str, items: list[Any], kind: str | None) -> Reply:
        accepted: list[dict[str, Any]] = []
        rejected: list[Rejection] = []
        for index, item in enumerate(items):
            if kind is not None and item.get("type") != kind:
                reason: str | None = (
                    f"type {item.get('type')!r} does not match the endpoint /v1/{kind}"
                )
            else:
                try:
                    reason = check(item)
                except Exception as exc:  # one odd message costs itself, not its batch
                    reason = f"message could not be checked: {type(exc).__name__}"
            if reason is not None:
                rejected.append(Rejection(index, item, reason))
                continue
            if item.get("messageId") is None:  # as Segment does: the collector names it
                item = {**item, "messageId": str(uuid.uuid4())}
            accepted.append(item)
        try:
            duplicates = self.store.record(source, accepted, rejected)
        except (StoreError, sqlite3.Error) as exc:
            return _error(503, f"could not store the messages: {exc}")
        return Reply(
            200,
            {
                "success": True,
                "accepted": len(accepted),
                "duplicates": duplicates,
                "rejected": [
                    {"index": r.index, "messageId": r.message_id, "reason": r.reason}
                    for r in rejected
                ],
            },
        )

    def _store_atrack(self, source: str, kind: str, payload: Any) -> Reply:
        """One A-Track request: stored as received, plus the `protocol`, `type` and
        `messageId` the collector gives it (A-Track sends no id); 400 with the reason (and
        kept in /v1/rejected) when it is not what the library sends."""
        try:
            reason = check_atrack(kind, payload)
        except Exception as exc:
            reason = f"body could not be checked: {type(exc).__name__}"
        given = {"protocol": "atrack", "type": kind, "messageId": str(uuid.uuid4())}
        if reason is not None:
            accepted, rejected = [], [Rejection(0, payload, reason)]
        else:
            accepted = [{**given, **{k: v for k, v in payload.items() if k not in given}}]
            rejected = []
        try:
            self.store.record(source, accepted, rejected, protocol="atrack")
        except (StoreError, sqlite3.Error) as exc:
            return _error(503, f"could not store the message: {exc}")
        if reason is not None:
            return _error(400, reason)
        return Reply(200, {"success": True, "messageId": given["messageId"]})

    def _get(self, h: _Handler) -> Reply:
        url = urlsplit(h.path)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path == "/":
            return self._page(query)
        if page.is_asset(url.path):
            return self._asset(url.path)
        if url.path == "/health":
            return Reply(200, {"service": "analytics-collector", "version": VERSION})
        if url.path == "/v1/stats":
            return Reply(200, self.stats())
        if url.path == "/v1/timeline":
            return self._timeline(query)
        allowed = {
            "/v1/events": (
                "type",
                "user_id",
                "anonymous_id",
                "event",
                "message_id",
                "protocol",
                "limit",
            ),
            "/v1/rejected": ("limit",),
        }
        if url.path not in allowed:
            return _error(404, f"no such endpoint: GET {url.path}")
        params: dict[str, str] = {}
        for name, values in query.items():
            if name not in allowed[url.path]:
                return _error(400, f"unknown parameter {name!r}")
            params[name] = values[-1]
        limit = _limit(params.pop("limit", None))
        if isinstance(limit, Reply):
            return limit
        try:
            if url.path == "/v1/rejected":
                return Reply(200, self.store.rejections(limit))
            kind = params.get("type")
            if kind is not None and kind not in KINDS:
                return _error(400, f"type must be one of {', '.join(KINDS)}")
            protocol = params.get("protocol")
            if protocol is not None and protocol not in PROTOCOLS:
                return _error(400, f"protocol must be one of {', '.join(PROTOCOLS)}")
            return Reply(200, self.store.events(limit=limit, **params))
        except StoreError as exc:
            return _error(503, str(exc))

    def _page(self, query: dict[str, list[str]]) -> Reply:
        """The live page, rendered with the current totals, events and rejections."""
        view = page.View.from_query(query)
        try:
            html = page.render(
                self.stats(),
                self.store.events(limit=page.LIMIT, **view.filters),
                self.store.rejections(page.LIMIT),
                view,
            )
        except StoreError as exc:
            return _error(503, str(exc))
        body = html.encode("utf-8", "backslashreplace")  # a lone surrogate shows as \ud800
        return Reply(
            200, None, headers=page.security_headers(), body=body, content_type=page.HTML_TYPE
        )

    def _asset(self, path: str) -> Reply:
        """One of the page's static files (`/app.js`, `/app.css`, `/favicon.svg`)."""
        try:
            content_type, data = page.asset(path)
        except OSError as exc:
            return _error(500, f"the page's static files are missing from this install: {exc}")
        return Reply(
            200, None, headers=page.security_headers(), body=data, content_type=content_type
        )

    def _timeline(self, query: dict[str, list[str]]) -> Reply:
        """`GET /v1/timeline?minutes=N`: events per minute received, by type;
        `?by=event`: by the events' own time (`Store.timeline`)."""
        for name in query:
            if name not in ("minutes", "by"):
                return _error(400, f"unknown parameter {name!r}")
        by = (query.get("by") or ["received"])[-1]
        if by not in ("received", "event"):
            return _error(400, 'by must be "received" or "event"')
        try:
            minutes = int((query.get("minutes") or ["60"])[-1])
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= MAX_TIMELINE_MINUTES:
            return _error(400, f"minutes must be an integer from 1 to {MAX_TIMELINE_MINUTES}")
        try:
            return Reply(200, self.store.timeline(minutes, by=by))
        except StoreError as exc:
            return _error(503, str(exc))


def _json_bytes(payload: Any) -> bytes:
    """An answer's JSON; a string that is not valid Unicode is sent as its JSON escape."""
    try:
        return json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(payload).encode("ascii") + b"\n"


def _parse_json(body: bytes) -> Any:
    """The decoded body, or a 400 Reply: not UTF-8, not strict JSON, or nested too deep."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    except RecursionError:
        return _error(400, "body is not valid JSON here: it is nested too deeply")


def _limit(text: str | None) -> int | Reply:
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return limit


def _too_large(size: int | None, close: bool = False) -> Reply:
    what = f"{size} bytes" if size is not None else "over the limit"
    return _error(413, f"body is {what}; the limit is {MAX_BATCH_BYTES} bytes", close)


def _decode(raw: bytes, encoding: str | None) -> bytes | Reply:
    """The body without its Content-Encoding, never more than the limit (gzip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error as exc:
            return _error(400, f"body is not valid gzip: {exc}")
        if len(body) > MAX_BATCH_BYTES:
            return _too_large(None)
        if not inflater.eof:
            return _error(400, "gzip body is truncated")
    elif encoding == "identity":
        body = raw
    else:
        return _error(415, f"Content-Encoding {encoding!r} is not supported (use gzip)")
    if len(body) > MAX_BATCH_BYTES:
        return _too_large(len(body))
    return body


def _messages(data: Any, kind: str | None) -> list[Any] | Reply:
    """The messages of a decoded body: a batch's list, or one message for /v1/<type>."""
    if kind is not None:
        if not isinstance(data, dict):
            return _error(400, "body must be a JSON object (one message)")
        return [data if data.get("type") is not None else {**data, "type": kind}]
    if not isinstance(data, dict) or not isinstance(data.get("batch"), list):
        return _error(400, 'body must be a JSON object with a "batch" array')
    shared = {}
    for name in ("context", "integrations"):
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            return _error(400, f"the batch's {name} must be a JSON object")
        if value:
            shared[name] = value
    if not shared:
        return list(data["batch"])
    return [_merged(item, shared) for item in data["batch"]]


def _merged(item: Any, shared: Mapping[str, dict[str, Any]]) -> Any:
    """A message with the batch-level context/integrations under its own (its own win)."""
    if not isinstance(item, dict):
        return item
    out = dict(item)
    for name, value in shared.items():
        own = item.get(name)
        if own is None:
            out[name] = dict(value)
        elif isinstance(own, dict):
            out[name] = {**value, **own}
    return out
