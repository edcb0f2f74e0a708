"""KV-cache events: what entered and left the prefix cache, in vLLM's vocabulary, as plain data.

vLLM publishes its prefix cache as three events (``vllm/distributed/kv_events.py``); the same
three describe ours, so one model (``cache_model.py``) and one set of views serve both::

    BlockStored(block_hashes=[h1, h2], parent_block_hash=h0, token_ids=[...64 ids], block_size=32)
        h1 and h2 entered the cache, a chain: h0 -> h1 -> h2 (h0 None: h1 is a first block);
        token_ids holds their tokens, block_size per hash
    BlockRemoved(block_hashes=[h7])     h7 left the cache (evicted, or dropped by a reset)
    AllBlocksCleared()                  everything left

A hash is "in the cache" from its store to its removal, whether a request holds it or it sits
cached-free: the events carry no ref counts, no block ids and no request ids.

``CacheEventDiffer`` makes these events for our engine by diffing the set of hashes its
``EngineSnapshot`` holds from one step to the next (read-only, like every observer): so a
subscriber that applies them holds exactly the hashes, parents and tokens the snapshot's prefix
tree shows after every step. Hashes stored and removed within one step cancel out, as they
would in any two snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanovllm.engine.observe.snapshot import EngineSnapshot, take_snapshot

# vLLM names the tier a block lives in; "GPU" is its device tier (its CPU backend says "GPU" too),
# the one whose blocks a router looks for, so our device cache publishes under the same name.
MEDIUM_DEVICE = "GPU"


@dataclass(frozen=True)
class BlockStored:
    block_hashes: tuple[int, ...]  # a chain, in order
    parent_block_hash: int | None  # the hash before block_hashes[0] (None: a first block)
    token_ids: tuple[int, ...]  # block_size tokens per hash
    block_size: int
    medium: str | None = MEDIUM_DEVICE
    group_idx: int | None = None  # vLLM's KV-cache group (one per attention type)
    lora_name: str | None = None


@dataclass(frozen=True)
class BlockRemoved:
    block_hashes: tuple[int, ...]
    medium: str | None = MEDIUM_DEVICE
    group_idx: int | None = None


@dataclass(frozen=True)
class AllBlocksCleared:
    pass


CacheEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True)
class EventBatch:
    """One publication: the events of one engine step. ``ts`` is wall-clock (``time.time()``),
    as vLLM's; ``data_parallel_rank`` says which of several data-parallel engines sent it."""

    ts: float
    events: tuple[CacheEvent, ...]
    data_parallel_rank: int | None = None


class CacheEventDiffer:
    """Our engine's prefix cache as KV-cache events: ``diff(engine)`` after each step returns the
    events since the last call (the first call reports every hash already cached).

    Token ids are read from the blocks themselves (a cached-free block keeps them for hit
    verification), and only for hashes new since the last call.
    """

    def __init__(self, medium: str | None = MEDIUM_DEVICE):
        self.medium = medium
        self.held: dict[int, int | None] = {}  # hash -> parent hash, as of the last diff

    def diff(self, engine) -> list[CacheEvent]:
        snap = take_snapshot(engine)
        now = held_hashes(snap)
        gone = [h for h in self.held if h not in now]
        new = {h: p for h, p in now.items() if h not in self.held}
        events: list[CacheEvent] = []
        if gone:
            events.append(BlockRemoved(tuple(gone), self.medium))
        if new:
            first_block = _first_block_of(snap, new)
            bm = engine.block_manager  # token ids: read, never written (snapshot.py reads it too)
            tokens = {h: bm.blocks[b].token_ids for h, b in first_block.items()}
            events.extend(self._stored(new, tokens, snap.block_size, first_block))
        self.held = now
        return events

    def _stored(self, new, tokens, block_size, order) -> list[BlockStored]:
        """The new hashes as chains: a run continues while a block has exactly one new child, so
        a shared trunk is one event and each branch below it another (parents always first)."""
        kids: dict[int | None, list[int]] = {}
        for h, p in new.items():
            kids.setdefault(p if p in new else None, []).append(h)
        for v in kids.values():
            v.sort(key=order.__getitem__)  # by block id: the same order as prefix_tree's
        out = []
        stack = list(reversed(kids.get(None, [])))
        while stack:
            run = [stack.pop()]
            while len(k := kids.get(run[-1], [])) == 1:
                run.append(k[0])
            stack.extend(reversed(kids.get(run[-1], [])))
            ids = tuple(t for h in run for t in tokens[h])
            out.append(BlockStored(tuple(run), new[run[0]], ids, block_size, self.medium))
        return out


def held_hashes(snap: EngineSnapshot) -> dict[int, int | None]:
    """hash -> parent hash of every hash a block holds (duplicates counted once)."""
    ids = np.flatnonzero(snap.has_hash)
    hashes = snap.block_hash[ids].tolist()
    parents = snap.parent_hash[ids].tolist()
    has_parent = snap.has_parent[ids].tolist()
    return {h: (p if hp else None) for h, p, hp in zip(hashes, parents, has_parent)}


def _first_block_of(snap: EngineSnapshot, hashes) -> dict[int, int]:
    """hash -> the lowest block id holding it, for the given hashes."""
    out: dict[int, int] = {}
    for b in np.flatnonzero(snap.has_hash).tolist():
        h = int(snap.block_hash[b])
        if h in hashes and h not in out:
            out[h] = b
    return out
