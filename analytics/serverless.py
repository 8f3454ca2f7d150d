"""`flush_after`: a decorator for serverless handlers (AWS Lambda, Cloud Functions) that
flushes before the handler returns, since the platform may freeze the process right after."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

from . import lifecycle
from .log import logger

if TYPE_CHECKING:
    from .client import Client

F = TypeVar("F", bound=Callable[..., Any])


@overload
def flush_after(func: F, *, timeout: float | None = 2.0, client: Client | None = None) -> F: ...


@overload
def flush_after(
    func: None = None, *, timeout: float | None = 2.0, client: Client | None = None
) -> Callable[[F], F]: ...


def flush_after(
    func: F | None = None, *, timeout: float | None = 2.0, client: Client | None = None
) -> F | Callable[[F], F]:
    """Run the handler, then flush (`client`, else every client of the process) for at most
    `timeout` seconds, whether the handler returned or raised. Use as `@flush_after` or
    `@flush_after(timeout=1)`, on a sync or an async function. A flush never raises here."""

    def flush() -> None:
        try:
            # Without a client: every client of the process, the module's and the user's.
            done = client.flush(timeout) if client is not None else lifecycle.flush_all(timeout)
            if not done:
                logger.warning("analytics: flush_after ran out of time (%ss)", timeout)
        except Exception:
            logger.exception("analytics: flush_after could not flush")

    async def aflush() -> None:
        # Awaited on the handler's loop: other tasks keep running while it waits.
        from . import aio

        try:
            pending = client.aflush(timeout) if client is not None else aio.aflush_running(timeout)
            if not await pending:
                logger.warning("analytics: flush_after ran out of time (%ss)", timeout)
        except Exception:
            logger.exception("analytics: flush_after could not flush")

    def decorate(handler: F) -> F:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    await aflush()

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                flush()

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
