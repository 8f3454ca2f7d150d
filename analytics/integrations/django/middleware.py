"""`AnalyticsMiddleware`: one `analytics.scope` per request (user id, ip, user agent, page)."""

from __future__ import annotations

import uuid
from typing import Any, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import DisallowedHost  # type: ignore[import-untyped]
from django.utils.functional import LazyObject  # type: ignore[import-untyped]

from ...context import scope
from ...log import logger
from .._common import RequestOptions, request_context
from .conf import read_settings

_ID_TYPES = (str, int, uuid.UUID)


class AnalyticsMiddleware:
    """Calls made while a request is handled get its context and, for a signed-in user
    (`USER_ID_FROM_REQUEST`, on by default), `request.user.pk` as their user id.

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
        user_id = self._safely(self._user_id, request)
        context = self._safely(self._context, request) or {}
        with scope(user_id=user_id, context=context):
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        """The async path: the scope is set in this task's context."""
        user_id = None
        if self.options.user_id_from_request:
            try:
                user_id = await self._auser_id(request)
            except Exception:
                logger.warning("analytics: no user id for this request", exc_info=True)
        context = self._safely(self._context, request) or {}
        with scope(user_id=user_id, context=context):
            return await self.get_response(request)

    @staticmethod
    def _safely(build: Callable[[Any], Any], request: Any) -> Any:
        try:
            return build(request)
        except Exception:
            logger.warning("analytics: cannot build the request's scope", exc_info=True)
            return None

    def _user_id(self, request: Any) -> Any:
        if not self.options.user_id_from_request:
            return None
        return _pk(getattr(request, "user", None))

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
