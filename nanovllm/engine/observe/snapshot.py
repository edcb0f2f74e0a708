"""EngineSnapshot: the KV cache and the sequences at one instant, as numpy arrays.

Cheap even with thousands of blocks: a few passes over the blocks into flat arrays, no object per
block. The workbench draws the block grid straight from these arrays, and the block-table and
prefix-tree views (``block_table.py``, ``prefix_tree.py``) read the hash chain from them::

    block_hash[b], parent_hash[b]   the block's chain hash and its parent's (valid where has_hash /
                                    has_parent); parent_hash is recorded when the block is
                                    committed, so a cached-free block keeps its edge
    free_order                      the free list, oldest first: the order blocks are evicted in

Token ids are not copied (that would cost O(tokens) per step): the views read them on demand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nanovllm.engine.observe.block_states import (  # (also read from here: the views, the tests)
    BLOCK_CACHED,
    BLOCK_FREE,
    BLOCK_SHARED,
    BLOCK_STATE_COLORS,
    BLOCK_STATE_NAMES,
    BLOCK_USED,
)

__all__ = [
    "BLOCK_CACHED",
    "BLOCK_FREE",
    "BLOCK_SHARED",
    "BLOCK_STATE_COLORS",
    "BLOCK_STATE_NAMES",
    "BLOCK_USED",
    "EngineSnapshot",
    "SequenceSnapshot",
    "take_snapshot",
]


@dataclass(frozen=True)
class SequenceSnapshot:
    seq_id: int
    status: str
    num_prompt_tokens: int
    num_tokens: int
    num_computed_tokens: int
    num_cached_tokens: int
    num_preemptions: int
    block_table: tuple[int, ...]
    finish_reason: str | None
    # time.perf_counter() clock (as StepRecord.time); None until it happened
    arrival_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None

    @property
    def num_completion_tokens(self) -> int:
        return self.num_tokens - self.num_prompt_tokens


@dataclass(frozen=True)
class EngineSnapshot:
    step: int  # the number of steps run when taken
    block_size: int
    block_state: np.ndarray  # uint8 [num_blocks], BLOCK_* codes
    ref_count: np.ndarray  # int32 [num_blocks]
    has_hash: np.ndarray  # bool [num_blocks]
    owners: dict[int, tuple[int, ...]]  # block id -> seq ids holding it (only blocks in use)
    token_range: dict[
        int, tuple[int, int]
    ]  # block id -> (first, last+1) token position, per owner 0
    sequences: tuple[SequenceSnapshot, ...]
    problems: tuple[str, ...] = field(default=())  # check_integrity() result, when asked for
    block_hash: np.ndarray | None = None  # uint64 [num_blocks]; meaningful where has_hash
    parent_hash: np.ndarray | None = None  # uint64 [num_blocks]; meaningful where has_parent
    has_parent: np.ndarray | None = None  # bool [num_blocks]: hashed, and not a first block
    free_order: np.ndarray | None = None  # int32 block ids of the free list, evicted first first
    time: float | None = None  # time.perf_counter() when taken

    @property
    def num_blocks(self) -> int:
        return len(self.block_state)

    def count(self, state: int) -> int:
        return int((self.block_state == state).sum())


def take_snapshot(engine, check: bool = False) -> EngineSnapshot:
    bm, sched = engine.block_manager, engine.scheduler
    n = bm.num_blocks
    ref = np.fromiter((b.ref_count for b in bm.blocks), dtype=np.int32, count=n)
    hashed = np.fromiter((b.hash is not None for b in bm.blocks), dtype=bool, count=n)
    hashes, parents, has_parent = _chain_arrays(bm, hashed)
    state = np.where(
        ref > 1,
        BLOCK_SHARED,
        np.where(ref == 1, BLOCK_USED, np.where(hashed, BLOCK_CACHED, BLOCK_FREE)),
    ).astype(np.uint8)
    owners: dict[int, list[int]] = {}
    token_range: dict[int, tuple[int, int]] = {}
    seqs = []
    bs = bm.block_size
    for seq in [*sched.running, *sched.waiting]:
        for i, bid in enumerate(seq.block_table):
            owners.setdefault(bid, []).append(seq.seq_id)
            token_range.setdefault(bid, (i * bs, min((i + 1) * bs, seq.num_tokens)))
        seqs.append(_seq_snapshot(seq))
    for seq in engine.sequences.values():
        if seq.is_finished:
            seqs.append(_seq_snapshot(seq))
    return EngineSnapshot(
        step=sched.num_steps,
        block_size=bs,
        block_state=state,
        ref_count=ref,
        has_hash=hashed,
        owners={k: tuple(v) for k, v in owners.items()},
        token_range=token_range,
        sequences=tuple(seqs),
        problems=tuple(engine.check_integrity()) if check else (),
        block_hash=hashes,
        parent_hash=parents,
        has_parent=has_parent,
        free_order=np.fromiter(bm.free, dtype=np.int32, count=len(bm.free)),
        time=time.perf_counter(),
    )


def _chain_arrays(bm, hashed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, parent hash, has parent) per block. The findable hashes come from the cache's
    index in one C-level pass; only the hashed blocks are visited, for their parents."""
    n = len(hashed)
    hashes, parents, has_parent = np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, bool)
    index = bm.hash_to_block
    found = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    hashes[found] = np.fromiter(index.keys(), dtype=np.uint64, count=len(index))
    ids = np.flatnonzero(hashed)
    if len(found) != len(ids):  # duplicates computed in the same step: in use, not findable
        extra = np.setdiff1d(ids, found)
        hashes[extra] = np.fromiter((bm.blocks[b].hash for b in extra.tolist()), np.uint64)
    held = [bm.blocks[b].parent_hash for b in ids.tolist()]
    has_parent[ids] = np.fromiter((p is not None for p in held), dtype=bool, count=len(ids))
    parents[ids] = np.fromiter((p or 0 for p in held), dtype=np.uint64, count=len(ids))
    return hashes, parents, has_parent


def _seq_snapshot(seq) -> SequenceSnapshot:
    return SequenceSnapshot(
        seq.seq_id,
        seq.status.value,
        seq.num_prompt_tokens,
        seq.num_tokens,
        seq.num_computed_tokens,
        seq.num_cached_tokens,
        seq.num_preemptions,
        tuple(seq.block_table),
        seq.finish_reason.value if seq.finish_reason else None,
        seq.arrival_time,
        seq.first_token_time,
        seq.finish_time,
    )
