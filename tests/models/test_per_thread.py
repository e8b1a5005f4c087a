"""PerThread: one object per calling thread, the first built at once and handed to the first
thread that asks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.per_thread import PerThread


def test_each_thread_gets_its_own_object_and_keeps_it() -> None:
    built: list[int] = []

    def build() -> object:
        built.append(threading.get_ident())
        return object()

    objects = PerThread(build)
    assert built == [threading.get_ident()]  # built at once, by the constructing thread
    mine = objects.get()
    assert objects.get() is mine and len(built) == 1  # the first to ask takes that one

    barrier = threading.Barrier(3)

    def twice(_: int) -> tuple[int, int]:
        barrier.wait()  # three live threads at once, so the pool cannot reuse one
        first = objects.get()
        return id(first), id(objects.get())

    with ThreadPoolExecutor(max_workers=3) as pool:
        ids = list(pool.map(twice, range(3)))
    assert all(a == b for a, b in ids)  # stable within a thread
    assert len({a for a, _ in ids} | {id(mine)}) == 4  # distinct across threads
    assert len(built) == 4


def test_a_failing_build_fails_at_construction() -> None:
    def broken() -> object:
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        PerThread(broken)


def test_the_object_built_at_construction_goes_to_the_first_thread_that_asks() -> None:
    built: list[object] = []

    def build() -> object:
        built.append(object())
        return built[-1]

    objects = PerThread(build)
    with ThreadPoolExecutor(max_workers=1) as pool:
        worker = pool.submit(objects.get).result()
    assert worker is built[0] and len(built) == 1  # no second copy for the constructing thread
    assert objects.get() is not worker and len(built) == 2  # it builds its own when it asks
