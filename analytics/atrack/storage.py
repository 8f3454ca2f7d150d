"""Where an `ATrackClient` keeps its current user: a small protocol and two stores.

A user is a JSON-able dict with at least ``{"uuid": str}``. `MemoryStorage` lasts as long as
the process; `FileStorage` survives restarts, writes atomically (temp file + `os.replace`) so
that any number of processes may read it while one writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Protocol, Union, runtime_checkable

from ..encode import encode
from ..errors import ValidationError
from ..log import logger

User = dict[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


@runtime_checkable
class UserStorage(Protocol):
    """What ATrackClient needs of a store: read, replace and forget the current user."""

    def get(self) -> User | None: ...

    def set(self, user: User) -> None: ...

    def clear(self) -> None: ...


def _checked(user: Any) -> User:
    if not isinstance(user, dict) or not isinstance(user.get("uuid"), str) or not user["uuid"]:
        raise ValidationError("a user is a dict with a non-empty str 'uuid'")
    return dict(user)


class MemoryStorage:
    """The current user in memory (per process). Thread-safe: it swaps whole dicts."""

    def __init__(self) -> None:
        self._user: User | None = None

    def __repr__(self) -> str:
        return "<MemoryStorage>"

    def get(self) -> User | None:
        """A copy of the current user, or None."""
        user = self._user
        return None if user is None else dict(user)

    def set(self, user: User) -> None:
        """Replace the current user."""
        self._user = _checked(user)

    def clear(self) -> None:
        """Forget the current user."""
        self._user = None


class FileStorage:
    """The current user in a JSON file. Survives restarts; read on every `get`.

    Writes go to a temporary file in the same directory, fsynced, then `os.replace`d over
    the target, so a reader in any process sees the old user or the new one, never a part.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"<FileStorage path={self.path!r}>"

    def get(self) -> User | None:
        """The stored user, or None if there is none (a missing or unreadable file)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            return _checked(json.loads(data))
        except ValueError:  # JSON errors are ValueErrors too
            logger.warning("A-Track user file %s is not a valid user; ignored", self.path)
            return None

    def set(self, user: User) -> None:
        """Replace the stored user atomically. Raises OSError if the file can't be written."""
        data = encode(_checked(user))
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".atrack-user-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        """Remove the stored user (no error if there is none)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
