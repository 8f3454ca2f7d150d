"""`ATrackClient`: the library's `Client` speaking A-Track, plus A-Track's identity helpers.

Everything about queueing, delivery, retries, flush, shutdown, fork and stats is the core
`Client`'s, and the wire is the protocol value `wire.ATRACK`; this class picks the host
(geo), gives the current user's uuid to a call without an id, and adds `init`, `get_user`,
`set_attributes` and `clear_user`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ..client import Client
from ..context import current_scope, deep_merge
from ..errors import ValidationError
from ..ids import Id, id_or_none, now_iso8601, uuid4
from ..messages import copy_mapping
from ..typing import Message, Result
from .storage import MemoryStorage, User, UserStorage
from .wire import host_for


class ATrackClient(Client):
    """A client for one A-Track project (public key). Build it with
    ``analytics.Client(key, protocol="atrack", geo=..., storage=...)`` or directly.

    Takes every option of `Client`; its batch size is always 1 (the protocol's limit: no
    batch endpoint). `geo` picks ``https://<geo>.api.a-track.io``; `host` overrides it.
    `storage` keeps the current user (default: `MemoryStorage`).
    """

    def __init__(
        self,
        public_key: str | None = None,
        *args: Any,
        geo: str | None = None,
        storage: UserStorage | None = None,
        **kwargs: Any,
    ) -> None:
        if "write_key" in kwargs:  # Segment's keyword name, for drop-in code
            if public_key is not None:
                raise ValidationError("give public_key or write_key, not both")
            public_key = kwargs.pop("write_key")
        if kwargs.setdefault("protocol", "atrack") != "atrack":
            raise ValidationError("ATrackClient speaks only protocol='atrack'")
        self._geo_host = host_for(geo)  # validated even when host overrides it
        if storage is None:
            storage = MemoryStorage()
        elif not isinstance(storage, UserStorage):
            raise ValidationError("storage must have get(), set(user) and clear()")
        self.geo = geo
        self.storage: UserStorage = storage
        self._identity_lock = threading.Lock()
        self._fallback_id = self._stored_uuid  # a call without an id: the current user
        super().__init__(public_key, *args, **kwargs)

    def _default_host(self) -> str:
        return self._geo_host

    def url_for(self, path: str) -> str:
        """The full URL a request to an A-Track path (``/init``, ``/event``...) goes to."""
        return self.host.rstrip("/") + path

    def reset_after_fork(self) -> None:
        """In a forked child: also a fresh identity lock (another thread may have held it)."""
        if self._pid != os.getpid():
            self._identity_lock = threading.Lock()
        super().reset_after_fork()

    def __repr__(self) -> str:
        mode = "stub" if self.stub else "sync" if self.sync_mode else "queue"
        return (
            f"<analytics.ATrackClient host={self.host!r} geo={self.geo!r} mode={mode} "
            f"closed={self._pipeline.closed}>"
        )

    # -- identity ----------------------------------------------------------------------------

    def _given_id(self, user_id: Any, anonymous_id: Any, name: str = "user_id") -> str | None:
        """The call's own id, else the open scope's; None when neither has one."""
        uid = id_or_none(name, user_id)
        if uid is None:
            uid = id_or_none("anonymous_id", anonymous_id)
        if uid is None and (scope := current_scope()) is not None:
            uid = scope.user_id if scope.user_id is not None else scope.anonymous_id
        return uid

    def _stored_uuid(self) -> str | None:
        user = self.storage.get()
        uid = None if user is None else user.get("uuid")
        return uid if isinstance(uid, str) and uid else None

    def init(
        self,
        uuid: Id | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register the current user with A-Track (``POST /init``) and store it.

        Without `uuid`: the stored user, else a new uuid4. `isNewUser` is True when the
        storage did not hold that uuid. `context` (e.g. from
        `analytics.context.context_from_request`) is merged over the open scope's.
        Returns ``{"uuid": ..., "isNewUser": ...}``; delivery goes through the queue.
        """
        given = id_or_none("uuid", uuid)
        attrs = copy_mapping("attributes", attributes)
        ctx = copy_mapping("context", context)
        scope = current_scope()
        if scope is not None:
            ctx = deep_merge(scope.context, ctx)
        with self._identity_lock:
            known = self._stored_uuid()
            chosen = given if given is not None else known if known is not None else uuid4()
            is_new = chosen != known
            if is_new:
                self.storage.set({"uuid": chosen})
        self._enqueue(
            {
                "type": "init",
                "messageId": uuid4(),
                "timestamp": now_iso8601(),
                "userId": chosen,
                "isNewUser": is_new,
                "attributes": attrs,
                "context": ctx,
            }
        )
        return {"uuid": chosen, "isNewUser": is_new}

    def get_user(self) -> User | None:
        """The current user (``{"uuid": ...}``), or None before `init`."""
        return self.storage.get()

    def clear_user(self) -> None:
        """Forget the current user (logout); the next `init` makes a new one."""
        with self._identity_lock:
            self.storage.clear()

    def set_attributes(
        self,
        attributes: Mapping[str, Any],
        replace: bool = False,
        *,
        uuid: Id | None = None,
    ) -> Result:
        """Set the user's attributes (``POST /attributes``), merged or replacing them all.
        The user: `uuid`, else the open scope's id, else the current user."""
        if not isinstance(replace, bool):
            raise ValidationError(f"replace must be a bool, not {type(replace).__name__}")
        attrs = copy_mapping("attributes", attributes)
        chosen = self._given_id(uuid, None, "uuid")
        if chosen is None:
            chosen = self._stored_uuid()
        if chosen is None:
            raise ValidationError("set_attributes needs a user: call init() or pass uuid")
        msg: Message = {
            "type": "attributes",
            "messageId": uuid4(),
            "timestamp": now_iso8601(),
            "userId": chosen,
            "mode": "replace" if replace else "merge",
            "attributes": attrs,
        }
        return self._enqueue(msg)
