"""The README's `Batcher` snippet, run as printed: every message is posted once, in order,
no body breaks the limits, and the message over 32 KB is skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippet() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    [block] = [b for b in blocks if "Batcher(max_count=100)" in b]
    return block


def test_readme_batcher_snippet_posts_every_message_once_within_limits():
    posted: list[bytes] = []
    messages: list[Any] = [
        {"type": "track", "messageId": f"m{i}", "userId": "u", "event": "E", "properties": {}}
        for i in range(250)
    ]
    huge = {"type": "track", "messageId": "huge", "userId": "u", "event": "E",
            "properties": {"pad": "x" * 40_000}}
    messages.insert(120, huge)
    exec(_snippet(), {"messages": messages, "post": posted.append})  # noqa: S102
    bodies = [json.loads(b) for b in posted]
    ids = [m["messageId"] for body in bodies for m in body["batch"]]
    assert ids == [m["messageId"] for m in messages if m is not huge]
    assert [len(body["batch"]) for body in bodies] == [100, 100, 50]
    assert all(len(b) <= 500_000 for b in posted)
