"""Counting the cyclic garbage a stretch of code leaves, for the tests that hold hot paths to none."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def garbage_into(found: list[int]) -> Iterator[None]:
    """Run the block with the collector off, then append the objects only a collection could free.

    Tests take the cleanest of several windows: a cycle the code makes shows in every one, while garbage
    another thread leaves meanwhile (a thread of an earlier test finishing) lands in one at most.
    """
    gc.collect()
    gc.disable()
    try:
        yield
        found.append(gc.collect())
    finally:
        gc.enable()
