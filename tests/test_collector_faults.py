"""The collector process at its edges (issue 15, items 5-9): a bad message costs only itself,
deep JSON is a 400, a deleted/replaced or unwritable database file is a 503 with the real
reason and never kills the process, conflicting Content-Length is a 400, a slow-drip request
is cut off, and every answer carries `nosniff`. Each test runs `analytics-collector` itself."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _collector_helpers import KEY_TOKEN, CollectorProcess, get, http, post


def msg(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": str(uuid.uuid4()), "userId": "u1", "event": "E", **fields}


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[CollectorProcess]:
    with CollectorProcess(tmp_path / "c.db", "--quiet") as p:
        yield p


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def raw_request(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` as it is on a fresh connection; everything the collector answers."""
    with socket.create_connection(_address(url), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- 5: one bad message is one rejected message ---------------------------------------------


def test_a_lone_surrogate_is_one_rejected_message_and_its_neighbours_are_stored(
    proc: CollectorProcess,
) -> None:
    first, last = msg(), msg()
    bad = json.dumps(msg(event="E", properties={"name": "x"}))
    bad = bad.replace('"name": "x"', '"name": "\\ud800"')  # escaped, as Segment's client sends
    body = f'{{"batch": [{json.dumps(first)}, {bad}, {json.dumps(last)}]}}'.encode()
    resp = post(proc.url, body=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["accepted"] == 2
    (rejected,) = answer["rejected"]
    assert rejected["index"] == 1 and "surrogate" in rejected["reason"]
    stored = {e["messageId"] for e in get(proc.url, "/v1/events")}
    assert stored == {first["messageId"], last["messageId"]}
    (kept,) = get(proc.url, "/v1/rejected")
    assert "surrogate" in kept["reason"] and kept["message"]["properties"]["name"] == "\ud800"
    assert http.get(proc.url + "/?tab=rejected", timeout=10).status_code == 200


# -- 6: deep JSON ---------------------------------------------------------------------------


def test_deeply_nested_json_is_400_and_the_collector_carries_on(proc: CollectorProcess) -> None:
    depth = 100_000
    body = b'{"batch": [' + b"[" * depth + b"]" * depth + b"]}"
    resp = post(proc.url, body=body)
    assert resp.status_code == 400, resp.text
    assert "nested too deeply" in resp.json()["error"]
    deep = {"type": "track", "userId": "u1", "event": "Deep", "messageId": "deep-1"}
    node: dict[str, Any] = deep.setdefault("properties", {})
    for _ in range(600):  # decodable, but deeper than the page's indenting encoder goes
        node = node.setdefault("a", {})
    resp = post(proc.url, json_body={"batch": [deep, msg()]})
    assert resp.status_code == 200, resp.text
    assert http.get(proc.url + "/", timeout=10).status_code == 200
    assert post(proc.url, json_body={"batch": [msg()]}).status_code == 200
    assert proc.proc.poll() is None


# -- 7: the database file deleted or replaced -----------------------------------------------


def test_a_deleted_database_file_is_503_with_the_reason(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with CollectorProcess(db, "--quiet") as p:
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        for f in tmp_path.glob("c.db*"):
            f.unlink()
        resp = post(p.url, json_body={"batch": [msg()]})
        assert resp.status_code == 503, resp.text
        assert "deleted" in resp.json()["error"] and "restart" in resp.json()["error"]
        assert http.get(p.url + "/health", timeout=10).status_code == 200
        assert p.stop() == 0


def test_a_replaced_database_file_is_503_with_the_reason(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with CollectorProcess(db, "--quiet") as p:
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        other = tmp_path / "other.db"
        other.write_bytes(b"")
        os.replace(other, db)
        resp = post(p.url, json_body={"batch": [msg()]})
        assert resp.status_code == 503, resp.text
        assert "replaced" in resp.json()["error"]
        assert p.stop() == 0


# -- 8: a read-only or failing disk ---------------------------------------------------------


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True, timeout=10)


def test_a_read_only_database_file_is_503_with_the_real_error(tmp_path: Path) -> None:
    """chmod does not stop root; the immutable attribute does (ext4 and most filesystems)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    db = tmp_path / "c.db"
    with CollectorProcess(db, "--quiet") as p:
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        files = sorted(tmp_path.glob("c.db*"))
        try:
            _chattr("+i", files)
        except (subprocess.CalledProcessError, OSError) as exc:
            pytest.skip(f"this filesystem has no immutable attribute: {exc}")
        try:
            resp = post(p.url, json_body={"batch": [msg()]})
            assert resp.status_code == 503, resp.text
            error = resp.json()["error"]
            assert "cannot rollback" not in error
            assert "disk I/O error" in error or "readonly" in error, error
            assert p.proc.poll() is None
            assert get(p.url, "/v1/stats")["events"] == 1
        finally:
            _chattr("-i", files)
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        assert get(p.url, "/v1/stats")["events"] == 2
        assert p.stop() == 0


def test_a_failing_disk_is_503_with_the_real_error_and_the_process_lives_on(
    tmp_path: Path,
) -> None:
    """A file-size limit makes every write past 256 KiB fail with EFBIG, as a full or failing
    disk does: SQLite rolls the transaction back itself, and the answer must say why."""
    with CollectorProcess(tmp_path / "c.db", "--quiet", max_file_bytes=256 * 1024) as p:
        big = {"blob": "x" * 20_000}
        statuses = []
        for _ in range(40):
            resp = post(p.url, json_body={"batch": [msg(properties=big) for _ in range(5)]})
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        error = resp.json()["error"]
        assert "cannot rollback" not in error
        assert "disk" in error or "full" in error, error
        assert p.proc.poll() is None
        assert get(p.url, "/v1/stats")["events"] == 5 * (len(statuses) - 1)
        assert p.stop() == 0


def test_no_shared_memory_file_so_a_broken_shm_cannot_kill_the_process(tmp_path: Path) -> None:
    """WAL's -shm file is mapped into memory: truncated or unreadable under a running process,
    the next write dies of SIGBUS. The collector keeps the WAL index in its own memory."""
    db = tmp_path / "c.db"
    with CollectorProcess(db, "--quiet") as p:
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        shm = tmp_path / "c.db-shm"
        if shm.exists():
            shm.write_bytes(b"")  # what a failing or read-only -shm amounts to for the map
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200
        assert p.proc.poll() is None
        assert not shm.exists()
        assert p.stop() == 0


# -- 9: Content-Length, a whole-request deadline, nosniff ------------------------------------


def test_conflicting_content_length_headers_are_400(proc: CollectorProcess) -> None:
    body = json.dumps({"batch": [msg()]}).encode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {KEY_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Content-Length: {len(body) - 5}\r\n\r\n"
    )
    answer = raw_request(proc.url, head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"conflicting Content-Length" in answer
    assert get(proc.url, "/v1/stats")["events"] == 0


def _drip(url: str, head: bytes, drip: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send `head`, then `drip` a byte each `every` s until the collector answers or closes
    (AssertionError after `limit` s); what it answered and how long that took."""
    start = time.monotonic()
    with socket.create_connection(_address(url), timeout=limit) as sock:
        sock.sendall(head)
        answer = b""
        for i in range(10_000):
            if time.monotonic() - start > limit:
                raise AssertionError(f"still connected after {limit} s of dripping")
            readable, _, _ = select.select([sock], [], [], every)  # waits for the answer
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return answer, time.monotonic() - start
                answer += chunk
                continue
            try:
                sock.sendall(drip[i % len(drip) : i % len(drip) + 1])
            except (BrokenPipeError, ConnectionResetError):
                return answer, time.monotonic() - start
    raise AssertionError("unreachable")


def test_a_dripped_body_is_cut_off_at_the_request_deadline(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet", "--request-timeout", "1.5") as p:
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {KEY_TOKEN}\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        answer, took = _drip(p.url, head, b'{"batch": []}' + b" " * 1000, 0.3, limit=15)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"longer than 1.5 s" in answer
        assert 1.2 <= took < 10, took
        assert post(p.url, json_body={"batch": [msg()]}).status_code == 200


def test_dripped_headers_are_cut_off_at_the_request_deadline(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", "--quiet", "--request-timeout", "1.5") as p:
        endless = b"GET /v1/stats HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 10_000
        answer, took = _drip(p.url, b"", endless, 0.2, limit=15)
        assert answer == b""  # no answer: the connection is closed
        assert 1.2 <= took < 10, took
        assert get(p.url, "/v1/stats")["events"] == 0


def test_every_answer_says_nosniff(proc: CollectorProcess) -> None:
    answers = [
        http.get(proc.url + "/v1/stats", timeout=10),
        http.get(proc.url + "/health", timeout=10),
        http.get(proc.url + "/v1/nothing", timeout=10),
        http.get(proc.url + "/", timeout=10),
        http.get(proc.url + "/app.js", timeout=10),
        http.head(proc.url + "/v1/events", timeout=10),
        http.options(proc.url + "/v1/batch", timeout=10),  # the standard library's 501
        http.delete(proc.url + "/v1/batch", timeout=10),
        post(proc.url, json_body={"batch": [msg()]}),
        post(proc.url, json_body={"batch": [msg()]}, key=None),
        post(proc.url, body=b"{nope"),
    ]
    for resp in answers:
        # once: requests would join a repeated header as "nosniff, nosniff"
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", (resp.url, resp.status_code)
