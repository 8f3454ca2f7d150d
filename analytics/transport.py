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
from .options import DEFAULTS
from .retry import parse_retry_after
from .version import LIBRARY_NAME, VERSION

DEFAULT_HOST = DEFAULTS.host


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


class HttpPoster:
    """POSTs bodies over one kept-alive `requests.Session`; every failure is an Outcome.

    The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) is read once, here, not
    on every request: that lookup was a tenth of the library's CPU per message.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        secrets: Sequence[str] = (),
        timeout: float = DEFAULTS.timeout,
        proxies: dict[str, str] | None = None,
        gzip: bool = False,
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
        self._verify = env["verify"]
        self._cert = env["cert"]
        # A prepared request per URL; each post copies it and swaps the body in.
        self._templates: dict[str, requests.PreparedRequest] = {}

    def post(self, url: str, body: bytes) -> Outcome:
        """Send one body; any failure comes back as an Outcome, never as an exception."""
        template = self._templates.get(url)
        if template is None:
            template = requests.Request("POST", url, headers=self._headers).prepare()
            self._templates[url] = template
        request = template.copy()
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
        except Exception as exc:  # requests' errors, or a broken adapter or proxy setting
            return Outcome(None, detail=self.scrub(f"{type(exc).__name__}: {exc}"))
        try:
            status = resp.status_code
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            detail = "" if 200 <= status <= 299 else self.scrub(resp.text[:200])
        finally:
            resp.close()
        return Outcome(status, retry_after, detail)

    def scrub(self, text: str) -> str:
        """No error text ever carries a secret, even if a server echoes it."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._session.close()


class Transport:
    """Posts batches of Segment-spec messages to `{host}/v1/batch`."""

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        timeout: float = DEFAULTS.timeout,
        proxies: dict[str, str] | None = None,
        gzip: bool = False,
    ) -> None:
        self.url = host.rstrip("/") + "/v1/batch"
        self.gzip = gzip
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._http = HttpPoster(
            self.url,
            {"Authorization": f"Basic {token}"},
            (write_key, token),
            timeout,
            proxies,
            gzip,
        )

    def __repr__(self) -> str:
        return f"<Transport url={self.url!r} gzip={self.gzip}>"

    encode = staticmethod(encode)

    def send(self, items: Sequence[bytes]) -> Outcome:
        """Send encoded messages as one batch, `sentAt` now."""
        return self._http.post(self.url, batching.body(items))

    def close(self) -> None:
        self._http.close()
