"""TaskSlots: a freed slot goes to the first run in line, and a stopped run leaves the line."""

from __future__ import annotations

import threading

from aml_databricks.workspace.slots import TaskSlots


def waiting_for(slots: TaskSlots, count: int) -> None:
    """Until `count` threads are in line (bounded: a stuck test fails instead of hanging)."""
    for _ in range(10_000):
        if slots.waiting == count:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{slots.waiting} waiting, expected {count}")


def test_a_freed_slot_goes_to_the_runs_in_the_order_they_queued() -> None:
    slots = TaskSlots(1)
    assert slots.acquire(give_up=lambda: False)
    order: list[int] = []
    threads = []
    for i in range(5):
        thread = threading.Thread(target=lambda i=i: slots.acquire(lambda: False) and order.append(i))
        thread.start()
        threads.append(thread)
        waiting_for(slots, i + 1)  # each in line before the next comes
    for i in range(5):
        slots.release()
        threads[i].join(10)
        assert order == list(range(i + 1))
    slots.release()
    assert slots.acquire(give_up=lambda: True)  # a free slot is taken even by a run about to stop


def test_a_stopped_run_leaves_the_line_and_the_next_one_gets_the_slot() -> None:
    slots = TaskSlots(1)
    assert slots.acquire(give_up=lambda: False)
    stop = threading.Event()
    results: dict[str, bool] = {}
    stopped = threading.Thread(target=lambda: results.update(stopped=slots.acquire(stop.is_set)))
    stopped.start()
    waiting_for(slots, 1)
    kept = threading.Thread(target=lambda: results.update(kept=slots.acquire(lambda: False)))
    kept.start()
    waiting_for(slots, 2)
    stop.set()
    slots.wake()
    stopped.join(10)
    assert results == {"stopped": False}
    assert slots.waiting == 1
    slots.release()
    kept.join(10)
    assert results == {"stopped": False, "kept": True}
