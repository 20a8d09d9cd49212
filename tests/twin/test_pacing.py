from __future__ import annotations

import pytest

from clustergate.twin.pacing import pause_after


def test_small_rounds_keep_their_interval() -> None:
    assert pause_after(1.0, 0.01) == pytest.approx(0.99)


def test_long_rounds_take_at_most_a_tenth_of_the_time() -> None:
    spent = 0.5
    pause = pause_after(1.0, spent)
    assert pause == pytest.approx(4.5)
    assert spent / (spent + pause) == pytest.approx(0.1)
