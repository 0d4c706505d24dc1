"""Bounded queues that drop and count instead of blocking a live producer."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

DropPolicy = Literal["drop_oldest", "drop_newest"]


class QueueClosed(Exception):
    """The producer closed the queue and it is empty."""


class DropQueue(Generic[T]):
    """Thread-safe bounded FIFO.

    ``put`` never blocks: when full it drops the oldest item (live video: the
    newest frame is the one worth classifying) or the new one, and counts it.
    ``put_wait`` blocks instead, for producers that must not lose anything
    (a video file read as fast as possible).
    """

    def __init__(self, maxsize: int, policy: DropPolicy = "drop_oldest") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._policy = policy
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def put(self, item: T) -> bool:
        """Add ``item``; returns False when an item (this or the oldest) was dropped."""
        return self.put_many([item]) == 0

    def put_many(self, items: list[T]) -> int:
        """``put`` for each item, in order, under one lock; returns how many items (these or older) were dropped."""
        if not items:
            return 0
        with self._cond:
            if self._closed:
                raise QueueClosed
            dropped = 0
            queue = self._items
            for item in items:
                if len(queue) >= self._maxsize:
                    dropped += 1
                    if self._policy == "drop_newest":
                        continue
                    queue.popleft()
                queue.append(item)
            self.dropped += dropped
            self._cond.notify()
            return dropped

    def put_wait(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``, waiting for space; False on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or len(self._items) < self._maxsize, timeout):
                return False
            if self._closed:
                raise QueueClosed
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, ``None`` on timeout; :class:`QueueClosed` once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or bool(self._items), timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise QueueClosed

    def get_batch(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Up to ``max_items`` items in order, waiting only for the first; [] on timeout; QueueClosed as ``get``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or bool(self._items), timeout):
                return []
            if not self._items:
                raise QueueClosed
            items = self._items
            batch = [items.popleft() for _ in range(min(max_items, len(items)))]
            self._cond.notify_all()
            return batch

    def close(self) -> None:
        """No more items will come; consumers drain what is left, then get QueueClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
