"""What the tests of the cache views share: a cache source fed with KV events written by hand (no
sockets), as vLLM would send them: a shared trunk, branches, evictions."""

from __future__ import annotations

from nanovllm.bridge.source import CacheSource
from nanovllm.engine.observe.cache_events import BlockRemoved, BlockStored, EventBatch
from nanovllm.engine.observe.cache_model import PrefixCacheModel

BS = 4  # tokens per block


def H(k: int) -> int:
    """Block k's hash: 64 bits that differ in their first hex digits, as real ones do."""
    return (k * 0x9E3779B97F4A7C15) % 2**64


def stored(blocks, parent) -> BlockStored:
    """A chain of ``blocks`` (numbers) after block ``parent``; block k holds tokens 10k..10k+3."""
    tokens = tuple(10 * k + i for k in blocks for i in range(BS))
    return BlockStored(tuple(map(H, blocks)), None if parent is None else H(parent), tokens, BS)


def trunk_and_branches() -> list[EventBatch]:
    """1 -> 2 (the trunk), then 3, 4 -> 5 and 6 below 2; later 6, then 5 and 4 are evicted."""
    return [
        EventBatch(100.0, (stored([1, 2, 3], None),)),
        EventBatch(101.0, (stored([4, 5], 2), stored([6], 2))),
        EventBatch(103.0, (BlockRemoved((H(6),)),)),
        EventBatch(104.5, (BlockRemoved((H(5), H(4))),)),
    ]


def cache_of(batches, tokenizer=None) -> CacheSource:
    source = CacheSource(PrefixCacheModel(), tokenizer)
    for b in batches:
        source.model.apply(b)
    return source
