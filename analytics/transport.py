"""HTTP to a Segment-compatible collector: one POST of one batch, never raising.

Holds a kept-alive `requests.Session`, the auth and User-Agent headers, gzip and proxies.
It knows nothing of retries: it reports what happened and `retry.py` decides.
`Sender` is the seam the rest of the library sees, so other protocols can plug in.
"""

from __future__ import annotations

import base64
import gzip as gzip_lib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from . import batch as batching
from .encode import encode
from .retry import parse_retry_after
from .version import LIBRARY_NAME, VERSION

DEFAULT_HOST = "https://api.segment.io"


@dataclass(frozen=True)
class Outcome:
    """What one request came to: a status, or an error with no status."""

    status: int | None
    retry_after: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299


class Sender(Protocol):
    """A wire protocol: encodes one message on the caller's thread (raising
    ValidationError for what the protocol cannot carry), and sends encoded messages in
    one request, saying what came of it."""

    def encode(self, message: dict[str, Any]) -> bytes: ...

    def send(self, items: Sequence[bytes]) -> Outcome: ...

    def close(self) -> None: ...


class Transport:
    """Posts batches of Segment-spec messages to `{host}/v1/batch`."""

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        timeout: float = 15,
        proxies: dict[str, str] | None = None,
        gzip: bool = False,
    ) -> None:
        self.url = host.rstrip("/") + "/v1/batch"
        self.timeout = timeout
        self.proxies = proxies
        self.gzip = gzip
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._secrets = tuple(s for s in (write_key, token) if s)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"{LIBRARY_NAME}/{VERSION}",
            "Authorization": f"Basic {token}",
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._session = requests.Session()
        # The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) is read once here,
        # not on every request: that lookup was a tenth of the library's CPU per message.
        env = self._session.merge_environment_settings(self.url, proxies or {}, None, None, None)
        self._session.trust_env = False
        self._proxies = env["proxies"]
        self._verify = env["verify"]
        self._cert = env["cert"]
        # Prepared once; each send copies it and swaps the body in.
        self._template = requests.Request("POST", self.url, headers=self._headers).prepare()

    def __repr__(self) -> str:
        return f"<Transport url={self.url!r} gzip={self.gzip}>"

    encode = staticmethod(encode)

    def send(self, items: Sequence[bytes]) -> Outcome:
        """Send encoded messages as one batch, `sentAt` now."""
        return self.post(batching.body(items))

    def post(self, body: bytes) -> Outcome:
        """Send one body; any failure comes back as an Outcome, never as an exception."""
        request = self._template.copy()
        request.body = gzip_lib.compress(body, compresslevel=6) if self.gzip else body
        request.headers["Content-Length"] = str(len(request.body))
        try:
            resp = self._session.send(
                request,
                timeout=self.timeout,
                proxies=self._proxies,
                verify=self._verify,
                cert=self._cert,
            )
        except requests.RequestException as exc:
            return Outcome(None, detail=self._scrub(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a broken adapter or proxy setting must not kill the consumer
            return Outcome(None, detail=self._scrub(f"{type(exc).__name__}: {exc}"))
        try:
            status = resp.status_code
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            detail = "" if 200 <= status <= 299 else self._scrub(resp.text[:200])
        finally:
            resp.close()
        return Outcome(status, retry_after, detail)

    def _scrub(self, text: str) -> str:
        """No error text ever carries the write key, even if a server echoes it."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._session.close()
