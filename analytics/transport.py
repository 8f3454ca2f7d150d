"""HTTP for every protocol's sender: one POST over a kept-alive connection, never raising.
Holds the headers, gzip and proxies, and scrubs secrets from what it reports. It knows
nothing of retries: it says what happened (a `Reply`) and `retry.py` decides. It holds the
redirect rule: only 307/308 to the same origin are followed, with the body. It chooses the
way: http1.py straight to the origin, or a `requests.Session` when a proxy or a client
certificate applies.
"""

from __future__ import annotations

import gzip as gzip_lib
from collections.abc import Callable, Sequence
from urllib.parse import urljoin, urlsplit

import requests
import requests.utils

from .http1 import Http1Error, Http1Pool, Origin, Pending, request_head
from .protocols import Reply
from .retry import parse_retry_after
from .version import LIBRARY_NAME, VERSION

# Redirects that keep the method and the body; 301/302/303 would turn the POST into a GET.
FOLLOWED = frozenset({307, 308})
MAX_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: an origin of its own
        port = -1
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), default if port is None else port


def redirect_target(url: str, status: int, location: str | None) -> str | None:
    """Where a redirect answer to a POST to `url` may be followed: a 307 or 308 to the same
    origin (scheme, host, port), so that the body and the key go nowhere else. None: not
    followed, and so a refusal (the status, not retried)."""
    if status not in FOLLOWED or not location:
        return None
    target = urljoin(url, location)
    return target if _origin(target) == _origin(url) else None


class _Target:
    """One URL's request, prepared once: by requests (its URL and headers normalised and
    checked), and for the direct way its origin and request head (None: requests sends)."""

    __slots__ = ("prepared", "origin", "head")

    def __init__(
        self, prepared: requests.PreparedRequest, origin: Origin | None, head: bytes | None
    ) -> None:
        self.prepared = prepared
        self.origin = origin
        self.head = head


class HttpPoster:
    """POSTs bodies over kept-alive connections; every failure is a Reply.

    Straight to the origin (http1.py: one `sendall` per request, a fifth of requests' CPU)
    when no proxy applies to the URL and no client certificate is set; otherwise through
    `requests`' adapter, as before. The environment (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE...) is read once, here, not on every request: that lookup was a
    tenth of the library's CPU per message.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        secrets: Sequence[str],
        timeout: float,
        proxies: dict[str, str] | None,
        gzip: bool,
    ) -> None:
        self.timeout = timeout
        self.gzip = gzip
        self._secrets = tuple(s for s in secrets if s)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"{LIBRARY_NAME}/{VERSION}",
            **headers,
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._session = requests.Session()
        env = self._session.merge_environment_settings(base_url, proxies or {}, None, None, None)
        self._session.trust_env = False
        self._proxies = env["proxies"]
        self._verify: bool | str = True if env["verify"] is None else env["verify"]
        self._cert = env["cert"]
        self._direct = Http1Pool(timeout, self._verify, requests.utils.DEFAULT_CA_BUNDLE_PATH)
        # A prepared request per URL; each post copies it and swaps the body in.
        self._templates: dict[str, _Target] = {}

    def post(self, url: str, body: bytes) -> Reply:
        """Send one body; any failure comes back as an Reply, never as an exception.
        A 307/308 to the same origin is followed (at most MAX_REDIRECTS hops), with the body;
        any other redirect comes back as it is, a refusal."""
        return self.start(url, body)()

    def start(self, url: str, body: bytes) -> Callable[[], Reply]:
        """`post` in two halves: send the body now, and return what reads its reply (call it
        once; it never raises), so that the caller may work while the server answers. On
        the direct way the request is written before this returns; through requests (a
        proxy) all of the post happens here."""
        data = gzip_lib.compress(body, compresslevel=6) if self.gzip else body
        try:
            template = self._templates.get(url)
            if template is None:
                template = self._target(url)
                self._templates[url] = template
            if template.origin is None:
                reply = self._posted(template, data, None)
                return lambda: reply
            pending = self._direct.send(template.origin, self._request(template, data))
        except Exception as exc:  # Http1Error, or a URL requests refuses to prepare, say
            failed = self._failure(exc)
            return lambda: failed
        return lambda: self._posted(template, data, pending)

    def _posted(self, template: _Target, data: bytes, pending: Pending | None) -> Reply:
        """The reply to `data` posted to `template` (`pending`: sent already, to be read),
        the redirects to follow followed."""
        try:
            for _ in range(MAX_REDIRECTS):
                if template.origin is not None:
                    if pending is None:
                        pending = self._direct.send(template.origin, self._request(template, data))
                    reply, location = self._answered(template, pending)
                    pending = None
                else:
                    reply, location = self._send(template.prepared, data)
                if location is None:
                    return reply
                # Not cached: a server could send each batch to a URL of its own.
                template = self._target(location)
        except Exception as exc:
            return self._failure(exc)
        return Reply(reply.status, detail=f"more than {MAX_REDIRECTS} redirects; not followed")

    def _failure(self, exc: Exception) -> Reply:
        kind = exc.kind if isinstance(exc, Http1Error) else type(exc).__name__
        return Reply(None, detail=self.scrub(f"{kind}: {exc}"))

    def _target(self, url: str) -> _Target:
        """The request to `url`, prepared; the direct way's head too when it may go direct."""
        prepared = requests.Request("POST", url, headers=self._headers).prepare()
        parts = urlsplit(prepared.url or "")
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or self._cert is not None:
            return _Target(prepared, None, None)
        if requests.utils.select_proxy(parts.geturl(), self._proxies) is not None:
            return _Target(prepared, None, None)
        try:
            port = parts.port
        except ValueError:
            return _Target(prepared, None, None)
        origin = Origin(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80))
        try:
            head = request_head(origin, prepared.path_url, dict(prepared.headers))
        except UnicodeError:  # a header http.client would not send either: requests says so
            return _Target(prepared, None, None)
        return _Target(prepared, origin, head)

    @staticmethod
    def _request(template: _Target, data: bytes) -> bytes:
        assert template.head is not None
        return b"".join((template.head, str(len(data)).encode(), b"\r\n\r\n", data))

    def _answered(self, template: _Target, pending: Pending) -> tuple[Reply, str | None]:
        """The answer to a request sent straight to the origin (http1.py); as `_send`."""
        try:
            answer = pending.read()
        except Http1Error as exc:
            return self._failure(exc), None
        status = answer.status
        headers = answer.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        location = headers.get("location")
        target = redirect_target(str(template.prepared.url), status, location)
        if 300 <= status <= 399 and target is None:
            detail = self.scrub(f"redirect to {(location or '')[:200]!r} not followed")
        else:
            text = "" if 200 <= status <= 299 else answer.body.decode("utf-8", "replace")
            detail = self.scrub(text[:200])
        return Reply(status, retry_after, detail), target

    def _send(self, template: requests.PreparedRequest, data: bytes) -> tuple[Reply, str | None]:
        """One request; the reply, and where to follow it if it is a redirect to follow."""
        request = template.copy()
        request.body = data
        request.headers["Content-Length"] = str(len(data))
        try:
            # Straight to the session's adapter (its connection pool, proxies and TLS): what
            # `Session.send` adds (hooks, cookie jars, redirects, timing) is nothing we use,
            # and it was a fifth of the CPU of a request. The redirect rule is ours anyway.
            resp = self._session.get_adapter(request.url or "").send(
                request,
                timeout=self.timeout,
                verify=self._verify,
                cert=self._cert,
                proxies=self._proxies,
            )
            resp.content  # noqa: B018  read to the end: the connection goes back to the pool
        except Exception as exc:  # requests' errors, or a broken adapter or proxy setting
            return Reply(None, detail=self.scrub(f"{type(exc).__name__}: {exc}")), None
        try:
            status = resp.status_code
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            location = resp.headers.get("Location")
            target = redirect_target(str(request.url), status, location)
            if 300 <= status <= 399 and target is None:
                detail = self.scrub(f"redirect to {(location or '')[:200]!r} not followed")
            else:
                detail = "" if 200 <= status <= 299 else self.scrub(resp.text[:200])
        finally:
            resp.close()
        return Reply(status, retry_after, detail), target

    def scrub(self, text: str) -> str:
        """No error text ever carries a secret, even if a server echoes it."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._direct.close()
        self._session.close()
