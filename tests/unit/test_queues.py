from __future__ import annotations

import threading

import pytest

from formcheck_runtime.queues import DropQueue, QueueClosed


def test_drop_oldest_keeps_newest_and_counts() -> None:
    q: DropQueue[int] = DropQueue(3)
    results = [q.put(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert q.dropped == 2
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, 4]
    assert q.get(0) is None


def test_drop_newest_keeps_oldest() -> None:
    q: DropQueue[int] = DropQueue(2, "drop_newest")
    for i in range(4):
        q.put(i)
    assert q.dropped == 2
    assert [q.get(0), q.get(0)] == [0, 1]


def test_put_wait_blocks_until_space_and_never_drops() -> None:
    q: DropQueue[int] = DropQueue(1)
    q.put(0)
    assert q.put_wait(1, timeout=0.05) is False
    consumer = threading.Timer(0.05, lambda: q.get(0))
    consumer.start()
    assert q.put_wait(1, timeout=2.0) is True
    consumer.join()
    assert q.dropped == 0
    assert q.get(0) == 1


def test_close_drains_then_raises() -> None:
    q: DropQueue[int] = DropQueue(4)
    q.put(7)
    q.close()
    assert q.get(0) == 7
    with pytest.raises(QueueClosed):
        q.get(0)
    with pytest.raises(QueueClosed):
        q.put(8)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DropQueue(0)



def test_put_many_keeps_order_and_counts_drops_like_put() -> None:
    q: DropQueue[int] = DropQueue(3)
    assert q.put_many([1, 2]) == 0
    assert q.put_many([3, 4, 5]) == 2  # drop_oldest: 1 and 2 make room
    assert [q.get(timeout=0) for _ in range(3)] == [3, 4, 5] and q.dropped == 2
    newest: DropQueue[int] = DropQueue(2, policy="drop_newest")
    assert newest.put_many([1, 2, 3]) == 1
    assert [newest.get(timeout=0) for _ in range(2)] == [1, 2] and newest.dropped == 1
