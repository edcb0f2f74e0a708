"""The workbench's own options (the keywords of ``widgets.workbench()`` that are not engine config
fields), checked when the workbench is built: a bad value raises ``ConfigError`` naming the option,
the value and what to pass, before any engine is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from nanovllm.errors import ConfigError


@dataclass(frozen=True)
class Options:
    history_steps: int = 10_000  # steps kept (the oldest dropped first)
    history_bytes: int = 256 * 2**20  # and at most about this many bytes of snapshots
    redraw_interval: float = 0.1  # seconds between redraws, at least
    window: int = 100  # steps the timeline, timing and budget views show
    snapshot_every_step: bool | None = None  # None: while a snapshot is cheap (model/frames.py)

    def __post_init__(self) -> None:
        for name in ("history_steps", "history_bytes", "window"):
            _whole(name, getattr(self, name))
        t = self.redraw_interval
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(
                f"redraw_interval={t!r}: pass the seconds between redraws, a number >= 0 "
                "(default 0.1)"
            )
        if self.snapshot_every_step not in (True, False, None):
            raise ConfigError(
                f"snapshot_every_step={self.snapshot_every_step!r}: pass True, False or None "
                "(None: while a snapshot costs under 1% of a step)"
            )


def _whole(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        default = Options.__dataclass_fields__[name].default
        raise ConfigError(f"{name}={value!r}: pass a whole number >= 1 (default {default:,})")


WORKBENCH_OPTIONS = tuple(f.name for f in fields(Options))
