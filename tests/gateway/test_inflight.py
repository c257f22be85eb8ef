"""The in-flight budget: never over its limit except for one lone message, and every
reservation comes back exactly once, whatever the order of reserves and releases."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.inflight import InFlightBudget, Reservation


def test_a_lone_message_passes_even_over_the_limit() -> None:
    budget = InFlightBudget(100)
    big = budget.try_reserve(500)
    assert big is not None and budget.used == 500
    assert budget.try_reserve(1) is None
    big.release()
    big.release()  # idempotent
    assert budget.used == 0


def test_resize_grows_only_within_the_budget() -> None:
    budget = InFlightBudget(100)
    a = budget.try_reserve(10)
    b = budget.try_reserve(50)
    assert a is not None and b is not None
    assert not a.resize(60)  # 60 + 50 > 100
    assert a.size == 10 and budget.used == 60
    assert a.resize(50) and budget.used == 100
    assert a.resize(1) and budget.used == 51
    with a, b:
        pass
    assert budget.used == 0
    with pytest.raises(RuntimeError):
        a.resize(5)


@given(
    st.integers(min_value=1, max_value=1000),
    st.lists(
        st.tuples(st.sampled_from(["reserve", "release", "resize"]), st.integers(0, 1500)),
        max_size=60,
    ),
)
def test_the_limit_holds_and_everything_comes_back(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    budget = InFlightBudget(limit)
    held: list[Reservation] = []
    for action, number in steps:
        if action == "reserve":
            got = budget.try_reserve(number)
            if got is not None:
                held.append(got)
        elif held and action == "release":
            held.pop(number % len(held)).release()
        elif held:
            held[number % len(held)].resize(number)
        assert budget.used == sum(r.size for r in held)
        # Over the limit only through a message that came when nothing else was held.
        assert budget.used <= limit or sum(1 for r in held if r.size) == 1
    for reservation in held:
        reservation.release()
    assert budget.used == 0


def test_threads_never_overshoot() -> None:
    budget = InFlightBudget(1000)
    peak = [0]
    guard = threading.Lock()

    def worker() -> None:
        for _ in range(500):
            got = budget.try_reserve(300)
            if got is None:
                continue
            with guard:
                peak[0] = max(peak[0], budget.used)
            got.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.used == 0
    assert 300 <= peak[0] <= 900
