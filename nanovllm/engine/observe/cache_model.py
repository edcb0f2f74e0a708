"""A prefix cache rebuilt from KV-cache events: its tree, its size over time, what it evicted.

``PrefixCacheModel.apply(batch)`` takes ``EventBatch``es (``cache_events.py``), from vLLM through
the bridge's subscriber or from our engine's ``CacheEventDiffer``, and keeps::

    nodes        hash -> CachedBlock (parent hash, tokens, when stored): the blocks in the cache
    tree()       a PrefixTree (prefix_tree.py) of them, what the prefix-tree view draws
    occupancy()  per batch: blocks in the cache, blocks stored / removed so far (a timeline)
    evictions    the last removals, newest last, each with its tokens and place in its chain
    longest_shared_prefixes()   branch points: trunks two or more cached chains share

A hash is held once however often it is stored: vLLM stores a block again when a request reuses
it (``kv_cache_report_mode="full"``), and two physical blocks may hold one hash; a removal drops
the hash. A removal of a hash never stored (the subscriber joined late) or a store whose tokens do
not fill its hashes is counted, never fatal. Pure data: no threads, no sockets; the caller applies
batches in order, from one thread.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from nanovllm.engine.observe.cache_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
)
from nanovllm.engine.observe.prefix_tree import PrefixTree, TreeNode


@dataclass
class CachedBlock:
    hash: int
    parent: int | None
    token_ids: tuple[int, ...] | None  # None: the event's tokens did not match its hashes
    stored_at: float  # the batch's ts
    order: int  # the n-th hash stored: a stable order for the tree's children
    stores: int = 1  # times stored (more than once: reused, or held by two blocks)


@dataclass(frozen=True)
class Eviction:
    ts: float
    hash: int
    parent: int | None
    token_ids: tuple[int, ...] | None
    chain_index: int | None  # its place in its chain (None: an ancestor was removed first)
    lifetime: float  # seconds from its (first) store to its removal


@dataclass(frozen=True)
class SharedPrefix:
    hash: int  # the last block of the shared trunk (a branch point)
    num_blocks: int  # blocks from the chain's first block to it
    branches: int  # children below it
    token_ids: tuple[int, ...] | None  # the trunk's tokens (None where a block's are unknown)


@dataclass(frozen=True)
class Occupancy:
    """One sample per applied batch (arrays of equal length, oldest first)."""

    ts: np.ndarray  # float64, the batch's wall-clock time
    blocks: np.ndarray  # int64, hashes in the cache after the batch
    stored: np.ndarray  # int64, blocks stored so far (first stores only)
    removed: np.ndarray  # int64, blocks removed so far (clears included)


class PrefixCacheModel:
    def __init__(self, history: int = 10_000, max_evictions: int = 1_000):
        if history < 1 or max_evictions < 1:
            raise ValueError(f"history={history}, max_evictions={max_evictions}: both must be >= 1")
        self.nodes: dict[int, CachedBlock] = {}
        self.evictions: deque[Eviction] = deque(maxlen=max_evictions)
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=history)
        self.block_size: int | None = None  # of the last store
        self.stored = self.removed = self.restored = 0
        self.evicted = 0  # removals of held hashes by BlockRemoved (a clear is not an eviction)
        self.unknown_removed = 0  # removals of hashes not held (stored before we listened)
        self.bad_stores = 0  # stores whose token_ids do not fill block_size per hash
        self.clears = 0
        self.applied = 0  # batches applied, and clears: it moves whenever the model may change
        self._order = 0

    def apply(self, batch: EventBatch) -> None:
        for e in batch.events:
            if isinstance(e, BlockStored):
                self._store(e, batch.ts)
            elif isinstance(e, BlockRemoved):
                for h in e.block_hashes:
                    self._remove(h, batch.ts)
            elif isinstance(e, AllBlocksCleared):
                self.clear(batch.ts)
        self._samples.append((batch.ts, len(self.nodes), self.stored, self.removed))
        self.applied += 1

    def clear(self, ts: float | None = None) -> None:
        """Every block left (AllBlocksCleared, or the publisher restarted with an empty cache)."""
        self.removed += len(self.nodes)
        self.nodes.clear()
        self.clears += 1
        self.applied += 1
        if ts is not None:
            self._samples.append((ts, 0, self.stored, self.removed))

    def _store(self, e: BlockStored, ts: float) -> None:
        bs, n = e.block_size, len(e.block_hashes)
        fits = bs > 0 and len(e.token_ids) == n * bs
        self.bad_stores += not fits
        self.block_size = bs
        parent = e.parent_block_hash
        for i, h in enumerate(e.block_hashes):
            node = self.nodes.get(h)
            if node is not None:
                node.stores += 1
                self.restored += 1
            else:
                tokens = tuple(e.token_ids[i * bs : (i + 1) * bs]) if fits else None
                self.nodes[h] = CachedBlock(h, parent, tokens, ts, self._order)
                self._order += 1
                self.stored += 1
            parent = h

    def _remove(self, h: int, ts: float) -> None:
        node = self.nodes.get(h)
        if node is None:
            self.unknown_removed += 1
            return
        index = self.chain_index(h)
        del self.nodes[h]
        self.removed += 1
        self.evicted += 1
        self.evictions.append(
            Eviction(ts, h, node.parent, node.token_ids, index, ts - node.stored_at)
        )

    # ---- reading ---------------------------------------------------------------------------------
    def chain(self, h: int) -> list[int]:
        """The hashes from the first held ancestor of ``h`` down to ``h``."""
        out = [h]
        while (p := self.nodes[out[-1]].parent) in self.nodes:
            out.append(p)
        return out[::-1]

    def chain_index(self, h: int) -> int | None:
        """The block's place in its chain (0: a first block); None when an ancestor is gone."""
        top = self.chain(h)
        return len(top) - 1 if self.nodes[top[0]].parent is None else None

    def chain_tokens(self, h: int) -> tuple[int, ...] | None:
        """Every token of the chain up to ``h`` (None when a block's tokens are unknown)."""
        parts = [self.nodes[x].token_ids for x in self.chain(h)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)

    def tree(self) -> PrefixTree:
        """The held hashes as a PrefixTree; children in the order they were stored."""
        nodes = {
            h: TreeNode(h, n.parent, (), None, None, n.token_ids) for h, n in self.nodes.items()
        }
        children: dict[int | None, list[int]] = {}
        for h, n in self.nodes.items():
            children.setdefault(n.parent if n.parent in nodes else None, []).append(h)
        for kids in children.values():
            kids.sort(key=lambda h: self.nodes[h].order)
        return PrefixTree(nodes, children)

    def occupancy(self) -> Occupancy:
        a = np.array(self._samples, dtype=np.float64).reshape(-1, 4)
        return Occupancy(a[:, 0], *(a[:, i].astype(np.int64) for i in (1, 2, 3)))

    def rates(self, window: float = 5.0, now: float | None = None) -> tuple[float, float]:
        """(blocks stored, blocks removed) per second over about the last ``window`` seconds:
        from the last sample at least that old (else the oldest kept) to now."""
        if not self._samples:
            return 0.0, 0.0
        now = time.time() if now is None else now
        base = next((s for s in reversed(self._samples) if s[0] <= now - window), self._samples[0])
        last, span = self._samples[-1], max(now - base[0], 1e-9)
        return (last[2] - base[2]) / span, (last[3] - base[3]) / span

    def longest_shared_prefixes(self, k: int = 5) -> list[SharedPrefix]:
        """The ``k`` longest trunks two or more cached chains share (branch points, deepest
        first)."""
        tree = self.tree()
        points = [h for h, kids in tree.children.items() if h is not None and len(kids) > 1]
        points.sort(key=lambda h: -len(self.chain(h)))
        return [
            SharedPrefix(h, len(self.chain(h)), len(tree.children[h]), self.chain_tokens(h))
            for h in points[:k]
        ]
