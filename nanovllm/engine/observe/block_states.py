"""The four states a KV block is drawn in, one code, name and colour each: what the snapshot's
arrays hold (``EngineSnapshot.block_state``), and what the HTML tables and the workbench's grid
draw. One module, so the snapshot and every view agree."""

from __future__ import annotations

BLOCK_FREE, BLOCK_USED, BLOCK_CACHED, BLOCK_SHARED = 0, 1, 2, 3
BLOCK_STATE_NAMES = (
    "free",
    "used",
    "cached",
    "shared",
)
# one colour per block state, shared by the HTML tables and the workbench grid
BLOCK_STATE_COLORS = (
    "#e5e7eb",
    "#3b82f6",
    "#10b981",
    "#f59e0b",
)  # "cached" = free but holding a cached prefix
