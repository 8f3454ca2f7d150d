"""The consumer thread: takes messages off the queue, batches them, delivers.

The queue holds the message dicts (copies: nothing in them changes after the call); this
thread encodes each as it joins a batch. A batch is sent when it is full (count or bytes),
when `flush_interval` has passed since its first message, or when a flush marker arrives.
It never dies of an exception.

While a batch fills, this thread does not block in `Queue.get` (every put would wake it, a
thread switch per message); it sleeps until callers say that as many messages are queued
as the batch still wants (`Handoff`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from itertools import islice
from typing import Any, Callable

from .batch import MAX_MESSAGE_BYTES, Batcher, Fit
from .delivery import Delivery
from .errors import ClientShutdown, MessageTooLarge
from .log import logger
from .outcome import Batch, Fate
from .settle import Settler
from .spooling import SpoolKeeper
from .typing import Message

POLL = 0.005  # while a batch fills, the consumer looks at the queue this often, s
MAX_POLL = 0.1  # ...doubling up to this while nothing new comes
FLUSH = object()  # marker: send what you have now
STOP = object()  # marker: send what you have and end


class MessageQueue(queue.Queue[Any]):
    """The client's bounded `queue.Queue` of message dicts (and the consumer's markers), from
    which the consumer takes many at a time: one lock round per batch, not per message."""

    def offer(self, item: Any) -> bool:
        """`put_nowait` as a yes or no, with what it does but the Condition calls: False
        (nothing queued) when full."""
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                return False
            self.queue.append(item)
            self.unfinished_tasks += 1
            if self.not_empty._waiters:  # type: ignore[attr-defined]  # someone in get()
                self.not_empty.notify()
        return True

    def peek(self, n: int) -> list[Any]:
        """The first `n` items (fewer if fewer wait), oldest first, left in the queue."""
        with self.mutex:
            return list(islice(self.queue, n))

    def take(self, n: int) -> list[Any]:
        """Up to `n` items, oldest first, without waiting; [] if there are none."""
        with self.mutex:
            count = min(n, self._qsize())
            popleft = self.queue.popleft  # what `_get` does, without a call per item
            items = [popleft() for _ in range(count)]
            if count:
                self.not_full.notify(count)
        return items


class Handoff:
    """How callers wake the consumer without a lock or a thread switch per call: it sleeps
    on `more`; a caller checks `want` after each put and sets `more` once that many wait
    (1 when the consumer is idle; half the queue while a batch fills, see `_sleep`).
    `taken` counts the messages the consumer took, so that callers know how many wait
    (their `queued` minus it) without asking the queue."""

    __slots__ = ("want", "more", "taken")

    def __init__(self) -> None:
        self.want = 1
        self.more = threading.Event()
        self.taken = 0  # written by the consumer thread only

    def ring(self) -> None:
        if not self.more.is_set():
            self.more.set()


class Consumer:
    def __init__(
        self,
        q: MessageQueue,
        encode_many: Callable[[list[Message]], list[bytes]],
        handoff: Handoff,
        delivery: Delivery,
        settler: Settler,
        batch_size: int,
        flush_interval: float,
        keeper: SpoolKeeper | None,
        replay_interval: float,
        finished: Callable[[], None] | None = None,
    ) -> None:
        self.queue = q
        self.encode_many = encode_many
        self.handoff = handoff
        self.delivery = delivery
        self.settler = settler
        self.batcher = Batcher(batch_size)
        self._ring_at = max(2, q.maxsize // 2)  # while a batch fills: calls ring from here
        self.messages: list[Message] = []  # the dicts of the batch being filled
        self.flush_interval = flush_interval
        self.closing = False
        self.keeper = keeper  # the spool, replayed through the same delivery
        self.replay_interval = replay_interval
        self.started = threading.Event()  # set once the start-up replay is done
        # The message that did not fit the last batch: it opens the next one. A shutdown out
        # of time takes it from another thread, hence the lock.
        self._carry: tuple[Message, bytes] | None = None
        self._carry_lock = threading.Lock()
        self._deadline = 0.0  # when the batch being filled goes anyway: set by its first
        # Taken off the queue but not yet into a batch (what a marker or a full batch left).
        # Each item is popped by exactly one thread: this one, or a shutdown's.
        self._pending: deque[Any] = deque()
        # The JSON of the messages at the queue's head, encoded while a request was in
        # flight (they stay in the queue, which still bounds what is held): oldest first,
        # used when they are taken, if still the same dicts. This thread's alone.
        self._ahead: list[tuple[Message, bytes]] = []
        # Called on this thread as it ends: the pipeline closes what it holds once shut down.
        self.finished = finished
        self.thread = threading.Thread(target=self._main, name="analytics-consumer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def alive(self) -> bool:
        return self.thread.is_alive()

    def nudge(self, timeout: float | None) -> None:
        """Ask for the partial batch to go now instead of after `flush_interval`."""
        try:
            if timeout is None:
                self.queue.put(FLUSH)
            else:
                self.queue.put(FLUSH, timeout=max(timeout, 0.0))
        except queue.Full:
            pass
        self.handoff.ring()

    def stop(self) -> None:
        """End after the queue is drained. The flag covers a queue too full for the marker."""
        self.closing = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(STOP)
        self.handoff.ring()

    def _main(self) -> None:
        try:
            self._run()
        finally:
            if self.finished is not None:
                self.finished()

    def _run(self) -> None:
        self._replay()
        self.started.set()
        while True:
            try:
                stop = self._fill()
                if self.messages:
                    batch = Batch(self.batcher.take(), self.messages)
                    self.messages = []
                    attempt = self.delivery.begin(batch)
                    self._encode_ahead()  # while the collector reads the request
                    fate = self.settler.settle(batch, self.delivery.finish(attempt))
                    if fate is Fate.DELIVERED:
                        self._replay()  # the collector answers again: send what was spooled
                elif self.keeper is not None and not stop:
                    self._replay()  # idle: the spool may hold what other processes left
                if self.delivery.abort.is_set():
                    self.drain_lost()
                    return
                if stop or (self.closing and self._carry is None and self._drained()):
                    return
            except Exception:  # the consumer must outlive any bug or hook
                logger.exception("analytics consumer hit an error; it keeps running")

    def _replay(self) -> None:
        """Send spooled batches while they go through, giving way to live messages."""
        if self.keeper is not None:
            replay(self.keeper, self.delivery, self.settler, lambda: not self._drained())

    def _fill(self) -> bool:
        """Fill the batch by the batching rule; True when told to stop."""
        batcher = self.batcher
        expired = False  # flush_interval is up: take what is queued, then send
        pending = self._pending
        while not batcher.full:
            carried = self._take_carry() if self._carry is not None else None
            if carried is not None:
                msg, data = carried
                fit = batcher.add(data)
                if fit is Fit.TOO_LARGE:  # under the limit at the call, changed since
                    self._too_large(msg, data)
                    continue
                if fit is Fit.FULL:
                    self._carry = (msg, data)
                    return False
                if not self.messages:
                    self._deadline = time.monotonic() + self.flush_interval
                self.messages.append(msg)
                continue
            if not pending:
                self._take_some()
            run = self._take_run(batcher.max_count - len(batcher))
            if run:
                if not self.messages:
                    self._deadline = time.monotonic() + self.flush_interval
                if not self._add_run(run):
                    return False  # full by bytes: the one that did not fit is carried
                continue
            try:
                item = pending.popleft()  # a marker, or nothing queued
            except IndexError:  # nothing queued (or a shutdown took it all meanwhile)
                if expired:
                    return False
                if not self._sleep(self._deadline):
                    if not self.messages:
                        return False  # idle for replay_interval: time to replay
                    expired = True
                continue
            if item is STOP:
                return True
            if item is not FLUSH:  # a message after all (pushed back meanwhile): next round
                pending.appendleft(item)
                continue
            return False
        return False

    def _take_run(self, room: int) -> list[Message]:
        """Up to `room` messages off the front of `_pending`, up to the first marker (left
        there). Each is popped on its own: a shutdown's thread may pop from the other end."""
        run: list[Message] = []
        pending = self._pending
        popleft, append = pending.popleft, run.append
        try:
            for _ in range(min(room, len(pending))):
                item = popleft()
                if item is FLUSH or item is STOP:
                    pending.appendleft(item)
                    break
                append(item)
        except IndexError:  # a shutdown took the rest meanwhile
            pass
        return run

    def _encode_ahead(self) -> None:
        """Encode the next batch's worth of queued messages where they are: they stay in the
        queue (so a full queue still holds what it held: the queue and one batch), and
        their JSON waits in `_ahead` for `_encode_run`. Skipped while anything was taken
        off the queue but not batched (the next batch starts there)."""
        try:
            if self._pending or self._ahead:
                return
            head = [m for m in self.queue.peek(self.batcher.max_count) if isinstance(m, dict)]
            if head:
                self._ahead = list(zip(head, self.encode_many(head)))
        except Exception:  # the batch in flight must still be settled
            self._ahead = []
            logger.exception("analytics: encoding queued messages ahead failed")

    def _encode_run(self, run: list[Message]) -> list[bytes]:
        """The JSON of `run`: what `_encode_ahead` encoded of it (the same dicts, in queue
        order) and the rest now."""
        ahead = self._ahead
        if not ahead:
            return self.encode_many(run)
        count = 0
        for (msg, _), item in zip(ahead, run):
            if msg is not item:
                break
            count += 1
        if count < len(ahead) and count < len(run):  # not the queue's head (a shutdown took
            self._ahead = []  # some meanwhile): forget the rest
        else:
            self._ahead = ahead[count:]
        datas = [data for _, data in ahead[:count]]
        if count < len(run):
            datas += self.encode_many(run[count:])
        return datas

    def _add_run(self, run: list[Message]) -> bool:
        """Encode `run` and add it to the batch; False when the batch filled by bytes (the
        message that did not fit carried over, those after it put back)."""
        datas = self._encode_run(run)
        added = self.batcher.add_run(datas)
        if added == len(run):
            self.messages.extend(run)
            return True
        self.messages.extend(run[:added])
        self._pending.extendleft(reversed(run[added + 1 :]))
        msg, data = run[added], datas[added]
        if len(data) > MAX_MESSAGE_BYTES:
            self._too_large(msg, data)
            return True
        self._carry = (msg, data)
        return False

    def _too_large(self, msg: Message, data: bytes) -> None:
        """Under the limit at the call, changed since: no batch can take it."""
        self.settler.lose(MessageTooLarge(len(data), MAX_MESSAGE_BYTES), [msg], True)

    def _take_some(self) -> None:
        """Move what the batch still wants (or less, if fewer wait) into `_pending`."""
        items = self.queue.take(self._still_wanted())
        self.handoff.taken += len(items) - items.count(FLUSH) - items.count(STOP)
        self._pending.extend(items)

    def _still_wanted(self) -> int:
        """How many more messages fill the batch: by count, or by bytes at the average size
        so far (plus the one that will not fit and so closes it)."""
        batcher, held = self.batcher, len(self.messages)
        by_count = batcher.max_count - held
        if not held:
            return by_count
        by_bytes = (batcher.max_bytes - batcher.size) // max(batcher.size // held, 1) + 1
        return max(min(by_count, by_bytes), 1)

    def _sleep(self, deadline: float) -> bool:
        """Wait for more messages. Idle, until the first one is queued (its call rings) or
        `replay_interval` passes. While a batch fills, until the batch's worth is queued,
        looked at every POLL s (doubling while nothing comes): the calls do not ring then,
        since waking a thread costs the call that does it 10-20 µs, and that was the 1 in
        100 calls at the top of the steady-load latency. Calls ring only once half the queue
        waits. False when the deadline (or, idle, `replay_interval`) passed first."""
        handoff = self.handoff
        if not self.messages:
            handoff.want = 1
            handoff.more.clear()
            if self.queue.qsize() >= 1:  # rung before the clear: nothing lost
                return True
            return handoff.more.wait(self.replay_interval if self.keeper is not None else None)
        wanted = self._still_wanted()
        handoff.want = self._ring_at
        handoff.more.clear()
        poll, seen = POLL, self.queue.qsize()
        while seen < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if handoff.more.wait(min(poll, remaining)):
                return True  # rung: a flush, a stop, or half the queue waits
            now_seen = self.queue.qsize()
            poll = POLL if now_seen > seen else min(poll * 2, MAX_POLL)
            seen = now_seen
        return True

    def drain_queue_lost(self) -> None:
        """From another thread, once `abort` is set: report what waits (the message carried
        over to the next batch, and the queue); after abort this thread sends nothing more."""
        carried = self._take_carry()
        lost = [] if carried is None else [carried[0]]
        self._report_shutdown(lost + self._take_queued())

    def _take_carry(self) -> tuple[Message, bytes] | None:
        with self._carry_lock:
            carried, self._carry = self._carry, None
        return carried

    def drain_lost(self) -> None:
        """Report everything still waiting as lost to a shutdown (on this thread, or once
        this thread has ended)."""
        self.batcher.take()
        self._ahead = []
        lost, self.messages = self.messages, []
        carried = self._take_carry()
        if carried is not None:
            lost.append(carried[0])
        lost += self._take_queued()
        self._report_shutdown(lost)

    def _drained(self) -> bool:
        """Nothing waits: neither in the queue nor taken off it for the next batch."""
        return not self._pending and self.queue.empty()

    def _take_queued(self) -> list[Message]:
        """Every message waiting (taken off the queue already, then in it), markers left out."""
        taken: list[Message] = []
        pending = self._pending
        while True:
            try:
                item = pending.popleft()
            except IndexError:
                break
            if isinstance(item, dict):
                taken.append(item)
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return taken
            if isinstance(item, dict):
                taken.append(item)

    def _report_shutdown(self, lost: list[Message]) -> None:
        if lost:
            error = ClientShutdown("client shut down before the message was sent")
            self.settler.lose(error, lost, True)


def replay(
    keeper: SpoolKeeper,
    delivery: Delivery,
    settler: Settler,
    give_way: Callable[[], bool] = lambda: False,
    batches: int | None = None,
) -> None:
    """Send spooled batches, one try each, while they go through and `give_way()` (live
    messages waiting) is false; at most `batches` of them. Never raises."""
    try:
        while not give_way() and not delivery.abort.is_set():
            if batches is not None:
                if batches <= 0:
                    break
                batches -= 1
            batch = keeper.claim()
            if batch is None:
                break
            fate = settler.settle(batch, delivery.deliver(batch, max_retries=0))
            if fate is Fate.KEPT:
                break  # the collector still fails: try again later
    except Exception:
        logger.exception("analytics: replaying the spool failed")
    finally:
        settler.after_replay()
