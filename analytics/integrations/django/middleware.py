"""`AnalyticsMiddleware`: one `analytics.scope` per request (user or anonymous id, ip, user agent,
page)."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import DisallowedHost  # type: ignore[import-untyped]
from django.utils.functional import LazyObject  # type: ignore[import-untyped]

from ...context import Scope, scope
from ...ids import id_or_none
from ...log import logger
from .._common import RequestOptions, anonymous_id, guarded_id, request_context, warn_once
from .conf import read_settings

_ID_TYPES = (str, int, uuid.UUID)


class AnalyticsMiddleware:
    """Calls made while a request is handled get its context and ids: for a signed-in user
    (`USER_ID_FROM_REQUEST`, on by default) `request.user.pk` as the user id; the anonymous id
    of analytics.js's cookie, else `ANONYMOUS_ID_FROM_REQUEST`'s, else (signed out) a fresh one.

    Sync and async capable. Building the scope never fails a request: a problem is logged
    and the request goes on without it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.options: RequestOptions = read_settings()[1]
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        """Handle a request inside its scope (returns a coroutine in async mode)."""
        if self._is_async:
            return self.__acall__(request)
        user_id = None
        if self.options.user_id_from_request:
            user_id = guarded_id("user_id", lambda: _pk(getattr(request, "user", None)))
        with self._scope(request, user_id):
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        """The async path: the scope is set in this task's context."""
        user_id = None
        if self.options.user_id_from_request:
            try:
                user_id = id_or_none("user_id", await self._auser_id(request))
            except Exception as exc:
                warn_once("user_id", exc)
        with self._scope(request, user_id):
            return await self.get_response(request)

    def _scope(self, request: Any, user_id: str | None) -> AbstractContextManager[Scope]:
        context = self._safely(self._context, request) or {}
        aid = self._safely(
            lambda r: anonymous_id(self.options, user_id, r.META.get("HTTP_COOKIE"), r), request
        )
        return scope(user_id=user_id, anonymous_id=aid, context=context)

    @staticmethod
    def _safely(build: Callable[[Any], Any], request: Any) -> Any:
        try:
            return build(request)
        except Exception:
            logger.warning("analytics: cannot build the request's scope", exc_info=True)
            return None

    async def _auser_id(self, request: Any) -> Any:
        auser = getattr(request, "auser", None)  # Django >= 5.0's AuthenticationMiddleware
        if auser is not None:
            return _pk(await auser())
        user = getattr(request, "user", None)
        if isinstance(user, LazyObject):  # evaluating it may query the database
            return await sync_to_async(_pk)(user)
        return _pk(user)

    def _context(self, request: Any) -> dict[str, Any]:
        try:
            url = request.build_absolute_uri()
        except DisallowedHost:
            url = request.get_full_path()
        meta = request.META
        return request_context(
            self.options,
            url=url,
            referrer=meta.get("HTTP_REFERER"),
            user_agent=meta.get("HTTP_USER_AGENT"),
            accept_language=meta.get("HTTP_ACCEPT_LANGUAGE"),
            remote_addr=meta.get("REMOTE_ADDR"),
            forwarded_for=meta.get("HTTP_X_FORWARDED_FOR"),
        )


def _pk(user: Any) -> Any:
    """The user's primary key when signed in, else None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    if pk is None or isinstance(pk, bool):
        return None
    return pk if isinstance(pk, _ID_TYPES) else str(pk)
