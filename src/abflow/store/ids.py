"""Time-ordered event ids: unique like a UUID, but cheap for the store's primary key.

A random id (``uuid4``) lands on a random page of the ``event_id`` index, so once the index
outgrows the cache every insert reads and dirties a different page; measured with
``bench/store.py``, SQLite takes 1.2 to 2.1 times as many events per CPU-second with ids that
grow over time. ``new_event_id`` puts the millisecond clock first (12 hex digits) and 80
random bits after it (20 hex digits): ids made in the same millisecond on any replica still
never collide in practice (2**-80 per pair), and the index is appended to at its right edge.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_event_id"]


def new_event_id() -> str:
    """A 32-hex-digit id that sorts by creation time (to the millisecond), then at random."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
