"""A background loop's thread call, cancelled, ends after its thread and as cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from registry.core.threads import run_to_completion
from tests.support.threads import Gate, boom, cancel_mid_call


class TestRunToCompletion:
    @pytest.mark.parametrize("cancels", [1, 2])
    @pytest.mark.parametrize("outcome", [lambda: "read", boom], ids=["returns", "raises"])
    def test_a_cancelled_call_ends_after_its_thread_and_as_cancelled(
        self, cancels: int, outcome: Callable[[], Any]
    ) -> None:
        gate = Gate(outcome)
        assert asyncio.run(cancel_mid_call(gate, run_to_completion(gate), cancels=cancels))
        assert gate.finished

    def test_uncancelled_it_returns_what_the_call_returns_and_raises_what_it_raises(self) -> None:
        assert asyncio.run(run_to_completion(lambda a, *, b: a + b, 1, b=2)) == 3
        with pytest.raises(RuntimeError, match="the query failed"):
            asyncio.run(run_to_completion(boom))
