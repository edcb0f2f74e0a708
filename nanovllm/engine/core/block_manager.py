"""BlockManager: the paged KV cache's bookkeeping, with prefix caching. Pure Python, no torch.

The cache is ``num_blocks`` blocks of ``block_size`` token slots; a sequence's ``block_table`` lists
its blocks in token order, so token ``i`` lives in slot ``block_table[i // bs] * bs + i % bs``.

Prefix caching: once all tokens of a block are computed, the block gets a chained hash
``h_i = xxh64(h_{i-1} || tokens of block i)`` and is registered under it. A new sequence whose first
blocks hash the same (and whose tokens compare equal: the hash alone is never trusted) shares them
instead of recomputing. A block whose ref count drops to zero keeps its hash and contents
("cached-free") and is reused by a later hit until it is evicted; eviction takes free blocks in
least-recently-freed order.

Block states: free (ref 0, no hash), cached-free (ref 0, hashed), used (ref 1), shared (ref > 1).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

import xxhash

from nanovllm.engine.core.sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "parent_hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        # the hash of the block before it in the chain (None: a first block), set with ``hash``:
        # the prefix tree's edge, kept while the block is cached-free
        self.parent_hash: int | None = None
        self.token_ids: tuple[int, ...] | None = None  # kept for hit verification

    def __repr__(self) -> str:
        return f"Block({self.block_id}, ref={self.ref_count}, hashed={self.hash is not None})"


class CacheUsage(NamedTuple):
    """The cache's occupancy at one instant, in blocks (what a StepRecord reports)."""

    used: int  # held by at least one sequence
    free: int  # free, cached-free included
    cached: int  # free, but still holding a findable prefix block
    total: int


def chain_hash(prev: int | None, token_ids: Iterable[int]) -> int:
    h = xxhash.xxh64()
    if prev is not None:
        h.update(prev.to_bytes(8, "little"))
    h.update(array("q", token_ids).tobytes())
    return h.intdigest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        assert num_blocks > 0 and block_size > 0
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.hash_to_block: dict[int, int] = {}
        # Free blocks in eviction order (oldest first). OrderedDict: O(1) removal on a cache hit.
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._num_cached_free = 0  # free blocks still holding a findable prefix block

    # ---- queries -------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_cached_free_blocks(self) -> int:
        return self._num_cached_free

    def usage(self) -> CacheUsage:
        total, free = self.num_blocks, self.num_free_blocks
        return CacheUsage(total - free, free, self.num_cached_free_blocks, total)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def block_hashes(self, seq: Sequence, num_blocks: int) -> list[int]:
        """Chained hashes of the sequence's first ``num_blocks`` full blocks (memoized on seq)."""
        bs, hashes = self.block_size, seq.block_hashes
        while len(hashes) < num_blocks:
            i = len(hashes)
            hashes.append(
                chain_hash(hashes[-1] if hashes else None, seq.token_ids[i * bs : (i + 1) * bs])
            )
        return hashes[:num_blocks]

    def match_prefix(self, seq: Sequence) -> list[int]:
        """Ids of cached blocks holding the longest prefix of ``seq``.

        Only blocks wholly inside the first ``num_tokens - 1`` tokens count: the last token is
        always recomputed, because its logits are needed to sample.
        """
        if not self.enable_prefix_caching:
            return []
        bs = self.block_size
        hits: list[int] = []
        for i, h in enumerate(self.block_hashes(seq, (seq.num_tokens - 1) // bs)):
            block_id = self.hash_to_block.get(h)
            if block_id is None:
                break
            if self.blocks[block_id].token_ids != tuple(seq.token_ids[i * bs : (i + 1) * bs]):
                break  # a hash collision: never trust the hash alone
            hits.append(block_id)
        return hits

    # ---- admission and growth -------------------------------------------------------------------
    def can_admit(self, hits: list[int], num_tokens: int) -> bool:
        """Whether a waiting sequence with these prefix hits can get blocks for ``num_tokens``."""
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return self.blocks_needed(num_tokens) - len(hits) + revived <= len(self.free)

    def admit(self, seq: Sequence, hits: list[int], num_tokens: int) -> None:
        """Give ``seq`` the hit blocks plus fresh blocks up to ``num_tokens``; sets its cached
        count."""
        assert not seq.block_table, f"{seq} still holds blocks"
        assert self.can_admit(hits, num_tokens)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
                self._num_cached_free -= 1  # a hit is always a findable, hashed block
            block.ref_count += 1
        seq.block_table = list(hits)
        seq.num_hashed_blocks = len(hits)
        seq.num_cached_tokens = seq.num_computed_tokens = len(hits) * self.block_size
        self.grow(seq, num_tokens)

    def grow(self, seq: Sequence, num_tokens: int) -> bool:
        """Make ``seq.block_table`` cover ``num_tokens`` tokens. False (and no change) if it
        can't."""
        missing = self.blocks_needed(num_tokens) - len(seq.block_table)
        if missing <= 0:
            return True
        if missing > len(self.free):
            return False
        for _ in range(missing):
            seq.block_table.append(self._take_free_block())
        return True

    def _take_free_block(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:  # evict its cached contents
            del self.hash_to_block[block.hash]  # free hashed blocks are always the findable ones
            block.hash = block.parent_hash = block.token_ids = None
            self._num_cached_free -= 1
        block.ref_count = 1
        return block_id

    # ---- after compute ---------------------------------------------------------------------------
    def commit(self, seq: Sequence) -> None:
        """Register the sequence's newly full, computed blocks in the prefix cache."""
        bs = self.block_size
        if (
            not self.enable_prefix_caching
            or seq.num_computed_tokens < (seq.num_hashed_blocks + 1) * bs
        ):
            return  # no block filled up since the last commit
        num_full = min(seq.num_computed_tokens // bs, len(seq.block_table))
        hashes = self.block_hashes(seq, num_full)
        for i in range(seq.num_hashed_blocks, num_full):
            block = self.blocks[seq.block_table[i]]
            block.hash = hashes[i]
            block.parent_hash = hashes[i - 1] if i > 0 else None
            block.token_ids = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            self.hash_to_block.setdefault(hashes[i], block.block_id)
        seq.num_hashed_blocks = num_full

    def free_seq(self, seq: Sequence) -> None:
        """Release all of ``seq``'s blocks. Tail blocks are freed first, so they are evicted first
        and a shared prompt's head stays cached longest."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            assert block.ref_count > 0, f"double free of {block}"
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
                    self._num_cached_free += 1
                else:
                    block.hash = block.parent_hash = block.token_ids = None  # not findable
                self.free[block_id] = None
        seq.block_table = []
        seq.num_hashed_blocks = 0
        seq.num_computed_tokens = 0  # num_cached_tokens stays: it reports the last admission

    def reset_prefix_cache(self) -> int:
        """Forget every cached-free block (blocks in use keep their hashes). Returns how many."""
        dropped = 0
        for block_id in self.free:
            block = self.blocks[block_id]
            if block.hash is not None:
                del self.hash_to_block[block.hash]
                block.hash = block.parent_hash = block.token_ids = None
                dropped += 1
        self._num_cached_free = 0
        return dropped

    # ---- checks ----------------------------------------------------------------------------------
    def check_integrity(self, seqs: Iterable[Sequence] = ()) -> list[str]:
        """Every invariant the cache relies on, as a list of violations (empty when healthy).

        Pass the live sequences (running and waiting) to also check ref counts against block tables.
        """
        problems: list[str] = []
        seqs = list(seqs)
        for bid in self.free:
            if self.blocks[bid].ref_count != 0:
                problems.append(
                    f"block {bid} is in the free list with ref_count {self.blocks[bid].ref_count}"
                )
        for block in self.blocks:
            if block.ref_count == 0 and block.block_id not in self.free:
                problems.append(f"block {block.block_id} has ref_count 0 but is not free")
            if block.ref_count < 0:
                problems.append(f"block {block.block_id} has negative ref_count")
        cached_free = sum(1 for b in self.free if self.blocks[b].hash is not None)
        if cached_free != self._num_cached_free:
            problems.append(
                f"{cached_free} free blocks hold a prefix, "
                f"but the counter says {self._num_cached_free}"
            )
        for h, bid in self.hash_to_block.items():
            if self.blocks[bid].hash != h:
                problems.append(f"hash table maps {h:#x} to block {bid}, whose hash differs")
        for block in self.blocks:
            if block.hash is not None and block.token_ids is not None:
                if chain_hash(block.parent_hash, block.token_ids) != block.hash:
                    problems.append(
                        f"block {block.block_id}'s hash is not the chain hash of its parent "
                        "hash and tokens"
                    )
        if seqs:
            refs = [0] * len(self.blocks)
            for seq in seqs:
                if len(set(seq.block_table)) != len(seq.block_table):
                    problems.append(f"seq {seq.seq_id} lists a block twice: {seq.block_table}")
                for bid in seq.block_table:
                    refs[bid] += 1
                if seq.num_computed_tokens > len(seq.block_table) * self.block_size:
                    problems.append(f"seq {seq.seq_id} computed more tokens than its blocks hold")
            for block, expected in zip(self.blocks, refs):
                if block.ref_count != expected:
                    problems.append(
                        f"block {block.block_id} has ref_count {block.ref_count}, "
                        f"but {expected} sequence(s) hold it"
                    )
        return problems
