"""``wait_for``: poll a condition until it holds or a timeout passes, for tests that watch another
thread or process (the bridge's subscriber and publisher, the workbench's watcher)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], timeout: float = 10.0, poll: float = 0.01) -> bool:
    """True as soon as ``cond()`` is truthy; False once ``timeout`` seconds passed without."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(poll)
    return True
