"""A FastAPI app for test_fastapi: the README's middleware recipe, verbatim, plus two endpoints
(async and sync) that track with no id inside a scope whose user_id comes from a header.

`?hold=K` makes a request wait (bounded) inside its scopes until K requests are inside theirs,
so concurrent requests really overlap before any of them tracks."""

from __future__ import annotations

import threading
import time

import anyio
from fastapi import FastAPI, Request

import analytics

app = FastAPI()


# ---- the README's recipe ("FastAPI / Starlette"), unchanged --------------------------------
# fmt: off
@app.middleware("http")
async def analytics_scope(request: Request, call_next):
    context = analytics.context_from_request(
        url=str(request.url),
        ip=request.client.host if request.client else None,   # the address you trust
        headers=request.headers,                               # User-Agent, Referer, Accept-Language  # noqa: E501
    )
    with analytics.scope(context=context):    # add user_id=... once you know the user
        return await call_next(request)
# fmt: on


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
