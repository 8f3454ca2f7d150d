"""Every named type of the library's public surface, in one place: what a message is, what
a call takes and returns, and the hooks a user gives. Imports nothing of the library."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

Message = dict[str, Any]  # a message as it goes on the wire (camelCase keys)
Result = tuple[bool, Message]  # what a call returns: (queued or sent, the message)
Id = Union[str, int, uuid.UUID]  # user_id, anonymous_id, group_id, previous_id, message_id
Timestamp = Union[dt.datetime, dt.date, str]  # a datetime, a date or an ISO-8601 string
Fields = Optional[Mapping[str, Any]]  # properties, traits, context, integrations
OnError = Callable[[Exception, list[Message]], Any]  # on_error(error, batch)
Fallback = Callable[[], Optional[str]]  # the id of a call that gives none (a current user)
# before_send(message) -> the message to send (changed or not), or None to drop it
BeforeSend = Callable[[Message], Optional[Message]]
