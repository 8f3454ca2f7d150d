"""HTTP/1.1 over the stdlib's `socket` and `ssl`: kept-alive connections to one origin, a
request written with one `sendall`, the answer's status, headers and (bounded) body read back.
It knows nothing of proxies, redirects or retries: transport.py decides when to use it and
what an answer means. Every failure is an `Http1Error`, never anything else.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import threading
from typing import NamedTuple

MAX_HEAD = 65536  # bytes of one answer's status line and headers, at most
MAX_LINE = 1024  # one line of chunked framing, at most
MAX_HEADERS = 100  # header lines of one answer (interim ones each count on their own)
MAX_INTERIM = 20  # 1xx answers before the final one
MAX_BODY = 1 << 20  # a body longer than this is not read to its end: the connection closes
KEPT_BODY = 4096  # of a body, what is kept (the caller wants 200 characters of it)
MAX_IDLE = 10  # idle connections kept per origin (concurrent sync-mode callers)
RECV_SIZE = 65536
DEFAULT_PORTS = {"http": 80, "https": 443}


class Http1Error(Exception):
    """A request that came to no answer. `kind` names it as requests would:
    ConnectionError, ConnectTimeout, ReadTimeout, WriteTimeout or SSLError."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


class _Unanswered(Http1Error):
    """The connection broke before any byte of the answer came: on a reused connection,
    the server had closed it meanwhile, and the request may go once more on a new one."""


class Origin(NamedTuple):
    scheme: str  # "http" or "https"
    host: str  # lower case; an IPv6 literal without its brackets
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


class Response:
    """A final answer: its status, headers by lower-case name (repeats joined with ", "),
    the first KEPT_BODY bytes of its body, and whether the connection must close after it."""

    __slots__ = ("status", "headers", "body", "will_close")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, will_close: bool):
        self.status = status
        self.headers = headers
        self.body = body
        self.will_close = will_close


def request_head(origin: Origin, target: str, headers: dict[str, str]) -> bytes:
    """A POST's request line and headers up to the value of Content-Length, which each
    request appends (then the blank line and its body). Raises UnicodeError if a header
    cannot be sent as latin-1, as http.client would refuse it too."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {origin.netloc}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if name.lower() not in ("host", "content-length", "accept-encoding", "connection"):
            lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("latin-1")


def tls_context(verify: bool | str, default_bundle: str) -> ssl.SSLContext:
    """A client context as requests builds it: `verify` True -> the default bundle, a path ->
    that CA file or directory, False -> no verification at all. SNI and hostname check on."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        where = default_bundle if verify is True else verify
        if os.path.isdir(where):
            context = ssl.create_default_context(capath=where)
        else:
            context = ssl.create_default_context(cafile=where)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Reader:
    """What has come of one answer on a socket, read in large slices."""

    __slots__ = ("_sock", "_buf", "_pos", "_what", "_timeout", "got")

    def __init__(self, sock: socket.socket, what: str, timeout: float) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._what = what
        self._timeout = timeout
        self.got = False  # any byte of the answer came

    def more(self) -> bool:
        """One more slice into the buffer; False at the end of the stream."""
        try:
            data = self._sock.recv(RECV_SIZE)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            data = b""
        except TimeoutError:
            raise Http1Error(
                "ReadTimeout",
                f"no answer from {self._what} within {self._timeout:g} s (read timed out)",
            ) from None
        except ssl.SSLError as exc:
            raise Http1Error("SSLError", f"reading from {self._what}: {exc}") from None
        except OSError as exc:
            if not self.got:
                raise _Unanswered(
                    "ConnectionError", f"connection to {self._what} broke: {exc}"
                ) from None
            raise Http1Error(
                "ConnectionError", f"answer from {self._what} broke off: {exc}"
            ) from None
        if not data:
            if not self.got:
                raise _Unanswered(
                    "ConnectionError", f"{self._what} closed the connection without an answer"
                )
            return False
        self.got = True
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        return True

    def line(self) -> bytes:
        """One line, its end of line removed; Http1Error if it is too long or never ends."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 1
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) - self._pos > MAX_LINE:
                raise Http1Error(
                    "ConnectionError", f"{self._what} sent a line over {MAX_LINE} bytes"
                )
            if not self.more():
                raise Http1Error("ConnectionError", f"answer from {self._what} ended early")

    def head(self) -> list[str]:
        """The lines of one head up to its blank line (status line and headers, or a
        chunked body's trailer); Http1Error if it is over MAX_HEAD bytes or MAX_HEADERS
        lines, or never ends."""
        scanned = 0  # bytes from the head's start already searched for its end
        while True:
            buf, pos = self._buf, self._pos
            if buf.startswith(b"\r\n", pos):  # an empty head: just its blank line
                self._pos = pos + 2
                return []
            if buf.startswith(b"\n", pos):
                self._pos = pos + 1
                return []
            begin = pos + max(0, scanned - 3)
            end, skip = buf.find(b"\r\n\r\n", begin), 4
            if end < 0 or buf.find(b"\n\n", begin, end) >= 0:  # bare LF line ends: rare
                end, skip = buf.find(b"\n\r\n", begin), 3
                bare = buf.find(b"\n\n", begin, len(buf) if end < 0 else end + 1)
                if bare >= 0:  # which http.client takes too
                    end, skip = bare, 2
            if 0 <= end <= pos + MAX_HEAD:
                text = buf[pos:end].decode("latin-1")
                self._pos = end + skip
                lines = text.split("\r\n")
                if text.count("\n") >= len(lines):  # not all of them CRLF
                    lines = [line.removesuffix("\r") for line in text.split("\n")]
                if len(lines) > MAX_HEADERS + 1:
                    raise Http1Error(
                        "ConnectionError", f"more than {MAX_HEADERS} header lines in the answer"
                    )
                return lines
            scanned = len(buf) - pos
            if buf.count(b"\n", pos) > MAX_HEADERS + 1:
                raise Http1Error(
                    "ConnectionError", f"more than {MAX_HEADERS} header lines in the answer"
                )
            if scanned > MAX_HEAD:
                raise Http1Error(
                    "ConnectionError", f"answer head from {self._what} over {MAX_HEAD} bytes"
                )
            if not self.more():
                raise Http1Error("ConnectionError", f"answer from {self._what} ended early")

    def take(self, n: int, kept: bytearray) -> None:
        """Consume `n` bytes, keeping the start of them in `kept` (up to KEPT_BODY)."""
        while n > 0:
            have = len(self._buf) - self._pos
            if have == 0:
                if not self.more():
                    raise Http1Error("ConnectionError", f"answer from {self._what} ended early")
                continue
            step = min(n, have)
            room = KEPT_BODY - len(kept)
            if room > 0:
                kept += self._buf[self._pos : self._pos + min(room, step)]
            self._pos += step
            n -= step

    def until_close(self, kept: bytearray) -> None:
        """Consume to the end of the stream, or MAX_BODY bytes, whichever comes first."""
        total = 0
        while total < MAX_BODY:
            have = len(self._buf) - self._pos
            if have:
                step = min(have, MAX_BODY - total)
                self.take(step, kept)
                total += step
            elif not self.more():
                return

    @property
    def leftover(self) -> bool:
        return len(self._buf) > self._pos


def _head(reader: _Reader) -> tuple[str, int, dict[str, str]]:
    """One answer's head: its HTTP version, status and headers."""
    lines = reader.head()
    status_line = lines[0] if lines else ""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _digits(parts[1]):
        raise Http1Error("ConnectionError", f"not an HTTP answer: {status_line[:100]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise Http1Error("ConnectionError", f"not an HTTP status: {status_line[:100]!r}")
    return parts[0], status, _headers(lines, 1)


def _headers(lines: list[str], start: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for line in lines[start:]:
        if line.startswith((" ", "\t")) and last:  # obsolete folding: the previous one goes on
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue  # not a header: ignored, as http.client does
        last = name.strip().lower()
        value = value.strip()
        headers[last] = f"{headers[last]}, {value}" if last in headers else value
    return headers


def _read_chunked(reader: _Reader, kept: bytearray) -> bool:
    """The chunks' data into `kept`; True if the body was read to its end (False: it went
    over MAX_BODY and the connection must close)."""
    total = 0
    while True:
        size_text = reader.line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Http1Error("ConnectionError", f"bad chunk size {size_text[:40]!r}") from None
        if size < 0:
            raise Http1Error("ConnectionError", f"bad chunk size {size_text[:40]!r}")
        if size == 0:
            reader.head()  # the trailer, bounded as headers are
            return True
        total += size
        if total > MAX_BODY:
            return False
        reader.take(size, kept)
        if reader.line():
            raise Http1Error("ConnectionError", "chunk not followed by its end of line")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # not "²", which str.isdigit takes


def _length(text: str) -> int:
    if not _digits(text):
        values = {v.strip() for v in text.split(",")}  # repeats that agree are one length
        text = values.pop() if len(values) == 1 else ""
        if not _digits(text):  # repeats that differ, a sign: unframed
            raise Http1Error("ConnectionError", "bad Content-Length in the answer")
    return int(text)


def _answer(reader: _Reader) -> Response:
    for _ in range(MAX_INTERIM + 1):
        version, status, headers = _head(reader)
        if status < 200 and status != 101:
            continue  # 100 Continue and other interim answers: the real one follows
        break
    else:
        raise Http1Error("ConnectionError", f"more than {MAX_INTERIM} interim answers")
    connection = headers.get("connection")
    tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
    will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
    kept = bytearray()
    coding = headers.get("transfer-encoding")
    if status in (101, 204, 304):
        will_close = will_close or status == 101
    elif coding is not None:
        if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            will_close = not _read_chunked(reader, kept) or will_close
        else:
            reader.until_close(kept)
            will_close = True
    elif "content-length" in headers:
        length = _length(headers["content-length"])
        if length > MAX_BODY:
            reader.take(min(length, KEPT_BODY), kept)
            will_close = True
        else:
            reader.take(length, kept)
    else:
        reader.until_close(kept)
        will_close = True
    return Response(status, headers, bytes(kept), will_close or reader.leftover)


class _Connection:
    """One open socket to an origin, in the process that opened it."""

    __slots__ = ("origin", "sock", "pid")

    def __init__(self, origin: Origin, sock: socket.socket) -> None:
        self.origin = origin
        self.sock = sock
        self.pid = os.getpid()

    def dropped(self) -> bool:
        """Readable while idle: the server closed it (or sent what nobody asked for)."""
        try:
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                return True
            if _poll is not None:
                poller = _poll()
                poller.register(self.sock, select.POLLIN)
                return bool(poller.poll(0))
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def send(self, data: bytes, timeout: float) -> None:
        what = self.origin.netloc
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise Http1Error(
                "WriteTimeout", f"sending to {what} took over {timeout:g} s (write timed out)"
            ) from None
        except ssl.SSLError as exc:
            raise _Unanswered("SSLError", f"sending to {what}: {exc}") from None
        except OSError as exc:
            raise _Unanswered("ConnectionError", f"sending to {what} failed: {exc}") from None

    def read(self, timeout: float) -> Response:
        return _answer(_Reader(self.sock, self.origin.netloc, timeout))

    def close(self) -> None:
        # close(), never shutdown(): after a fork the parent may still be using this socket.
        with contextlib.suppress(OSError):
            self.sock.close()


_poll = getattr(select, "poll", None)


class Pending:
    """A request sent, its answer not read yet: `read()` it once."""

    __slots__ = ("_pool", "_conn", "_data", "_reused")

    def __init__(self, pool: Http1Pool, conn: _Connection, data: bytes, reused: bool) -> None:
        self._pool = pool
        self._conn = conn
        self._data = data
        self._reused = reused

    def read(self) -> Response:
        """The answer; Http1Error if none came. On a reused connection that broke before
        any byte of it (the server had closed it), the request goes once more on a new one."""
        pool, conn = self._pool, self._conn
        try:
            response = conn.read(pool.timeout)
        except _Unanswered:
            conn.close()
            if not self._reused:
                raise
            conn = pool._open(conn.origin)
            try:
                conn.send(self._data, pool.timeout)
                response = conn.read(pool.timeout)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        pool._settle(conn, response)
        return response


class Http1Pool:
    """Kept-alive connections for one poster: each request takes an idle one (checked not
    dropped) or opens one, and gives it back after a complete answer. Threads never share a
    connection; after a fork the child drops what it inherited and opens its own."""

    def __init__(self, timeout: float, verify: bool | str, default_bundle: str) -> None:
        self.timeout = timeout
        self._verify = verify
        self._default_bundle = default_bundle
        self._context: ssl.SSLContext | None = None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def request(self, origin: Origin, data: bytes) -> Response:
        """Send `data` (a whole request) and read the answer; Http1Error if none came."""
        return self.send(origin, data).read()

    def send(self, origin: Origin, data: bytes) -> Pending:
        """Send `data` (a whole request) now, on an idle connection or a new one; its
        `Pending` reads the answer. Http1Error if it could not be sent. A send on a reused
        connection that fails goes once more, on a new connection."""
        conn = self._take(origin)
        if conn is not None:
            try:
                conn.send(data, self.timeout)
                return Pending(self, conn, data, True)
            except _Unanswered:
                conn.close()  # the server closed it meanwhile: once more on a new one
            except BaseException:
                conn.close()
                raise
        conn = self._open(origin)
        try:
            conn.send(data, self.timeout)
        except BaseException:
            conn.close()
            raise
        return Pending(self, conn, data, False)

    def _settle(self, conn: _Connection, response: Response) -> None:
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)

    def _take(self, origin: Origin) -> _Connection | None:
        if os.getpid() != self._pid:
            self._forked()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if conn.origin == origin and not conn.dropped():
                return conn
            conn.close()

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and conn.pid == self._pid and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _forked(self) -> None:
        # The lock may have been held by a thread that does not exist here: a new one.
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        self._pid = os.getpid()
        for conn in idle:
            conn.close()

    def _open(self, origin: Origin) -> _Connection:
        what = origin.netloc
        try:
            sock = socket.create_connection((origin.host, origin.port), self.timeout)
        except TimeoutError:
            raise Http1Error(
                "ConnectTimeout", f"connecting to {what} took over {self.timeout:g} s (timed out)"
            ) from None
        except OSError as exc:
            raise Http1Error("ConnectionError", f"cannot connect to {what}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError:
            sock.close()
            raise Http1Error(
                "ConnectTimeout", f"TLS handshake with {what} took over {self.timeout:g} s"
            ) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            sock.close()
            raise Http1Error("SSLError", f"TLS with {what}: {exc}") from None
        except OSError as exc:
            sock.close()
            raise Http1Error("ConnectionError", f"connection to {what} broke: {exc}") from None
        return _Connection(origin, sock)

    def _tls(self) -> ssl.SSLContext:
        context = self._context
        if context is None:  # built on first use, once: loading a CA bundle takes a while
            try:
                context = tls_context(self._verify, self._default_bundle)
            except (OSError, ValueError) as exc:
                raise ssl.SSLError(f"cannot load the CA certificates: {exc}") from None
            self._context = context
        return context

    def close(self) -> None:
        """Close the idle connections; one in use closes when its request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
