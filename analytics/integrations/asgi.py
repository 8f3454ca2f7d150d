"""`AnalyticsMiddleware` for any ASGI app (FastAPI, Starlette...): one `analytics.scope` per HTTP
request, with its context and ids. Pure ASGI: imports no framework."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, Callable

from ..context import scope
from ..log import logger
from ._common import (
    AnonymousIdGetter,
    anonymous_id,
    getter,
    guarded_id,
    request_context,
    request_options,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UserIdGetter = Callable[[Scope], Any]  # the ASGI scope -> the signed-in user's id or None

_DEFAULT_PORTS = {"http": 80, "https": 443}


class AnalyticsMiddleware:
    """`app.add_middleware(AnalyticsMiddleware, ...)`, or `AnalyticsMiddleware(app, ...)`.

    Calls made while an HTTP request is handled get its context (ip, userAgent, locale, page,
    campaign) and ids: `user_id_getter(scope)`'s user id; the anonymous id of analytics.js's
    cookie, else `anonymous_id_getter(scope)`'s, else (signed out) a fresh UUID4. The getters
    get the ASGI scope (`starlette.requests.Request(scope)` makes a Request of it), run on the
    event loop and must not block. Websocket and lifespan scopes pass through untouched, and
    analytics never fails a request: a problem is logged and the request goes on.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxy_count: int = 0,
        user_id_getter: UserIdGetter | None = None,
        anonymous_id_getter: AnonymousIdGetter | None = None,
        send_ip: bool = True,
    ) -> None:
        self.app = app
        # Checked here, at startup, by the integrations' table: a wrong value is named now.
        self.options = request_options(
            {
                "TRUSTED_PROXY_COUNT": trusted_proxy_count,
                "SEND_IP": send_ip,
                "ANONYMOUS_ID_FROM_REQUEST": anonymous_id_getter,
            },
            str.lower,
        )
        self.user_id_getter: UserIdGetter | None = getter("user_id_getter", user_id_getter)

    async def __call__(self, scope_: Scope, receive: Receive, send: Send) -> None:
        """Run the app, inside the request's scope for an HTTP request."""
        if scope_.get("type") != "http":
            await self.app(scope_, receive, send)
            return
        try:
            manager = self._scope(scope_)
        except Exception:  # analytics must never be why a request fails
            logger.warning("analytics: cannot build the request's scope", exc_info=True)
            await self.app(scope_, receive, send)
            return
        with manager:
            await self.app(scope_, receive, send)

    def _scope(self, request: Scope) -> Any:
        headers = _headers(request)
        user_id = None
        get_user = self.user_id_getter
        if get_user is not None:
            user_id = guarded_id("user_id_getter", lambda: get_user(request))
        aid = anonymous_id(self.options, user_id, headers.get("cookie"), request)
        client = request.get("client")
        context = request_context(
            self.options,
            url=_url(request, headers),
            referrer=headers.get("referer"),
            user_agent=headers.get("user-agent"),
            accept_language=headers.get("accept-language"),
            remote_addr=client[0] if client else None,
            forwarded_for=headers.get("x-forwarded-for"),
        )
        return scope(user_id=user_id, anonymous_id=aid, context=context)


def _headers(request: Mapping[str, Any]) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined as HTTP joins them."""
    joined: dict[str, str] = {}
    for raw_name, raw_value in request.get("headers") or ():
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in joined:
            value = joined[name] + ("; " if name == "cookie" else ", ") + value
        joined[name] = value
    return joined


def _url(request: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The request's absolute url, as Starlette builds `request.url`."""
    scheme = request.get("scheme") or "http"
    host = headers.get("host")
    if host is None:
        server = request.get("server")
        if server:
            name, port = server[0], server[1]
            host = name if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{name}:{port}"
        else:
            host = ""
    root, path = request.get("root_path") or "", request.get("path") or "/"
    if root and not path.startswith(root):  # older servers leave root_path out of path
        path = root + path
    query = (request.get("query_string") or b"").decode("latin-1")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
