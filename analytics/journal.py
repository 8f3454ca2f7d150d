"""Durable mode's write-ahead journal: one append-only file per process beside the spool.

A call appends its message (one `os.write`, a few µs) before it returns; the consumer appends
"done" records as messages settle and empties the file whenever nothing is open. The journal
of a process that died is folded into the spool by the next process that looks.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from .log import logger
from .spool import alive

_HEADER = struct.Struct(">cI")  # kind (b"A" added, b"D" done), payload length


def _record(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class Journal:
    """This process's journal. Thread-safe; a forked child makes a new one."""

    def __init__(self, spool_path: str, fsync: bool = False) -> None:
        self.path = (
            f"{spool_path}.journal.{os.getpid()}.{uuid.uuid4().hex[:8]}.{socket.gethostname()}"
        )
        self.fsync = fsync
        self._lock = threading.Lock()
        self._open = 0  # appended, not yet done
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, message_id: str, data: bytes) -> None:
        """Write one message ahead; on disk (page cache, or the device with fsync) on return."""
        record = _record(b"A", message_id.encode() + b"\0" + data)
        with self._lock:
            os.write(self._fd, record)
            if self.fsync:
                os.fsync(self._fd)
            self._open += 1

    def done(self, message_ids: Sequence[str]) -> None:
        """These messages are settled (delivered, refused, or kept in the spool)."""
        if not message_ids:
            return
        record = _record(b"D", b"\0".join(m.encode() for m in message_ids))
        with self._lock:
            self._open -= len(message_ids)
            if self._open <= 0:  # nothing open: start the file afresh instead of growing it
                self._open = 0
                os.ftruncate(self._fd, 0)
            else:
                os.write(self._fd, record)

    def close(self) -> None:
        """At shutdown: the file goes if nothing in it is open."""
        with self._lock:
            os.close(self._fd)
            if self._open == 0:
                os.unlink(self.path)


def _records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    at = 0
    while at + _HEADER.size <= len(data):
        kind, size = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size : at + _HEADER.size + size]
        if len(payload) < size:  # cut short by a crash: the call never returned
            return
        yield kind, payload
        at += _HEADER.size + size


def open_messages(data: bytes) -> list[tuple[str, bytes]]:
    """(messageId, JSON) of every message in a journal's bytes that was never done."""
    added: list[tuple[str, bytes]] = []
    done: Counter[str] = Counter()
    for kind, payload in _records(data):
        if kind == b"A":
            raw_id, _, body = payload.partition(b"\0")
            added.append((raw_id.decode(), body))
        elif kind == b"D":
            done.update(m.decode() for m in payload.split(b"\0"))
    kept: list[tuple[str, bytes]] = []
    for message_id, body in added:
        if done[message_id]:
            done[message_id] -= 1
        else:
            kept.append((message_id, body))
    return kept


def _orphans(spool_path: str) -> Iterator[str]:
    """Journals of this spool, on this host, whose process no longer runs; also journals
    whose folding process died half-way."""
    host = socket.gethostname()
    for path in glob.glob(glob.escape(spool_path) + ".journal.*"):
        parts = path[len(spool_path) + len(".journal.") :].split(".", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        name_host, _, folder = parts[2].partition(".recovering.")
        if name_host != host:
            continue  # another host's: its own processes fold it
        pid = int(folder) if folder.isdigit() else int(parts[0])
        if not alive(pid):
            yield path


def fold_orphans(spool_path: str, add: Callable[[list[tuple[str, bytes]]], object]) -> int:
    """Move the open messages of dead processes' journals into the spool (`add`); returns
    how many. A journal is renamed before it is read, so one process folds it, and removed
    only after `add` returned."""
    moved = 0
    for path in _orphans(spool_path):
        base = path.partition(".recovering.")[0]
        taken = f"{base}.recovering.{os.getpid()}"
        try:
            os.rename(path, taken)
        except FileNotFoundError:
            continue  # another process took it
        with open(taken, "rb") as f:
            messages = open_messages(f.read())
        if messages:
            add(messages)
        os.unlink(taken)
        moved += len(messages)
    if moved:
        logger.info("analytics: %d message(s) of ended processes moved into the spool", moved)
    return moved
