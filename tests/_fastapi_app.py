"""A FastAPI app for test_fastapi: the README's setup (the shipped ASGI middleware), plus two
endpoints (async and sync) that track with no id inside a scope whose user_id comes from a header.

`?hold=K` makes a request wait (bounded) inside its scopes until K requests are inside theirs,
so concurrent requests really overlap before any of them tracks."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request

import analytics
from analytics.integrations.asgi import AnalyticsMiddleware

app = FastAPI()


def user_from_header(scope: Any) -> Any:
    """The signed-in user, as an auth layer would find it: here the X-User-Id header."""
    return Request(scope).headers.get("x-user-id")


# ---- the README's setup ("FastAPI / Starlette") ----------------------------------------------
app.add_middleware(AnalyticsMiddleware, user_id_getter=user_from_header)


# ---- a rendezvous across requests (event-loop tasks and threadpool threads alike) ----------
class Gate:
    HOLD_TIMEOUT = 5.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0

    def reset(self) -> None:
        with self.lock:
            self.inside = self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def reached(self, k: int) -> bool:
        with self.lock:
            return self.peak >= k


gate = Gate()


def hold_sync(k: int) -> None:
    deadline = time.monotonic() + Gate.HOLD_TIMEOUT
    while not gate.reached(k) and time.monotonic() < deadline:
        time.sleep(0.005)


async def hold_async(k: int) -> None:
    deadline = time.monotonic() + Gate.HOLD_TIMEOUT
    while not gate.reached(k) and time.monotonic() < deadline:
        await anyio.sleep(0.005)  # yields to the other requests on the loop


def properties(n: int, kind: str) -> dict[str, object]:
    return {"n": n, "kind": kind, "thread": threading.get_ident()}


@app.get("/async/{n}")
async def async_hit(n: int, request: Request, hold: int = 0) -> dict[str, int]:
    with analytics.scope(user_id=request.headers["x-user-id"]):
        gate.enter()
        try:
            await hold_async(hold)
            analytics.track(event="Async Hit", properties=properties(n, "async"))
        finally:
            gate.leave()
    return {"n": n}


@app.get("/sync/{n}")
def sync_hit(n: int, request: Request, hold: int = 0) -> dict[str, int]:
    with analytics.scope(user_id=request.headers["x-user-id"]):
        gate.enter()
        try:
            hold_sync(hold)
            analytics.track(event="Sync Hit", properties=properties(n, "sync"))
        finally:
            gate.leave()
    return {"n": n}


@app.get("/order")
async def order() -> dict[str, str]:
    """The README's view: no ids, whoever the visitor is."""
    ok, msg = analytics.track(event="Order Completed", properties={"total": 9.5})
    return {"messageId": msg["messageId"]}
