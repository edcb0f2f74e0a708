"""Heartbeats: how the main process tells a slow tensor-parallel worker from a hung one.

::

    worker r (worker_main.py):  a daemon thread adds 1 to beats[r] every INTERVAL_S
    beats: shared memory, one   ----------------------------------------------------
    counter per rank            main process (worker_group.py), while it waits for replies:
                                HeartbeatWatch(beats, timeout).silent() at each wake-up ->
                                the first rank whose counter has not moved for `timeout` s

A step's length says nothing about a worker's health (a first Triton compile or a 16k-token prefill
takes long), but its heartbeat does: the beating thread runs whatever the main thread does (a long
forward releases the GIL; Python code yields it every few milliseconds), and stops only when the
whole process does (stopped with SIGSTOP or by a debugger, or frozen). A rank is watched from its
first beat; before that (spawn, imports) the start-up timeout applies. A watch starts its clocks
when it is made, so the time between steps, when nobody waits, never counts.
"""

from __future__ import annotations

import threading
import time

INTERVAL_S = 1.0


def start_beating(beats, rank: int) -> None:
    """In a worker: beat ``beats[rank]`` until the process exits."""
    threading.Thread(
        target=_beat, args=(beats, rank), name="nanovllm-heartbeat", daemon=True
    ).start()


def _beat(beats, rank: int) -> None:
    while True:
        beats[rank] += 1  # this rank's slot has no other writer
        time.sleep(INTERVAL_S)


class HeartbeatWatch:
    """One wait's view of the counters: ``silent()`` is ``(rank, seconds)`` for the first rank
    that has beaten and then fell silent for more than ``timeout`` seconds, else None."""

    def __init__(self, beats, timeout: float):
        self.beats, self.timeout = beats, timeout
        now = time.monotonic()
        self._heard = [(count, now) for count in beats]  # per rank: its count, when it moved

    def silent(self) -> tuple[int, float] | None:
        now = time.monotonic()
        for rank, (count, since) in enumerate(self._heard):
            if self.beats[rank] != count:
                self._heard[rank] = (self.beats[rank], now)
            elif count > 0 and now - since > self.timeout:
                return rank, now - since
        return None


def process_state(pid: int) -> str:
    """'; its state is T (stopped)', read from /proc on Linux; '' where that cannot be read."""
    names = {"T": "stopped", "t": "stopped by a debugger", "R": "running", "S": "sleeping"}
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return f"; its state is {state} ({names.get(state, 'see man 5 proc')})"
