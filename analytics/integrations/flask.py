"""Flask integration: `Analytics(app)` builds each app its own `analytics.Client` from its
`ANALYTICS_*` config, opens an `analytics.scope` around every request and sends the module's
calls made inside that app to its client."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Callable

import flask

import analytics

from ..client import Client
from ..context import Scope, scope
from ..log import logger
from ..typing import Result
from ._common import (
    AnonymousIdGetter,
    RequestOptions,
    anonymous_id,
    guarded_id,
    parse_options,
    request_context,
)

PREFIX = "ANALYTICS_"
EXTENSION = "analytics"
_G_SCOPE = "_analytics_scope"

UserIdGetter = Callable[[], Any]


@dataclass(frozen=True)
class AppState:
    """What `init_app` keeps in `app.extensions["analytics"]`: the app's client and options."""

    client: Client
    options: RequestOptions
    user_id_getter: UserIdGetter | None


def _label(key: str) -> str:
    return PREFIX + key


class Analytics:
    """The extension: `Analytics(app)` or `ext = Analytics(); ext.init_app(app)`.

    `user_id_getter`, called inside each request, returns the signed-in user's id or None;
    `ANALYTICS_USER_ID_FROM_REQUEST = False` turns it off. `anonymous_id_getter(request)` (or
    `ANALYTICS_ANONYMOUS_ID_FROM_REQUEST`) is asked when analytics.js's cookie is absent. `track`
    and the other calls, here or on the `analytics` module, go to the current app's client.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        user_id_getter: UserIdGetter | None = None,
        anonymous_id_getter: AnonymousIdGetter | None = None,
    ) -> None:
        self.user_id_getter = user_id_getter
        self.anonymous_id_getter = anonymous_id_getter
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Build the app's client from its `ANALYTICS_*` config and hook its requests.
        Raises `analytics.ValidationError` naming a wrong or unknown config key."""
        if EXTENSION in app.extensions:
            raise RuntimeError(f"analytics is already set up on app {app.name!r}")
        config = {k[len(PREFIX) :]: v for k, v in app.config.items() if k.startswith(PREFIX)}
        client_options, options = parse_options(config, _label, require_write_key=True)
        if self.anonymous_id_getter is not None:  # the keyword wins over the config
            options = replace(options, anonymous_id_getter=self.anonymous_id_getter)
        app.extensions[EXTENSION] = AppState(Client(**client_options), options, self.user_id_getter)
        app.before_request(_open_scope)
        app.teardown_request(_close_scope)
        if _current_client not in analytics._client_resolvers:
            analytics._client_resolvers.append(_current_client)

    @staticmethod
    def state(app: flask.Flask | None = None) -> AppState:
        """The state of `app` (default: the current app)."""
        target = app if app is not None else flask.current_app
        try:
            state: AppState = target.extensions[EXTENSION]
        except KeyError:
            raise RuntimeError(f"analytics is not set up on app {target.name!r}") from None
        return state

    @property
    def client(self) -> Client:
        """The client of the current app."""
        return self.state().client

    def track(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.track` on the current app's client."""
        return self.client.track(*args, **kwargs)

    def identify(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.identify` on the current app's client."""
        return self.client.identify(*args, **kwargs)

    def page(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.page` on the current app's client."""
        return self.client.page(*args, **kwargs)

    def screen(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.screen` on the current app's client."""
        return self.client.screen(*args, **kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.group` on the current app's client."""
        return self.client.group(*args, **kwargs)

    def alias(self, *args: Any, **kwargs: Any) -> Result:
        """`Client.alias` on the current app's client."""
        return self.client.alias(*args, **kwargs)

    def flush(self, timeout: float | None = None) -> bool:
        """Flush the current app's client; False if `timeout` ran out first."""
        return self.client.flush(timeout)


def _current_client() -> Client | None:
    """The module facade's resolver: the client of the current app, if it has the extension."""
    if not flask.has_app_context():
        return None
    state = flask.current_app.extensions.get(EXTENSION)
    return state.client if isinstance(state, AppState) else None


def _open_scope() -> None:
    """before_request: open the request's scope and keep it on `flask.g`."""
    state = Analytics.state()
    request = flask.request
    user_id = None
    get_user = state.user_id_getter
    if state.options.user_id_from_request and get_user is not None:
        user_id = guarded_id("user_id_getter", get_user)
    try:
        aid = anonymous_id(state.options, user_id, request.headers.get("Cookie"), request)
    except Exception:
        logger.warning("analytics: cannot find the request's anonymous id", exc_info=True)
        aid = None
    try:
        context = request_context(
            state.options,
            url=request.url,
            referrer=request.headers.get("Referer"),
            user_agent=request.headers.get("User-Agent"),
            accept_language=request.headers.get("Accept-Language"),
            remote_addr=request.remote_addr,
            forwarded_for=request.headers.get("X-Forwarded-For"),
        )
    except Exception:
        logger.warning("analytics: cannot build the request's context", exc_info=True)
        context = {}
    manager = scope(user_id=user_id, anonymous_id=aid, context=context)
    manager.__enter__()  # the ids are checked already: this cannot fail
    setattr(flask.g, _G_SCOPE, manager)


def _close_scope(exc: BaseException | None) -> None:
    """teardown_request: close the scope opened for this request."""
    manager: AbstractContextManager[Scope] | None = flask.g.pop(_G_SCOPE, None)
    if manager is None:
        return
    try:
        manager.__exit__(None, None, None)
    except ValueError:  # torn down in another context than it was opened in
        logger.debug("analytics: request scope closed from another context", exc_info=True)
